package diskimg_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// plainDevice hides the ExtentLister of a device.
type plainDevice struct{ diskimg.Device }

// failingDevice fails reads that reach failAt.
type failingDevice struct {
	*diskimg.Image
	failAt int64
}

var errInjected = errors.New("injected read error")

func (d failingDevice) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > d.failAt {
		return 0, errInjected
	}
	return d.Image.ReadAt(p, off)
}

// dirEntries lists the names in dir.
func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func qemuCompare(t *testing.T, qemuImg, a, b string) {
	t.Helper()
	if o, err := exec.Command(qemuImg, "compare", a, b).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare %s %s: %v\n%s", a, b, err, o)
	}
}

func TestConvert(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	const size = 24<<20 + 4096 + 512
	raw := makeRaw(t, dir, "src.raw", size, append(scattered(size),
		piece{off: 8 << 20, n: 4 << 20, zeros: true}, piece{off: 13<<20 + 5, n: 3 << 20}))
	srcQcow2 := filepath.Join(dir, "src.qcow2")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "qcow2", "-c", raw, srcQcow2)
	srcVHD := filepath.Join(dir, "src.vhd")
	run(t, qemuImg, "convert", "-f", "raw", "-O", "vpc", "-o", "force_size=on", raw, srcVHD)

	tests := []struct {
		name   string
		src    string
		format string
		plain  bool
		opts   []diskimg.Option
	}{
		{name: "raw-to-qcow2", src: raw, format: diskimg.OutputQCOW2},
		{name: "raw-to-raw", src: raw, format: diskimg.OutputRaw},
		{name: "raw-to-qcow2-compressed", src: raw, format: diskimg.OutputQCOW2, opts: []diskimg.Option{diskimg.WithCompression(true)}},
		{name: "raw-to-qcow2-1-worker-small-chunks", src: raw, format: diskimg.OutputQCOW2, opts: []diskimg.Option{diskimg.WithWorkers(1), diskimg.WithChunkSize(4096)}},
		{name: "raw-to-qcow2-4k-clusters", src: raw, format: diskimg.OutputQCOW2, opts: []diskimg.Option{diskimg.WithClusterSize(4096)}},
		{name: "raw-to-raw-preallocated", src: raw, format: diskimg.OutputRaw, opts: []diskimg.Option{diskimg.WithPreallocation(true)}},
		{name: "qcow2-to-qcow2", src: srcQcow2, format: diskimg.OutputQCOW2},
		{name: "vhd-to-raw", src: srcVHD, format: diskimg.OutputRaw},
		{name: "no-extent-lister", src: raw, format: diskimg.OutputQCOW2, plain: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			hash := testutil.HashFile(t, tc.src)
			img, err := diskimg.Open(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			var src diskimg.Device = img
			if tc.plain {
				src = plainDevice{img}
			}
			outDir := t.TempDir()
			dst := filepath.Join(outDir, "out."+tc.format)
			var last, total, calls int64
			opts := append(tc.opts, diskimg.WithProgress(func(done, tot int64) {
				if done < last {
					t.Errorf("progress went back from %d to %d", last, done)
				}
				last, total = done, tot
				calls++
			}))
			if err := diskimg.Convert(context.Background(), src, dst, tc.format, opts...); err != nil {
				t.Fatal(err)
			}
			if last != total || calls < 2 {
				t.Errorf("progress ended at %d of %d after %d calls", last, total, calls)
			}
			if tc.format == diskimg.OutputQCOW2 {
				if o, err := exec.Command(qemuImg, "check", dst).CombinedOutput(); err != nil {
					t.Fatalf("qemu-img check: %v\n%s", err, o)
				}
			}
			qemuCompare(t, qemuImg, tc.src, dst)
			if names := dirEntries(t, outDir); len(names) != 1 {
				t.Errorf("output directory holds %v, want only the image", names)
			}
			if testutil.HashFile(t, tc.src) != hash {
				t.Fatal("source changed")
			}
		})
	}
}

