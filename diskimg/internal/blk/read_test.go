package blk

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"testing"
)

// TestReadUnits reads a 100-byte disk of 16-byte units whose byte i is i,
// recording the pieces ReadUnits asks for.
func TestReadUnits(t *testing.T) {
	const size, unit = 100, 16
	tests := []struct {
		name   string
		off    int64
		len    int
		n      int
		err    error
		pieces [][2]int64 // pos, length
	}{
		{"inside one unit", 3, 10, 10, nil, [][2]int64{{3, 10}}},
		{"across units", 10, 30, 30, nil, [][2]int64{{10, 6}, {16, 16}, {32, 8}}},
		{"unit aligned", 32, 16, 16, nil, [][2]int64{{32, 16}}},
		{"cut at the end", 90, 20, 10, io.EOF, [][2]int64{{90, 6}, {96, 4}}},
		{"ends at the end", 96, 4, 4, nil, [][2]int64{{96, 4}}},
		{"at the end", 100, 5, 0, io.EOF, nil},
		{"empty at the end", 100, 0, 0, nil, nil},
		{"empty inside", 5, 0, 0, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var pieces [][2]int64
			p := make([]byte, tc.len)
			n, err := ReadUnits("d.img", p, tc.off, size, unit, func(dst []byte, pos int64) error {
				pieces = append(pieces, [2]int64{pos, int64(len(dst))})
				for i := range dst {
					dst[i] = byte(pos) + byte(i)
				}
				return nil
			})
			if n != tc.n || err != tc.err {
				t.Fatalf("ReadUnits = %d, %v; want %d, %v", n, err, tc.n, tc.err)
			}
			if len(pieces) != len(tc.pieces) {
				t.Fatalf("pieces %v, want %v", pieces, tc.pieces)
			}
			for i := range pieces {
				if pieces[i] != tc.pieces[i] {
					t.Fatalf("pieces %v, want %v", pieces, tc.pieces)
				}
			}
			for i := range n {
				if p[i] != byte(tc.off)+byte(i) {
					t.Fatalf("byte %d = %d, want %d", i, p[i], byte(tc.off)+byte(i))
				}
			}
		})
	}

	if _, err := ReadUnits("d.img", make([]byte, 4), -1, size, unit, nil); err == nil || err == io.EOF {
		t.Errorf("negative offset: %v", err)
	}
	boom := errors.New("boom")
	n, err := ReadUnits("d.img", make([]byte, 40), 0, size, unit, func(dst []byte, pos int64) error {
		if pos >= 32 {
			return boom
		}
		return nil
	})
	if n != 32 || err != boom {
		t.Errorf("failing unit: %d, %v; want 32, boom", n, err)
	}
}

type memDisk []byte

func (d memDisk) Size() int64 { return int64(len(d)) }
func (d memDisk) ReadAt(p []byte, off int64) (int, error) {
	return bytes.NewReader(d).ReadAt(p, off)
}

// shortDisk claims to be larger than the bytes it holds.
type shortDisk struct{ memDisk }

func (d shortDisk) Size() int64 { return int64(len(d.memDisk)) + 10 }

func TestReadBacking(t *testing.T) {
	back := memDisk("0123456789")
	dst := bytes.Repeat([]byte{'x'}, 6)
	if err := ReadBacking("top.img", back, dst, 7); err != nil || string(dst) != "789\x00\x00\x00" {
		t.Errorf("past the backing end: %q, %v", dst, err)
	}
	dst = bytes.Repeat([]byte{'x'}, 4)
	if err := ReadBacking("top.img", back, dst, 2); err != nil || string(dst) != "2345" {
		t.Errorf("inside: %q, %v", dst, err)
	}
	dst = bytes.Repeat([]byte{'x'}, 4)
	if err := ReadBacking("top.img", nil, dst, 2); err != nil || string(dst) != "\x00\x00\x00\x00" {
		t.Errorf("no backing: %q, %v", dst, err)
	}
	dst = bytes.Repeat([]byte{'x'}, 4)
	if err := ReadBacking("top.img", back, dst, 12); err != nil || string(dst) != "\x00\x00\x00\x00" {
		t.Errorf("beyond the backing: %q, %v", dst, err)
	}
	err := ReadBacking("top.img", shortDisk{back}, make([]byte, 6), 8)
	if !errors.Is(err, io.ErrUnexpectedEOF) || !bytes.Contains([]byte(err.Error()), []byte("top.img")) {
		t.Errorf("short backing: %v", err)
	}
}

func TestReadAtFull(t *testing.T) {
	r := bytes.NewReader([]byte("abcdef"))
	p := make([]byte, 3)
	if n, err := ReadAtFull(r, p, 2); n != 3 || err != nil || string(p) != "cde" {
		t.Errorf("inside: %d, %v, %q", n, err, p)
	}
	if n, err := ReadAtFull(r, p, 4); n != 2 || err != io.ErrUnexpectedEOF {
		t.Errorf("short: %d, %v", n, err)
	}
	if n, err := ReadAtFull(r, p, 6); n != 0 || err != io.ErrUnexpectedEOF {
		t.Errorf("at the end: %d, %v", n, err)
	}
}

func TestReadUint64s(t *testing.T) {
	b := []byte{0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0}
	r := bytes.NewReader(b)
	be, err := ReadUint64s(r, int64(len(b)), binary.BigEndian, 0, 2, "t.img", "qcow", "L1 table")
	if err != nil || be[0] != 1 || be[1] != 2<<56 {
		t.Errorf("big endian: %v, %v", be, err)
	}
	if _, err := ReadUint64s(r, int64(len(b)), binary.BigEndian, 8, 2, "t.img", "qcow", "L1 table"); !errors.Is(err, ErrCorrupt) {
		t.Errorf("past the end: %v, want ErrCorrupt", err)
	}
}

type extDisk struct {
	memDisk
	ext []Extent
}

func (d extDisk) Extents(context.Context) ([]Extent, error) { return d.ext, nil }

func TestLayers(t *testing.T) {
	back := extDisk{memDisk(make([]byte, 25)), []Extent{{0, 10}, {20, 10}}}
	l, err := NewLayers(context.Background(), back)
	if err != nil {
		t.Fatal(err)
	}
	l.Unallocated(5, 10)  // backing data at 5..10
	l.Add(15, 3)          // the image's own cluster
	l.Unallocated(18, 20) // backing data at 20..25, cut at its size
	want := []Extent{{5, 5}, {15, 3}, {20, 5}}
	if len(l.List) != len(want) {
		t.Fatalf("extents %v, want %v", l.List, want)
	}
	for i := range want {
		if l.List[i] != want[i] {
			t.Fatalf("extents %v, want %v", l.List, want)
		}
	}
	none, err := NewLayers(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	none.Unallocated(0, 100)
	if len(none.List) != 0 {
		t.Errorf("no backing disk: extents %v", none.List)
	}
}
