package vhd_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blktest"
	"github.com/xen2kvm/xen2kvm/diskimg/vhd"
)

func sum(b []byte) uint32 {
	var s uint32
	for _, c := range b {
		s += uint32(c)
	}
	return ^s
}

func footer(size uint64, diskType uint32, dataOffset uint64) []byte {
	be := binary.BigEndian
	f := make([]byte, 512)
	copy(f, "conectix")
	be.PutUint32(f[8:], 2)
	be.PutUint32(f[12:], 0x00010000)
	be.PutUint64(f[16:], dataOffset)
	copy(f[28:], "x2k ")
	be.PutUint64(f[40:], size)
	be.PutUint64(f[48:], size)
	be.PutUint32(f[60:], diskType)
	be.PutUint32(f[64:], sum(f))
	return f
}

// dynamic builds a dynamic VHD with 4 KiB blocks (a 512-byte bitmap each)
// holding the given blocks.
func dynamic(size int64, blocks map[int][]byte) []byte {
	be := binary.BigEndian
	const bs = 4096
	n := int((size + bs - 1) / bs)
	foot := footer(uint64(size), 3, 512)
	file := append([]byte{}, foot...)
	dyn := make([]byte, 1024)
	copy(dyn, "cxsparse")
	be.PutUint64(dyn[8:], ^uint64(0))
	batOff := 512 + 1024
	be.PutUint64(dyn[16:], uint64(batOff))
	be.PutUint32(dyn[24:], 0x00010000)
	be.PutUint32(dyn[28:], uint32(n))
	be.PutUint32(dyn[32:], bs)
	be.PutUint32(dyn[36:], sum(dyn))
	file = append(file, dyn...)
	bat := make([]byte, (n*4+511)&^511)
	for i := range n {
		be.PutUint32(bat[i*4:], 0xffffffff)
	}
	file = append(file, bat...)
	for i := range n {
		d, ok := blocks[i]
		if !ok {
			continue
		}
		be.PutUint32(file[batOff+i*4:], uint32(len(file)/512))
		bitmap := bytes.Repeat([]byte{0xff}, 512)
		blk := make([]byte, bs)
		copy(blk, d)
		file = append(file, bitmap...)
		file = append(file, blk...)
	}
	return append(file, foot...)
}

func sample() ([]byte, []byte) {
	const size = 10*4096 + 1024
	blocks := map[int][]byte{0: bytes.Repeat([]byte{1}, 4096), 3: []byte("hello vhd"), 10: bytes.Repeat([]byte{9}, 1024)}
	want := make([]byte, size)
	for i, d := range blocks {
		copy(want[i*4096:], d)
	}
	return dynamic(size, blocks), want
}

func TestDynamic(t *testing.T) {
	file, want := sample()
	img, err := vhd.Open(bytes.NewReader(file), int64(len(file)), "d.vhd")
	if err != nil {
		t.Fatal(err)
	}
	if img.Type() != "dynamic" || img.Size() != int64(len(want)) {
		t.Fatalf("Type()=%s Size()=%d", img.Type(), img.Size())
	}
	got := make([]byte, len(want))
	if n, err := img.ReadAt(got, 0); n != len(got) || err != nil {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	ext, err := img.Extents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	wantExt := []blk.Extent{{Offset: 0, Length: 4096}, {Offset: 3 * 4096, Length: 4096}, {Offset: 10 * 4096, Length: 1024}}
	if len(ext) != 3 || ext[0] != wantExt[0] || ext[1] != wantExt[1] || ext[2] != wantExt[2] {
		t.Errorf("Extents = %v, want %v", ext, wantExt)
	}
}

func TestFixed(t *testing.T) {
	data := bytes.Repeat([]byte("fixed!!!"), 512)
	file := append(bytes.Clone(data), footer(uint64(len(data)), 2, ^uint64(0))...)
	img, err := vhd.Open(bytes.NewReader(file), int64(len(file)), "f.vhd")
	if err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(data)+10)
	n, err := img.ReadAt(got, 0)
	if n != len(data) || err != io.EOF || !bytes.Equal(got[:n], data) {
		t.Fatalf("ReadAt = %d, %v", n, err)
	}
}

func TestOpenErrors(t *testing.T) {
	good, _ := sample()
	be := binary.BigEndian
	refoot := func(b []byte, edit func(f []byte)) []byte {
		for _, off := range []int{0, len(b) - 512} {
			f := b[off : off+512]
			edit(f)
			be.PutUint32(f[64:], 0)
			be.PutUint32(f[64:], sum(f))
		}
		return b
	}
	tests := []struct {
		name   string
		mutate func([]byte) []byte
		want   error
		msg    string
	}{
		{"truncated", func(b []byte) []byte { return b[:len(b)-700] }, blk.ErrCorrupt, "truncated"},
		{"footer-checksum", func(b []byte) []byte { b[len(b)-512+50]++; return b }, blk.ErrCorrupt, "checksum"},
		{"differencing", func(b []byte) []byte { return refoot(b, func(f []byte) { be.PutUint32(f[60:], 4) }) }, blk.ErrUnsupported, "differencing"},
		{"unknown-type", func(b []byte) []byte { return refoot(b, func(f []byte) { be.PutUint32(f[60:], 9) }) }, blk.ErrCorrupt, "disk type 9"},
		{"dyn-header-checksum", func(b []byte) []byte { b[512+30]++; return b }, blk.ErrCorrupt, "dynamic header checksum"},
		{"block-past-end", func(b []byte) []byte { be.PutUint32(b[512+1024+3*4:], 1<<30); return b }, blk.ErrCorrupt, "past the end"},
		{"huge-size", func(b []byte) []byte { return refoot(b, func(f []byte) { be.PutUint64(f[48:], 1<<40) }) }, blk.ErrCorrupt, "entries"},
		{"fixed-too-short", func(b []byte) []byte {
			return append(make([]byte, 1024), footer(1<<20, 2, ^uint64(0))...)
		}, blk.ErrCorrupt, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.mutate(bytes.Clone(good))
			img, err := vhd.Open(bytes.NewReader(b), int64(len(b)), "bad.vhd")
			if err == nil {
				buf := make([]byte, img.Size())
				_, err = img.ReadAt(buf, 0)
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), "bad.vhd") || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("error %v: want %v naming the file and %q", err, tc.want, tc.msg)
			}
		})
	}
}

func FuzzOpen(f *testing.F) {
	good, _ := sample()
	f.Add(good)
	data := bytes.Repeat([]byte{7}, 2048)
	f.Add(append(data, footer(2048, 2, ^uint64(0))...))
	// A real one from qemu-img when it is installed.
	if qemuImg, err := exec.LookPath("qemu-img"); err == nil {
		dir := f.TempDir()
		raw := filepath.Join(dir, "r")
		os.WriteFile(raw, bytes.Repeat([]byte("x2k"), 1000), 0o644)
		out := filepath.Join(dir, "v.vhd")
		if exec.Command(qemuImg, "convert", "-O", "vpc", "-o", "force_size=on", raw, out).Run() == nil {
			if b, err := os.ReadFile(out); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		img, err := vhd.Open(bytes.NewReader(b), int64(len(b)), "fuzz.vhd")
		if err != nil {
			return
		}
		blktest.ReadAll(img)
	})
}