func TestConvertFailureAndCancel(t *testing.T) {
	dir := t.TempDir()
	const size = 32 << 20
	raw := makeRaw(t, dir, "src.raw", size, []piece{{off: 0, n: size}})
	hash := testutil.HashFile(t, raw)

	tests := []struct {
		name string
		run  func(ctx context.Context, img *diskimg.Image, dst string) error
		want error
	}{
		{"read-error", func(ctx context.Context, img *diskimg.Image, dst string) error {
			return diskimg.Convert(ctx, failingDevice{img, 20 << 20}, dst, diskimg.OutputQCOW2, diskimg.WithWorkers(2))
		}, errInjected},
		{"cancelled", func(ctx context.Context, img *diskimg.Image, dst string) error {
			ctx, cancel := context.WithCancel(ctx)
			defer cancel()
			return diskimg.Convert(ctx, img, dst, diskimg.OutputRaw, diskimg.WithProgress(func(done, total int64) {
				if done > total/4 {
					cancel()
				}
			}))
		}, context.Canceled},
		{"cancelled-before-start", func(ctx context.Context, img *diskimg.Image, dst string) error {
			ctx, cancel := context.WithCancel(ctx)
			cancel()
			return diskimg.Convert(ctx, img, dst, diskimg.OutputQCOW2)
		}, context.Canceled},
		{"bad-format", func(ctx context.Context, img *diskimg.Image, dst string) error {
			return diskimg.Convert(ctx, img, dst, "vmdk")
		}, diskimg.ErrUnsupported},
		{"onto-itself", func(ctx context.Context, img *diskimg.Image, dst string) error {
			return diskimg.Convert(ctx, img, raw, diskimg.OutputRaw)
		}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img, err := diskimg.Open(raw)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			outDir := t.TempDir()
			dst := filepath.Join(outDir, "out.img")
			err = tc.run(context.Background(), img, dst)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Convert error = %v, want %v", err, tc.want)
			}
			if names := dirEntries(t, outDir); len(names) != 0 {
				t.Errorf("output directory holds %v after a failed conversion", names)
			}
			if testutil.HashFile(t, raw) != hash {
				t.Fatal("source changed")
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Errorf("source directory holds %v", names)
			}
		})
	}
}

// TestConvertBoundedBuffers checks that reads never run more than the
// worker count at once.
func TestConvertBoundedConcurrency(t *testing.T) {
	dir := t.TempDir()
	raw := makeRaw(t, dir, "src.raw", 16<<20, []piece{{off: 0, n: 16 << 20}})
	img, err := diskimg.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	c := &countingDevice{Image: img}
	if err := diskimg.Convert(context.Background(), c, filepath.Join(dir, "o.qcow2"), diskimg.OutputQCOW2,
		diskimg.WithWorkers(3), diskimg.WithChunkSize(64<<10)); err != nil {
		t.Fatal(err)
	}
	if c.peak.Load() > 3 || c.peak.Load() < 1 {
		t.Errorf("peak concurrent reads %d, want 1..3", c.peak.Load())
	}
	if c.maxLen.Load() > 64<<10 {
		t.Errorf("largest read %d bytes, want at most the chunk size", c.maxLen.Load())
	}
}

type countingDevice struct {
	*diskimg.Image
	cur, peak, maxLen atomic.Int64
}

func (c *countingDevice) ReadAt(p []byte, off int64) (int, error) {
	n := c.cur.Add(1)
	defer c.cur.Add(-1)
	for {
		p0 := c.peak.Load()
		if n <= p0 || c.peak.CompareAndSwap(p0, n) {
			break
		}
	}
	for {
		m := c.maxLen.Load()
		if int64(len(p)) <= m || c.maxLen.CompareAndSwap(m, int64(len(p))) {
			break
		}
	}
	return c.Image.ReadAt(p, off)
}

func ExampleConvert() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "guest.img")
	os.WriteFile(src, []byte(strings.Repeat("xen2kvm!", 1<<16)), 0o644) // 512 KiB raw

	img, err := diskimg.Open(src)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer img.Close()
	dst := filepath.Join(dir, "guest.qcow2")
	if err := diskimg.Convert(context.Background(), img, dst, diskimg.OutputQCOW2); err != nil {
		fmt.Println(err)
		return
	}
	out, _ := diskimg.Open(dst)
	defer out.Close()
	fmt.Println(img.Format(), "->", out.Format(), out.Size())
	// Output: raw -> qcow2 524288
}

