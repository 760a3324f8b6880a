package warm_test

import (
	"context"
	"crypto/rand"
	"errors"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/warm"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// runningGuest stands for a running guest: it writes random pieces (a
// fifth of them all zeros) at random places of its disk image until
// stopped, and records which blocks it touched.
type runningGuest struct {
	f    *os.File
	size int64
	bs   int64
	rng  *mrand.Rand

	mu      sync.Mutex
	touched map[int64]bool
	writes  int
	stop    chan struct{}
	done    chan struct{}
}

func startGuest(t *testing.T, img string, bs int64, seed uint64) *runningGuest {
	t.Helper()
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	g := &runningGuest{f: f, size: fi.Size(), bs: bs, rng: mrand.New(mrand.NewPCG(seed, 1)), touched: map[int64]bool{},
		stop: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() { g.halt(); f.Close() })
	go func() {
		defer close(g.done)
		for {
			select {
			case <-g.stop:
				return
			case <-time.After(60 * time.Millisecond):
			}
			g.write(t)
		}
	}()
	return g
}

// write writes one piece: 4 KiB to 3 blocks, anywhere.
func (g *runningGuest) write(t *testing.T) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := int64(4096 * (1 + g.rng.IntN(int(g.bs/4096))))
	off := g.rng.Int64N(g.size-n) &^ 511
	p := make([]byte, n)
	if g.rng.IntN(5) != 0 {
		rand.Read(p)
	}
	if _, err := g.f.WriteAt(p, off); err != nil {
		t.Errorf("guest write: %v", err)
		return
	}
	for b := off / g.bs; b <= (off+n-1)/g.bs; b++ {
		g.touched[b] = true
	}
	g.writes++
}

func (g *runningGuest) halt() {
	select {
	case <-g.stop:
	default:
		close(g.stop)
	}
	<-g.done
	g.f.Sync()
}

func (g *runningGuest) reset() map[int64]bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.touched
	g.touched = map[int64]bool{}
	return m
}

// mkImage writes a sparse image: random data in the first half's every
// other block, the rest holes.
func mkImage(t *testing.T, size, bs int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "guest.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	f.Truncate(size)
	p := make([]byte, bs)
	for off := int64(0); off < size/2; off += 2 * bs {
		rand.Read(p)
		f.WriteAt(p, off)
	}
	return img
}

