package overlay

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// fileDev is a read-only file device for the tests.
type fileDev struct {
	f       *os.File
	size    int64
	extents []diskimg.Extent // nil: no ExtentLister behaviour
}

func (d *fileDev) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, off) }
func (d *fileDev) WriteAt([]byte, int64) (int, error)      { return 0, diskimg.ErrReadOnly }
func (d *fileDev) Size() int64                             { return d.size }

type listingDev struct{ *fileDev }

func (d listingDev) Extents(context.Context) ([]diskimg.Extent, error) { return d.extents, nil }

// newBase writes random content of the given size to a file, makes it
// read-only, and returns it opened read-only with its content.
func newBase(t *testing.T, size int64, seed uint64) (*fileDev, []byte, string) {
	t.Helper()
	data := make([]byte, size)
	fill(data, seed)
	path := filepath.Join(t.TempDir(), "base.img")
	if err := os.WriteFile(path, data, 0o444); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &fileDev{f: f, size: size}, data, path
}

// fill fills p with pseudo-random bytes from seed.
func fill(p []byte, seed uint64) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	rand.NewChaCha8(key).Read(p)
}

func TestRandomReadWrite(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		opts  []Option
		ops   int
		maxIO int
	}{
		{"memory only", 1<<20 + 123, nil, 3000, 20000},
		{"spill to file", 1<<20 + 123, []Option{WithMemoryLimit(64 << 10)}, 3000, 20000},
		{"file only, 512-byte blocks", 300000, []Option{WithMemoryLimit(0), WithBlockSize(512)}, 3000, 3000},
		{"big blocks", 777777, []Option{WithBlockSize(64 << 10), WithMemoryLimit(256 << 10)}, 2000, 100000},
		{"tiny device", 100, nil, 500, 150},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base, data, path := newBase(t, tc.size, uint64(i))
			before := testutil.HashFile(t, path)
			ref := bytes.Clone(data)
			ov := New(base, append(tc.opts, WithTempDir(t.TempDir()))...)
			defer ov.Close()
			r := rand.New(rand.NewPCG(uint64(i), 99))
			for op := 0; op < tc.ops; op++ {
				off := r.Int64N(tc.size)
				n := r.IntN(tc.maxIO) + 1
				if r.IntN(2) == 0 {
					n = min(n, int(tc.size-off))
					p := make([]byte, n)
					fill(p, r.Uint64())
					m, err := ov.WriteAt(p, off)
					if err != nil || m != n {
						t.Fatalf("WriteAt(%d bytes, %d) = %d, %v", n, off, m, err)
					}
					copy(ref[off:], p)
					continue
				}
				p := make([]byte, n)
				m, err := ov.ReadAt(p, off)
				want := min(n, int(tc.size-off))
				if m != want {
					t.Fatalf("ReadAt(%d bytes, %d) = %d, %v; want %d", n, off, m, err, want)
				}
				if want < n && err != io.EOF {
					t.Fatalf("short ReadAt at end: err %v, want io.EOF", err)
				}
				if want == n && err != nil {
					t.Fatalf("ReadAt: %v", err)
				}
				if !bytes.Equal(p[:m], ref[off:off+int64(m)]) {
					t.Fatalf("ReadAt(%d bytes, %d) returned different content than the reference", n, off)
				}
			}
			// Whole-device read against the reference.
			all := make([]byte, tc.size)
			if _, err := ov.ReadAt(all, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(all, ref) {
				t.Fatal("overlay content differs from the reference")
			}
			// Every byte outside Dirty equals the base.
			outside := bytes.Clone(ref)
			for _, e := range ov.Dirty() {
				copy(outside[e.Offset:e.Offset+e.Length], data[e.Offset:])
			}
			if !bytes.Equal(outside, data) {
				t.Fatal("bytes outside Dirty() differ from the base")
			}
			if err := ov.Close(); err != nil {
				t.Fatal(err)
			}
			if got := testutil.HashFile(t, path); got != before {
				t.Fatal("base file changed")
			}
		})
	}
}

func TestSpillFileRemoved(t *testing.T) {
	base, _, _ := newBase(t, 1<<20, 7)
	dir := t.TempDir()
	ov := New(base, WithMemoryLimit(8192), WithTempDir(dir))
	if _, err := ov.WriteAt(make([]byte, 64<<10), 4096); err != nil {
		t.Fatal(err)
	}
	if ov.file == nil {
		t.Fatal("writing past the memory limit did not create a spill file")
	}
	if ov.memBytes > 8192 {
		t.Fatalf("memory use %d exceeds the limit", ov.memBytes)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("spill file visible in %s: %v", dir, ents)
	}
	if err := ov.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ov.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("ReadAt after Close: %v, want ErrClosed", err)
	}
	if _, err := ov.WriteAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Errorf("WriteAt after Close: %v, want ErrClosed", err)
	}
}