// TestConvertQEMUOracle converts the acceptance shapes of disk through the
// engine and checks each output with qemu-img check and compare.
func TestConvertQEMUOracle(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	tests := []struct {
		name   string
		size   int64
		pieces []piece
	}{
		{"empty", 16 << 20, nil},
		{"fully-allocated", 4 << 20, []piece{{off: 0, n: 4 << 20}}},
		{"sparse-random", 32 << 20, []piece{{off: 100, n: 5000}, {off: 7 << 20, n: 3<<20 + 1}, {off: 20 << 20, n: 1 << 20, zeros: true}}},
		{"unaligned-size", 5<<20 + 1536, []piece{{off: 0, n: 70000}, {off: 5 << 20, n: 1536}}},
		{"over-4GiB-sparse", 4<<30 + 65536 + 512, []piece{{off: 4<<30 - 100, n: 200}, {off: 4<<30 + 65536, n: 512}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && tc.size > 1<<30 {
				t.Skip("hashing a multi-GiB source twice takes long (-short); the qcow2 writer tests cover >4 GiB")
			}
			src := makeRaw(t, dir, tc.name+".raw", tc.size, tc.pieces)
			hash := testutil.HashFile(t, src)
			img, err := diskimg.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			for _, compress := range []bool{false, true} {
				dst := filepath.Join(dir, fmt.Sprintf("%s-%v.qcow2", tc.name, compress))
				if err := diskimg.Convert(context.Background(), img, dst, diskimg.OutputQCOW2, diskimg.WithCompression(compress)); err != nil {
					t.Fatal(err)
				}
				if o, err := exec.Command(qemuImg, "check", dst).CombinedOutput(); err != nil {
					t.Fatalf("qemu-img check: %v\n%s", err, o)
				}
				qemuCompare(t, qemuImg, src, dst)
			}
			if testutil.HashFile(t, src) != hash {
				t.Fatal("source changed")
			}
		})
	}
}

// TestConvertOverlay copies an overlay with edits over a read-only image:
// the data is read once from the source and the edits land in the output.
func TestConvertOverlay(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	const size = 8 << 20
	raw := makeRaw(t, dir, "src.raw", size, []piece{{off: 0, n: 1 << 20}, {off: 5 << 20, n: 100000}})
	hash := testutil.HashFile(t, raw)
	img, err := diskimg.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	ov := overlay.New(img)
	defer ov.Close()
	edit := []byte("console=ttyS0")
	if _, err := ov.WriteAt(edit, 3<<20+7); err != nil { // in a hole of the source
		t.Fatal(err)
	}
	if _, err := ov.WriteAt(edit, 100); err != nil { // over source data
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "out.qcow2")
	if err := diskimg.Convert(context.Background(), ov, dst, diskimg.OutputQCOW2); err != nil {
		t.Fatal(err)
	}
	if testutil.HashFile(t, raw) != hash {
		t.Fatal("source changed")
	}
	// The expected disk: the source with the two edits.
	want, _ := os.ReadFile(raw)
	copy(want[3<<20+7:], edit)
	copy(want[100:], edit)
	exp := filepath.Join(dir, "want.raw")
	os.WriteFile(exp, want, 0o644)
	qemuCompare(t, qemuImg, exp, dst)
}

// TestConvertKeepsHoles checks that holes and allocated zeros of the source
// take no space in either output format.
func TestConvertKeepsHoles(t *testing.T) {
	dir := t.TempDir()
	const size = 256 << 20
	src := makeRaw(t, dir, "src.raw", size, []piece{
		{off: 10 << 20, n: 1 << 20},                // data
		{off: 100 << 20, n: 32 << 20, zeros: true}, // allocated zeros
	})
	img, err := diskimg.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, format := range []string{diskimg.OutputRaw, diskimg.OutputQCOW2} {
		dst := filepath.Join(dir, "out."+format)
		if err := diskimg.Convert(context.Background(), img, dst, format); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(dst)
		if err != nil {
			t.Fatal(err)
		}
		used := st.Sys().(*syscall.Stat_t).Blocks * 512
		if used > 3<<20 {
			t.Errorf("%s output uses %d bytes on disk for 1 MiB of data", format, used)
		}
		if format == diskimg.OutputRaw && st.Size() != size {
			t.Errorf("raw output is %d bytes, want %d", st.Size(), size)
		}
	}
}
