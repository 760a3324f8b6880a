package qcow2_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// span is a range of test data; fill 0 means random bytes.
type span struct {
	off, n int64
	fill   byte
	random bool
}

// writeRaw makes a sparse raw file with the spans and returns its path.
func writeRaw(t *testing.T, path string, size int64, spans []span) {
	t.Helper()
	f := testutil.SparseFile(t, path, size)
	defer f.Close()
	rng := rand.New(rand.NewPCG(1, uint64(size)))
	for _, s := range spans {
		b := bytes.Repeat([]byte{s.fill}, int(s.n))
		if s.random {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}
		if _, err := f.WriteAt(b, s.off); err != nil {
			t.Fatal(err)
		}
	}
}

// copyInto writes the raw file into w in cluster-aligned chunks from a few
// goroutines, skipping chunks that are holes in the raw file.
func copyInto(t *testing.T, raw string, w *qcow2.Writer) {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := max(w.ClusterSize(), 256<<10)
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	next := make(chan int64)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, chunk)
			for off := range next {
				n := min(chunk, w.Size()-off)
				m, err := f.ReadAt(buf[:n], off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				clear(buf[m:n]) // the writer's size is rounded up to a sector
				if _, err := w.WriteAt(buf[:n], off); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for off := int64(0); off < w.Size(); off += chunk {
		// Skip whole holes, as the copy engine does.
		if d, err := f.Seek(off, 3 /* SEEK_DATA */); err != nil || d >= off+chunk {
			continue
		}
		next <- off
	}
	close(next)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// rawAndWriter creates, in a temporary folder, NAME.raw (sparse, of
// size, open for writing the test data) and a qcow2 Writer for
// NAME.qcow2 of the same size with cluster size cs; the raw file is
// closed and the writer aborted when the test ends.
func rawAndWriter(t *testing.T, name string, size int64, cs int) (raw string, rf *os.File, out string, w *qcow2.Writer) {
	t.Helper()
	dir := t.TempDir()
	raw, out = filepath.Join(dir, name+".raw"), filepath.Join(dir, name+".qcow2")
	rf = testutil.SparseFile(t, raw, size)
	t.Cleanup(func() { rf.Close() })
	w, err := qcow2.Create(out, size, qcow2.WithClusterSize(cs))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Abort() })
	return raw, rf, out, w
}

// checkAndCompare fails the test unless qemu-img check finds the qcow2
// image out sound and qemu-img compare finds it equal to the raw file.
func checkAndCompare(t *testing.T, qemuImg, raw, out string) {
	t.Helper()
	if o, err := exec.Command(qemuImg, "check", "-f", "qcow2", out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img check: %v\n%s", err, o)
	}
	if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", raw, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v\n%s", err, o)
	}
}