func TestWriteOutOfRange(t *testing.T) {
	base, _, _ := newBase(t, 10000, 3)
	ov := New(base)
	defer ov.Close()
	for _, tc := range []struct {
		off int64
		n   int
	}{{-1, 1}, {9999, 2}, {10000, 1}, {1 << 62, 1 << 10}} {
		if _, err := ov.WriteAt(make([]byte, tc.n), tc.off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("WriteAt(%d bytes, %d) = %v, want ErrOutOfRange", tc.n, tc.off, err)
		}
	}
	if d := ov.Dirty(); len(d) != 0 {
		t.Errorf("failed writes left dirty blocks %v", d)
	}
	if _, err := ov.WriteAt([]byte{1}, 9999); err != nil {
		t.Errorf("write of the last byte: %v", err)
	}
	if d := ov.Dirty(); len(d) != 1 || d[0] != (diskimg.Extent{Offset: 8192, Length: 10000 - 8192}) {
		t.Errorf("Dirty() = %v, want the short last block", d)
	}
}

func TestExtents(t *testing.T) {
	fd, _, _ := newBase(t, 1<<20, 5)
	tests := []struct {
		name   string
		base   diskimg.Device
		writes []diskimg.Extent
		want   []diskimg.Extent
	}{
		{
			name:   "base without extent list is whole device",
			base:   fd,
			writes: []diskimg.Extent{{Offset: 100, Length: 1}},
			want:   []diskimg.Extent{{Offset: 0, Length: 1 << 20}},
		},
		{
			name: "union with base extents",
			base: listingDev{&fileDev{f: fd.f, size: fd.size, extents: []diskimg.Extent{
				{Offset: 0, Length: 4096}, {Offset: 65536, Length: 8192}, {Offset: 900000, Length: 10},
			}}},
			writes: []diskimg.Extent{
				{Offset: 4096, Length: 1},      // adjacent to the first: merges
				{Offset: 70000, Length: 10000}, // overlaps the second
				{Offset: 500000, Length: 3},    // alone
				{Offset: 1<<20 - 1, Length: 1}, // last block
			},
			want: []diskimg.Extent{
				{Offset: 0, Length: 8192},
				{Offset: 65536, Length: 81920 - 65536},
				{Offset: 499712, Length: 4096},
				{Offset: 900000, Length: 10},
				{Offset: 1<<20 - 4096, Length: 4096},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ov := New(tc.base)
			defer ov.Close()
			for _, w := range tc.writes {
				if _, err := ov.WriteAt(make([]byte, w.Length), w.Offset); err != nil {
					t.Fatal(err)
				}
			}
			got, err := ov.Extents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Extents() = %v\nwant %v", got, tc.want)
			}
		})
	}
}

// TestConcurrent runs readers against a writer under the race detector;
// every read must see, per block, either the old or the new content.
func TestConcurrent(t *testing.T) {
	base, data, _ := newBase(t, 256<<10, 11)
	ov := New(base, WithMemoryLimit(64<<10), WithTempDir(t.TempDir()))
	defer ov.Close()
	fill := bytes.Repeat([]byte{0xAB}, 4096)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for off := int64(0); off < ov.Size(); off += 4096 {
			if _, err := ov.WriteAt(fill, off); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := make([]byte, 4096)
			for off := int64(0); off < ov.Size(); off += 4096 {
				if _, err := ov.ReadAt(p, off); err != nil {
					t.Error(err)
					return
				}
				if !bytes.Equal(p, fill) && !bytes.Equal(p, data[off:off+4096]) {
					t.Errorf("block at %d is torn", off)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestNeverWritesBase(t *testing.T) {
	// A base whose WriteAt fails the test.
	fd, _, _ := newBase(t, 64<<10, 13)
	ov := New(noWrite{t, fd})
	defer ov.Close()
	for off := int64(0); off < 64<<10; off += 1000 {
		if _, err := ov.WriteAt([]byte("x"), off); err != nil {
			t.Fatal(err)
		}
	}
}

type noWrite struct {
	t *testing.T
	*fileDev
}

func (d noWrite) WriteAt([]byte, int64) (int, error) {
	d.t.Error("overlay wrote to its base")
	return 0, diskimg.ErrReadOnly
}

// BenchmarkReadClean measures the cost of the overlay on reads of blocks
// never written, the bulk of a disk copy.
func BenchmarkReadClean(b *testing.B) {
	base := &memBase{make([]byte, 64<<20)}
	ov := New(base)
	defer ov.Close()
	for off := int64(0); off < base.Size(); off += 1 << 20 {
		ov.WriteAt([]byte{1}, off) // one dirty block per MiB
	}
	p := make([]byte, 1<<20)
	b.SetBytes(int64(len(p)))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		off := int64(i%63) << 20
		if _, err := ov.ReadAt(p, off+4096); err != nil {
			b.Fatal(err)
		}
	}
}

type memBase struct{ b []byte }

func (d *memBase) Size() int64                        { return int64(len(d.b)) }
func (d *memBase) WriteAt([]byte, int64) (int, error) { return 0, diskimg.ErrReadOnly }
func (d *memBase) ReadAt(p []byte, off int64) (int, error) {
	return copy(p, d.b[off:]), nil
}