func dialHost(t *testing.T, srv *testsshd.Server) *xenhost.Host {
	t.Helper()
	u, err := xenhost.ParseURL(srv.URL(""))
	if err != nil {
		t.Fatal(err)
	}
	h, err := xenhost.Dial(context.Background(), u, xenhost.Options{Identities: []string{srv.KeyPath}, KnownHosts: srv.KnownHostsPath,
		ConfigDir: srv.ConfigDir, NoAgent: true, Warn: func(string) {}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// TestWarmBlocks: pass 1 copies a disk while a "guest" writes it; the
// guest goes on writing, then stops; pass 2 moves only the blocks that
// changed (within a block of what the guest wrote), punches the ones now
// zero, and the copy equals the final image (qemu-img compare). Both hash
// methods of the host and both hashes are used.
func TestWarmBlocks(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	srv := testsshd.Start(t, testsshd.Options{})
	h := dialHost(t, srv)
	for _, tc := range []struct {
		name    string
		method  xenhost.HashMethod
		algo    xenhost.HashAlgo
		size    int64
		bs      int64
		sparse  bool // pass 1 by CopySparse
		streams int  // helpers hashing at once
	}{
		{"python/sha1", xenhost.HashPython, xenhost.HashSHA1, 96<<20 + 12345, 1 << 20, true, 3},
		{"python/md5", xenhost.HashPython, xenhost.HashMD5, 24<<20 + 999, 256 << 10, true, 2},
		{"dd/md5", xenhost.HashDD, "", 24 << 20, 256 << 10, false, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			img := mkImage(t, tc.size, tc.bs)
			g := startGuest(t, img, tc.bs, uint64(tc.size))
			disk, err := h.OpenDisk(ctx, img)
			if err != nil {
				t.Fatal(err)
			}
			defer disk.Close()
			out := filepath.Join(t.TempDir(), "copy.raw")
			f, err := os.Create(out)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			opts := warm.Options{BlockSize: tc.bs, Method: tc.method, Algo: tc.algo, Workers: 4, Streams: tc.streams}

			before := h.BytesRead()
			var sums warm.Sums
			var st1 warm.Stats
			if tc.sparse {
				sums, st1, err = warm.CopySparse(ctx, h, img, disk, disk.Size(), f, opts)
			} else {
				sums, st1, err = warm.Copy(ctx, disk, disk.Size(), f, opts)
			}
			if err != nil {
				t.Fatal(err)
			}
			during := g.reset()
			// Data is in a quarter of the blocks, and in those the guest
			// wrote: the sparse pass 1 moves only those.
			read := h.BytesRead() - before
			quarter := (tc.size/2/tc.bs + 1) / 2
			if read != st1.BytesRead || (!tc.sparse && read != tc.size) || (tc.sparse && (read > (quarter+int64(len(during)))*tc.bs || read < (quarter-1)*tc.bs)) {
				t.Errorf("pass 1 (sparse %v) read %d (stats %d) of %d bytes; %d blocks of data, %d written meanwhile", tc.sparse, read, st1.BytesRead, tc.size, quarter, len(during))
			}
			// The guest goes on after pass 1, then stops.
			for i := 0; i < 12; i++ {
				g.write(t)
			}
			g.halt()
			after := g.reset()
			if len(during) == 0 {
				t.Log("the guest wrote nothing while pass 1 ran (a fast machine)")
			}
			final := testutil.HashFile(t, img)

			before = h.BytesRead()
			sums, st2, err := warm.Sync(ctx, h, img, disk, disk.Size(), f, sums, opts)
			if err != nil {
				t.Fatal(err)
			}
			moved := h.BytesRead() - before
			all := map[int64]bool{}
			for b := range during {
				all[b] = true
			}
			for b := range after {
				all[b] = true
			}
			t.Logf("pass 1: %+v; guest touched %d blocks during it, %d after; pass 2: %+v", st1, len(during), len(after), st2)
			// Every block the guest touched after pass 1 differs from
			// the copy unless it wrote what was there (random data: it
			// did not, zeros over zeros aside).
			if st2.Changed > int64(len(all)) {
				t.Errorf("pass 2 moved %d blocks, but the guest touched only %d", st2.Changed, len(all))
			}
			if st2.Changed < int64(len(after))/2 || st2.Changed == 0 {
				t.Errorf("pass 2 changed %d blocks; the guest touched %d after pass 1", st2.Changed, len(after))
			}
			// Bytes moved are the changed non-zero blocks, whole: within a
			// block of each block written.
			if moved != st2.BytesRead || moved > (st2.Changed-st2.Zeroed)*tc.bs || moved < (st2.Changed-st2.Zeroed-1)*tc.bs {
				t.Errorf("pass 2 moved %d bytes (stats %d) for %d changed blocks, %d of them zero, of %d bytes", moved, st2.BytesRead, st2.Changed, st2.Zeroed, tc.bs)
			}
			if st2.Hashed != st2.Blocks || st2.Blocks != (tc.size+tc.bs-1)/tc.bs {
				t.Errorf("pass 2 hashed %d blocks of %d", st2.Hashed, st2.Blocks)
			}
			if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", img, out).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img compare: the copy differs from the final image: %v\n%s", err, out)
			}
			// A third pass with nothing changed moves nothing.
			before = h.BytesRead()
			_, st3, err := warm.Sync(ctx, h, img, disk, disk.Size(), f, sums, opts)
			if err != nil || st3.Changed != 0 || h.BytesRead() != before {
				t.Errorf("pass 2 again: %+v, %d bytes, %v", st3, h.BytesRead()-before, err)
			}
			if testutil.HashFile(t, img) != final {
				t.Error("the source image changed during pass 2")
			}
		})
	}
}