func TestWriterQEMUCheckAndCompare(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	const mib = 1 << 20
	tests := []struct {
		name  string
		size  int64
		spans []span
		opts  []qcow2.Option
	}{
		{name: "empty", size: 16 * mib},
		{name: "zero-size", size: 0},
		{name: "fully-allocated", size: 8 * mib, spans: []span{{0, 8 * mib, 0, true}}},
		{name: "sparse-random", size: 64 * mib, spans: []span{{0, 4096, 0, true}, {5*mib + 17, 3 * mib, 0, true}, {40 * mib, 65536, 0, false}, {50 * mib, mib, 0xee, false}}},
		{name: "unaligned-size", size: 10*mib + 12345, spans: []span{{0, mib, 0, true}, {10*mib + 12000, 345, 0, true}}},
		{name: "over-4GiB-sparse", size: 6<<30 + 512, spans: []span{{0, mib, 0, true}, {4<<30 - 4096, 8192, 0, true}, {6<<30 - mib, mib + 512, 0, true}}},
		{name: "compressed", size: 16*mib + 1000, spans: []span{{0, 3 * mib, 0, true}, {4 * mib, 4 * mib, 0x5a, false}, {16 * mib, 1000, 7, false}}, opts: []qcow2.Option{qcow2.WithCompression(true)}},
		{name: "cluster-512", size: 3*mib + 512, spans: []span{{0, mib, 0, true}, {3 * mib, 512, 1, false}}, opts: []qcow2.Option{qcow2.WithClusterSize(512)}},
		{name: "cluster-512-compressed", size: 2 * mib, spans: []span{{0, mib, 3, false}, {mib, 4096, 0, true}}, opts: []qcow2.Option{qcow2.WithClusterSize(512), qcow2.WithCompression(true)}},
		{name: "cluster-2M", size: 9 * mib, spans: []span{{mib, 3 * mib, 0, true}}, opts: []qcow2.Option{qcow2.WithClusterSize(2 * mib)}},
		{name: "preallocated", size: 2<<30 + 4096, spans: []span{{0, mib, 0, true}}, opts: []qcow2.Option{qcow2.WithPreallocation(true)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			raw := filepath.Join(dir, tc.name+".raw")
			out := filepath.Join(dir, tc.name+".qcow2")
			writeRaw(t, raw, tc.size, tc.spans)
			w, err := qcow2.Create(out, tc.size, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			copyInto(t, raw, w)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			checkAndCompare(t, qemuImg, raw, out)
			info, err := exec.Command(qemuImg, "info", out).CombinedOutput()
			if err != nil || !strings.Contains(string(info), "compat: 1.1") {
				t.Errorf("qemu-img info does not show a v3 image: %v\n%s", err, info)
			}
			// Our own reader sees the same bytes.
			f, err := os.Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			st, _ := f.Stat()
			img, err := qcow2.Open(f, st.Size(), out)
			if err != nil {
				t.Fatal(err)
			}
			rf, _ := os.Open(raw)
			defer rf.Close()
			a, b := make([]byte, 4<<20), make([]byte, 4<<20)
			for off := int64(0); off < tc.size; off += int64(len(a)) {
				if tc.size > 1<<30 && off%(1<<30) > 8<<20 && off%(1<<30) < (1<<30)-(8<<20) {
					continue // spot-check the big sparse image
				}
				n := min(int64(len(a)), tc.size-off)
				rf.ReadAt(a[:n], off)
				if m, err := img.ReadAt(b[:n], off); int64(m) != n {
					t.Fatalf("reading back at %d: %d, %v", off, m, err)
				}
				if !bytes.Equal(a[:n], b[:n]) {
					t.Fatalf("read back differs at %d", off)
				}
			}
		})
	}
}

func TestWriterZeroClustersNotStored(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "z.qcow2")
	w, err := qcow2.Create(p, 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(make([]byte, 32<<20), 0); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if st.Size() > 1<<20 {
		t.Errorf("32 MiB of zeros made a %d byte image", st.Size())
	}
}

func TestWriterRejectsMisuse(t *testing.T) {
	dir := t.TempDir()
	w, err := qcow2.Create(filepath.Join(dir, "m.qcow2"), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Abort()
	one := bytes.Repeat([]byte{1}, 65536)
	if _, err := w.WriteAt(one, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(one, 0); !errors.Is(err, qcow2.ErrRewrite) {
		t.Errorf("rewrite: %v, want ErrRewrite", err)
	}
	if _, err := w.WriteAt(one, 512); err == nil {
		t.Error("unaligned write accepted")
	}
	if _, err := w.WriteAt(one, 1<<20); err == nil {
		t.Error("write past the end accepted")
	}
	if _, err := qcow2.Create(filepath.Join(dir, "bad.qcow2"), 1, qcow2.WithClusterSize(3000)); err == nil {
		t.Error("cluster size 3000 accepted")
	}
}

// TestWriterL2TablesEvictedAndReadBack fills more L2 tables than the
// writer keeps in memory (512-byte clusters: a table maps 32 KiB), then
// goes back to the first, evicted, table: its entries are read back, kept,
// and still refuse a rewrite.
func TestWriterL2TablesEvictedAndReadBack(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const (
		cs    = 512
		table = cs / 8 * cs // guest bytes one L2 table maps
		size  = 10240 * table
	)
	raw, rf, out, w := rawAndWriter(t, "evict", size, cs)
	rng := rand.New(rand.NewPCG(7, 7))
	buf := make([]byte, cs)
	put := func(off int64) error {
		for i := range buf {
			buf[i] = byte(rng.Uint32()) | 1 // never all zero
		}
		if _, err := rf.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		_, err := w.WriteAt(buf, off)
		return err
	}
	for off := int64(0); off < size; off += table {
		if err := put(off); err != nil {
			t.Fatalf("writing at %d: %v", off, err)
		}
	}
	// Back to the first tables, long evicted.
	for _, off := range []int64{cs, table + 5*cs} {
		if err := put(off); err != nil {
			t.Fatalf("writing at %d after eviction: %v", off, err)
		}
	}
	if _, err := w.WriteAt(buf, 0); !errors.Is(err, qcow2.ErrRewrite) {
		t.Errorf("rewriting an evicted table's cluster: %v, want ErrRewrite", err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkAndCompare(t, qemuImg, raw, out)
}

// TestWriterBackingOverlay writes an empty overlay over a raw and over a
// qcow2 image: qemu-img checks it, names its backing file and format, and
// finds it equal to its backing image; QEMU's own writes through it land
// in the overlay and leave the backing file as it was.
func TestWriterBackingOverlay(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	const mib = 1 << 20
	raw := filepath.Join(dir, "base.raw")
	writeRaw(t, raw, 8*mib+512, []span{{0, mib, 0, true}, {5 * mib, 4096, 0x42, false}})
	base2 := filepath.Join(dir, "base.qcow2")
	if o, err := exec.Command(qemuImg, "convert", "-O", "qcow2", raw, base2).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, o)
	}
	for _, tc := range []struct{ name, base, format string }{
		{"raw", raw, "raw"},
		{"qcow2", base2, "qcow2"},
		{"relative-unknown-format", "base.raw", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ov := filepath.Join(dir, tc.name+".overlay.qcow2")
			w, err := qcow2.Create(ov, 8*mib+512, qcow2.WithBacking(tc.base, tc.format))
			if err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if o, err := exec.Command(qemuImg, "check", ov).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img check: %v\n%s", err, o)
			}
			info, err := exec.Command(qemuImg, "info", "--output=json", ov).Output()
			if err != nil {
				t.Fatal(err)
			}
			var js struct {
				Backing string `json:"backing-filename"`
				Format  string `json:"backing-filename-format"`
			}
			json.Unmarshal(info, &js)
			if js.Backing != tc.base || js.Format != tc.format {
				t.Errorf("qemu-img info: backing %q format %q, want %q %q", js.Backing, js.Format, tc.base, tc.format)
			}
			if o, err := exec.Command(qemuImg, "compare", "-f", "raw", raw, ov).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img compare: %v\n%s", err, o)
			}
			before := testutil.HashFile(t, raw)
			if o, err := exec.Command(testutil.NeedTool(t, "qemu-io"), "-c", "write -P 0x77 0 64k", ov).CombinedOutput(); err != nil {
				t.Fatalf("qemu-io: %v\n%s", err, o)
			}
			if testutil.HashFile(t, raw) != before {
				t.Error("a write through the overlay changed the backing file")
			}
			if o, err := exec.Command(qemuImg, "check", ov).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img check after a write: %v\n%s", err, o)
			}
		})
	}
	if _, err := qcow2.Create(filepath.Join(dir, "x.qcow2"), mib, qcow2.WithBacking("", "raw")); err == nil {
		t.Error("an empty backing file name was accepted")
	}
}

