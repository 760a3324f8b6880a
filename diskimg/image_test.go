package diskimg_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// piece is a range of a test disk: random data, or zeros written to disk
// (allocated but zero).
type piece struct {
	off, n int64
	zeros  bool
}

// makeRaw writes a sparse raw image of size bytes holding the pieces and
// returns its path.
func makeRaw(t testing.TB, dir, name string, size int64, pieces []piece) string {
	t.Helper()
	p := filepath.Join(dir, name)
	f := testutil.SparseFile(t, p, size)
	defer f.Close()
	rng := rand.New(rand.NewPCG(uint64(size), uint64(len(pieces))))
	for _, pc := range pieces {
		b := make([]byte, pc.n)
		if !pc.zeros {
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
		}
		if _, err := f.WriteAt(b, pc.off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// scattered is a set of pieces over a disk of a few MiB, touching cluster
// boundaries, unaligned offsets and the last byte.
func scattered(size int64) []piece {
	return []piece{
		{off: 0, n: 512},
		{off: 4096, n: 70000},
		{off: 1 << 20, n: 1 << 20},
		{off: 3<<20 + 123, n: 5000},
		{off: 3<<20 + 65536, n: 65536, zeros: true},
		{off: size - 1000, n: 1000},
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// readAll reads a device through ReadAt in odd-sized pieces.
func readAll(t testing.TB, d diskimg.Device) []byte {
	t.Helper()
	out := make([]byte, d.Size())
	const step = 100000 // not a multiple of any cluster size
	for off := int64(0); off < d.Size(); off += step {
		end := min(off+step, d.Size())
		n, err := d.ReadAt(out[off:end], off)
		if n != int(end-off) {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", end-off, off, n, err)
		}
	}
	return out
}

// checkExtents verifies that every non-zero byte lies inside an extent.
func checkExtents(t testing.TB, data []byte, ext []diskimg.Extent) {
	t.Helper()
	pos := int64(0)
	for i, e := range ext {
		if e.Offset < pos || e.Length <= 0 || e.Offset+e.Length > int64(len(data)) {
			t.Fatalf("extent %d %+v out of order or range (prev end %d, size %d)", i, e, pos, len(data))
		}
		if j := bytes.IndexFunc(data[pos:e.Offset], func(r rune) bool { return r != 0 }); j >= 0 {
			t.Fatalf("non-zero data at %d outside the extents", pos+int64(j))
		}
		pos = e.Offset + e.Length
	}
	if j := bytes.IndexFunc(data[pos:], func(r rune) bool { return r != 0 }); j >= 0 {
		t.Fatalf("non-zero data at %d after the last extent", pos+int64(j))
	}
}

func TestOpenFormatsMadeByQEMU(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	const size = 5<<20 + 3*512 // not a multiple of any cluster size
	src := makeRaw(t, dir, "src.raw", size, scattered(size))
	want, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	hash := testutil.HashFile(t, src)

	tests := []struct {
		name   string
		args   []string
		format string
	}{
		{"raw", nil, diskimg.FormatRaw},
		{"qcow2-v3", []string{"-O", "qcow2"}, diskimg.FormatQCOW2},
		{"qcow2-v2", []string{"-O", "qcow2", "-o", "compat=0.10"}, diskimg.FormatQCOW2},
		{"qcow2-compressed", []string{"-O", "qcow2", "-c"}, diskimg.FormatQCOW2},
		{"qcow2-4k-clusters", []string{"-O", "qcow2", "-o", "cluster_size=4096"}, diskimg.FormatQCOW2},
		{"qcow2-2m-clusters-compressed", []string{"-O", "qcow2", "-c", "-o", "cluster_size=2M"}, diskimg.FormatQCOW2},
		{"qcow-v1", []string{"-O", "qcow"}, diskimg.FormatQCOW},
		{"vhd-dynamic", []string{"-O", "vpc", "-o", "subformat=dynamic,force_size=on"}, diskimg.FormatVHD},
		{"vhd-fixed", []string{"-O", "vpc", "-o", "subformat=fixed,force_size=on"}, diskimg.FormatVHD},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := src
			if tc.args != nil {
				p = filepath.Join(t.TempDir(), "img")
				args := append([]string{"convert", "-f", "raw"}, tc.args...)
				run(t, qemuImg, append(args, src, p)...)
			}
			img, err := diskimg.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer img.Close()
			if img.Format() != tc.format {
				t.Errorf("Format() = %q, want %q", img.Format(), tc.format)
			}
			if img.Size() != size {
				t.Fatalf("Size() = %d, want %d", img.Size(), size)
			}
			got := readAll(t, img)
			if !bytes.Equal(got, want) {
				t.Fatalf("content differs from the raw source")
			}
			ext, err := img.Extents(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			checkExtents(t, got, ext)
			if _, err := img.WriteAt([]byte{1}, 0); !errors.Is(err, diskimg.ErrReadOnly) {
				t.Errorf("WriteAt error = %v, want ErrReadOnly", err)
			}
			// Reads past the end.
			buf := make([]byte, 10)
			if n, err := img.ReadAt(buf, size-4); n != 4 || err != io.EOF {
				t.Errorf("ReadAt at end-4 = %d, %v; want 4, EOF", n, err)
			}
		})
	}
	if testutil.HashFile(t, src) != hash {
		t.Fatal("source changed")
	}
}

func TestRawExtentsAreSparse(t *testing.T) {
	dir := t.TempDir()
	const size = 64 << 20
	p := makeRaw(t, dir, "sparse.raw", size, []piece{{off: 8 << 20, n: 1 << 20}, {off: 40 << 20, n: 4096}})
	img, err := diskimg.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	ext, err := img.Extents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for _, e := range ext {
		total += e.Length
	}
	if total > 2<<20 {
		t.Errorf("raw extents cover %d bytes; SEEK_DATA should find about 1 MiB: %v", total, ext)
	}
	checkExtents(t, readAll(t, img), ext)
}

func TestQCOW2BackingChain(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	const size = 4 << 20
	base := makeRaw(t, dir, "base.raw", size, []piece{{off: 0, n: 1 << 20}, {off: 3 << 20, n: 100000}})
	// The modified disk differs from base in the middle and is zero at the
	// start; the overlay keeps only the differences.
	mod := makeRaw(t, dir, "mod.raw", size, []piece{{off: 0, n: 65536, zeros: true}, {off: 2 << 20, n: 300000}})
	baseData, _ := os.ReadFile(base)
	modData, _ := os.ReadFile(mod)
	copy(modData[65536:1<<20], baseData[65536:1<<20])
	copy(modData[3<<20:], baseData[3<<20:])
	if err := os.WriteFile(mod, modData, 0o644); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "vm")
	os.Mkdir(sub, 0o755)
	mid := filepath.Join(sub, "mid.qcow2")
	top := filepath.Join(sub, "top.qcow2")
	// mid: a qcow2 over the raw base, named relative to mid's directory.
	run(t, qemuImg, "create", "-q", "-f", "qcow2", "-b", "../base.raw", "-F", "raw", mid)
	run(t, qemuImg, "convert", "-f", "raw", "-O", "qcow2", "-B", "mid.qcow2", "-F", "qcow2", mod, top)
	img, err := diskimg.Open(top)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Backing() == nil || img.Backing().Backing() == nil || img.Backing().Backing().Format() != diskimg.FormatRaw {
		t.Fatalf("backing chain not resolved")
	}
	got := readAll(t, img)
	if !bytes.Equal(got, modData) {
		t.Fatal("overlay content differs")
	}
	ext, err := img.Extents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkExtents(t, got, ext)
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		content func(t *testing.T) []byte
		want    error
		msg     string
	}{
		{"vmdk", func(*testing.T) []byte { return append([]byte("KDMV"), make([]byte, 1020)...) }, diskimg.ErrUnsupported, "VMDK"},
		{"qcow-v9", func(*testing.T) []byte { return append([]byte("QFI\xfb\x00\x00\x00\x09"), make([]byte, 1016)...) }, diskimg.ErrUnsupported, "version 9"},
		{"qcow2-short", func(*testing.T) []byte { return []byte("QFI\xfb\x00\x00\x00\x03") }, diskimg.ErrCorrupt, "too short"},
		{"vhd-only-head", func(*testing.T) []byte { return append([]byte("conectix"), make([]byte, 2000)...) }, diskimg.ErrCorrupt, "truncated"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, tc.name)
			if err := os.WriteFile(p, tc.content(t), 0o644); err != nil {
				t.Fatal(err)
			}
			img, err := diskimg.Open(p)
			if err == nil {
				img.Close()
				t.Fatal("Open succeeded")
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q: want %v naming the file and %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestOpenRefusesEncryptedQCOW2(t *testing.T) {
	if testing.Short() {
		t.Skip("qemu-img spends seconds deriving the LUKS key (-short)")
	}
	qemuImg := testutil.NeedTool(t, "qemu-img")
	p := filepath.Join(t.TempDir(), "enc.qcow2")
	// qemu-img times its key derivation first; on a loaded host that
	// measurement can fail ("Unable to get accurate CPU usage"), which says
	// nothing about xen2kvm, so it is tried a few times.
	args := []string{"create", "-q", "--object", "secret,id=sec0,data=xen2kvm", "-f", "qcow2",
		"-o", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10", p, "1M"}
	for try := 1; ; try++ {
		out, err := exec.Command(qemuImg, args...).CombinedOutput()
		if err == nil {
			break
		}
		if try == 5 || !strings.Contains(string(out), "accurate CPU usage") {
			t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("qemu-img could not time its key derivation (try %d), again: %s", try, out)
	}
	_, err := diskimg.Open(p)
	if !errors.Is(err, diskimg.ErrEncrypted) || !strings.Contains(err.Error(), p) {
		t.Fatalf("Open = %v, want ErrEncrypted naming the file", err)
	}
}

// TestBlockDevice opens a loop device (a phy: disk) read-only.
func TestBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		testutil.Unavailable(t, "loop devices need root")
	}
	losetup := testutil.NeedTool(t, "losetup")
	dir := t.TempDir()
	const size = 8 << 20
	p := makeRaw(t, dir, "phy.raw", size, []piece{{off: 4096, n: 100000}, {off: size - 512, n: 512}})
	want, _ := os.ReadFile(p)
	hash := testutil.HashFile(t, p)
	out, err := exec.Command(losetup, "-f", "--show", "-r", p).CombinedOutput()
	if err != nil {
		testutil.Unavailable(t, "losetup: %v: %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	defer exec.Command(losetup, "-d", dev).Run()

	img, err := diskimg.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if !img.BlockDevice() || img.Format() != diskimg.FormatRaw || img.Size() != size {
		t.Fatalf("BlockDevice()=%v Format()=%s Size()=%d", img.BlockDevice(), img.Format(), img.Size())
	}
	got := readAll(t, img)
	if !bytes.Equal(got, want) {
		t.Fatal("content differs")
	}
	ext, err := img.Extents(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	checkExtents(t, got, ext)
	dst := filepath.Join(dir, "copy.qcow2")
	if err := diskimg.Convert(context.Background(), img, dst, diskimg.OutputQCOW2); err != nil {
		t.Fatal(err)
	}
	if testutil.HashFile(t, p) != hash {
		t.Fatal("source changed")
	}
}

func TestBackingErrors(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	a := filepath.Join(dir, "a.qcow2")
	b := filepath.Join(dir, "b.qcow2")
	run(t, qemuImg, "create", "-q", "-f", "qcow2", a, "1M")
	run(t, qemuImg, "create", "-q", "-f", "qcow2", "-u", "-b", "a.qcow2", "-F", "qcow2", b, "1M")
	// a and b back each other.
	run(t, qemuImg, "rebase", "-q", "-u", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", a)
	_, err := diskimg.Open(a)
	if !errors.Is(err, diskimg.ErrCorrupt) || !strings.Contains(err.Error(), "loops: "+b+" is backed by "+a+" again") || strings.Count(err.Error(), "a.qcow2") != 2 {
		t.Errorf("backing loop: %v", err)
	}

	c := filepath.Join(dir, "c.qcow2")
	run(t, qemuImg, "create", "-q", "-f", "qcow2", "-u", "-b", "gone.raw", "-F", "raw", c, "1M")
	_, err = diskimg.Open(c)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), c) || !strings.Contains(err.Error(), "gone.raw") {
		t.Errorf("missing backing file: %v", err)
	}
}

// TestOpenAsRaw checks that a raw disk whose guest wrote a qcow2 header
// pointing at a host file is read as the raw bytes it is.
func TestOpenAsRaw(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "host-secret")
	os.WriteFile(secret, []byte("host data"), 0o600)
	// A qcow2 header (v2, 64 KiB clusters, 1 MiB) backed by the host file.
	hdr := make([]byte, 1<<20)
	copy(hdr, "QFI\xfb\x00\x00\x00\x02")
	hdr[15] = 72                // backing file name at 72
	hdr[19] = byte(len(secret)) // its length
	hdr[23] = 16                // cluster bits
	hdr[29] = 0x10              // size 1 MiB
	hdr[39] = 1                 // one L1 entry
	hdr[45] = 1                 // L1 at 65536
	copy(hdr[72:], secret)
	p := filepath.Join(dir, "guest.img")
	os.WriteFile(p, hdr, 0o644)

	img, err := diskimg.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if img.Format() != diskimg.FormatQCOW2 || img.Backing() == nil {
		t.Fatalf("content detection: format %s, backing %v", img.Format(), img.Backing())
	}
	img.Close()

	img, err = diskimg.OpenAs(p, diskimg.FormatRaw)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Format() != diskimg.FormatRaw || img.Backing() != nil || !bytes.Equal(readAll(t, img), hdr) {
		t.Fatalf("OpenAs raw: format %s, backing %v", img.Format(), img.Backing())
	}
	if _, err := diskimg.OpenAs(p, diskimg.FormatVHD); !errors.Is(err, diskimg.ErrCorrupt) {
		t.Errorf("OpenAs vhd on a qcow2: %v", err)
	}
}