// copied starts a stand-in host with opts and copies an 8 MiB image
// there (mkImage) into a local file with Copy (pass 1), in blocks of bs:
// the host, the image, the open disk and copy (closed with the test), and
// the copy's sums.
func copied(t *testing.T, opts testsshd.Options, bs int64) (*xenhost.Host, string, *xenhost.Disk, *os.File, warm.Sums) {
	t.Helper()
	h := dialHost(t, testsshd.Start(t, opts))
	ctx := context.Background()
	img := mkImage(t, 8<<20, bs)
	disk, err := h.OpenDisk(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { disk.Close() })
	f, err := os.Create(filepath.Join(t.TempDir(), "copy.raw"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	sums, _, err := warm.Copy(ctx, disk, disk.Size(), f, warm.Options{BlockSize: bs})
	if err != nil {
		t.Fatal(err)
	}
	return h, img, disk, f, sums
}

// TestSyncRefusesRunning: a block that changes between its hash and its
// read (a guest still running) fails pass 2 with ErrSourceChanging.
func TestSyncRefusesRunning(t *testing.T) {
	const bs = 64 << 10
	h, img, disk, f, sums := copied(t, testsshd.Options{}, bs)
	ctx := context.Background()
	// Change block 3 after the host hashed it: a hasher that reports a
	// hash and then lets the "guest" write.
	w, _ := os.OpenFile(img, os.O_RDWR, 0)
	defer w.Close()
	sneaky := hasherFunc(func(ctx context.Context, path string, bsz, first, count int64, m xenhost.Hashing, fn func(int64, xenhost.BlockHash) error) error {
		return h.HashBlocks(ctx, path, bsz, first, count, m, func(i int64, s xenhost.BlockHash) error {
			if i == 3 {
				p := make([]byte, 4096)
				rand.Read(p)
				w.WriteAt(p, 3*bs+100)
				if err := fn(i, xenhost.BlockHash{1}); err != nil {
					return err
				}
				return nil
			}
			return fn(i, s)
		})
	})
	_, _, err := warm.Sync(ctx, sneaky, img, disk, disk.Size(), f, sums, warm.Options{BlockSize: bs})
	if !errors.Is(err, warm.ErrSourceChanging) || !strings.Contains(err.Error(), "block 3") {
		t.Errorf("Sync with a changing source: %v", err)
	}
}

type hasherFunc func(ctx context.Context, path string, bs, first, count int64, m xenhost.Hashing, fn func(int64, xenhost.BlockHash) error) error

func (f hasherFunc) HashBlocks(ctx context.Context, path string, bs, first, count int64, m xenhost.Hashing, fn func(int64, xenhost.BlockHash) error) error {
	return f(ctx, path, bs, first, count, m, fn)
}

// TestSyncWithoutPython: pass 2 on a host without python, whose helpers
// cannot compare blocks there (xenhost.ErrNeedsPython), falls back to its
// dd and md5sum hashes and fetches the changed blocks: with helpers
// prepared ahead (to compare) and without.
func TestSyncWithoutPython(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const bs = 256 << 10
	h, img, disk, f, sums := copied(t, testsshd.Options{NoPython: true}, bs)
	ctx := context.Background()
	opts := warm.Options{BlockSize: bs}
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for round, prepared := range []bool{true, false} {
		p := make([]byte, bs)
		rand.Read(p)
		w.WriteAt(p, int64(4*round+2)*bs)              // data changed
		w.WriteAt(p[:100], int64(20+round)*bs)         // data where there was none
		w.WriteAt(make([]byte, bs), int64(4*round)*bs) // data zeroed
		o := opts
		if prepared {
			if o.Prepared, err = warm.Prepare(ctx, h, img, disk.Size(), sums, opts); err != nil {
				t.Fatal(err)
			}
			// Without python the prepared helpers exit at once: by now
			// they are gone, and telling them to go fails.
			time.Sleep(300 * time.Millisecond)
		}
		var st warm.Stats
		before := h.BytesRead()
		sums, st, err = warm.Sync(ctx, h, img, disk, disk.Size(), f, sums, o)
		if err != nil {
			t.Fatalf("prepared %v: %v", prepared, err)
		}
		if st.Changed != 3 || st.Zeroed != 1 || st.Hashed != st.Blocks || h.BytesRead()-before != 2*bs {
			t.Errorf("prepared %v: %+v, %d bytes read; want 3 changed, 1 zeroed, 2 blocks read", prepared, st, h.BytesRead()-before)
		}
		if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", img, f.Name()).CombinedOutput(); err != nil {
			t.Fatalf("prepared %v: qemu-img compare: %v\n%s", prepared, err, out)
		}
	}
}

// TestHashStreams: a helper a CPU, at most MaxStreams for all of a
// guest's disks, at least one a disk; DefaultStreams a host that cannot
// tell.
func TestHashStreams(t *testing.T) {
	for _, c := range []struct{ cpus, disks, want int }{
		{0, 1, warm.DefaultStreams}, {1, 1, 1}, {2, 1, 2}, {2, 2, 1}, {2, 3, 1},
		{4, 1, 4}, {16, 1, warm.MaxStreams}, {16, 2, warm.MaxStreams / 2}, {16, 3, 2}, {64, 12, 1}, {0, 2, 1},
	} {
		if got := warm.HashStreams(c.cpus, c.disks); got != c.want {
			t.Errorf("HashStreams(%d CPUs, %d disks) = %d, want %d", c.cpus, c.disks, got, c.want)
		}
	}
}