// TestWriterRewrite patches an image while it is open, as a warm
// migration patches the output it wrote in pass 1: clusters written
// before get new data or zeros in place, clusters never written get data
// (or stay unallocated for zeros), also in L2 tables long evicted; the
// result equals the raw file given the same writes (qemu-img compare) and
// qemu-img check finds no leak or corruption.
func TestWriterRewrite(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const (
		cs    = 512
		table = cs / 8 * cs
		size  = 64*table + 3*cs + 100 // the last cluster is short
	)
	raw, rf, out, w := rawAndWriter(t, "patched", size, cs)
	rng := rand.New(rand.NewPCG(3, 3))
	put := func(write func([]byte, int64) (int, error), off, n int64, zero bool) {
		t.Helper()
		buf := make([]byte, n)
		if !zero {
			for i := range buf {
				buf[i] = byte(rng.Uint32()) | 1
			}
		}
		if _, err := rf.WriteAt(buf, off); err != nil {
			t.Fatal(err)
		}
		if _, err := write(buf, off); err != nil {
			t.Fatalf("%d bytes at %d: %v", n, off, err)
		}
	}
	// The first write: every other table gets two clusters of data.
	for off := int64(0); off < 64*table; off += 2 * table {
		put(w.WriteAt, off, 2*cs, false)
	}
	// The patch: over data (partly), over data with zeros, over holes with
	// data and with zeros, across a table boundary, the short last cluster.
	put(w.Rewrite, 0, cs, false)
	put(w.Rewrite, 2*table+cs, cs, true)
	put(w.Rewrite, 4*table, 4*cs, false)
	put(w.Rewrite, 3*table-cs, 2*cs, false)
	put(w.Rewrite, 5*table, cs, true)
	put(w.Rewrite, 64*table, 3*cs+100, false)
	put(w.Rewrite, 2*table, cs, false) // back to a long-evicted table
	if _, err := w.Rewrite(make([]byte, cs), 7); err == nil {
		t.Error("an unaligned rewrite was accepted")
	}
	if err := w.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	checkAndCompare(t, qemuImg, raw, out)
	// A hole written with zeros stays a hole: 32 tables' first writes of
	// two clusters, four clusters written over holes, and the last four
	// (three and a bit, in whole sectors).
	var m []struct {
		Data   bool  `json:"data"`
		Length int64 `json:"length"`
	}
	o, err := exec.Command(qemuImg, "map", "--output=json", "-f", "qcow2", out).Output()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(o, &m); err != nil {
		t.Fatal(err)
	}
	var data int64
	for _, e := range m {
		if e.Data {
			data += e.Length
		}
	}
	if want := int64(32*2*cs + 4*cs + 4*cs); data != want {
		t.Errorf("qemu-img map: %d bytes allocated, want %d", data, want)
	}
}
