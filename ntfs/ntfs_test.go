package ntfs_test

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
	"github.com/xen2kvm/xen2kvm/ntfs"
)

func openVolume(t *testing.T, img string) (*ntfs.Volume, *testutil.MemDev, *part.Partition) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dev := &testutil.MemDev{B: b}
	tab, err := part.Read(dev)
	if err != nil {
		t.Fatal(err)
	}
	p := tab.Partitions[0]
	v, err := ntfs.Open(p.Device())
	if err != nil {
		t.Fatal(err)
	}
	return v, dev, p
}

func TestReadMkntfsVolume(t *testing.T) {
	g := wintest.Build(t, guestgen.WindowsSpec{Name: "w2k3", Version: "2003", Arch: "x86", PV: "gplpv"})
	v, _, _ := openVolume(t, g.Images[0])
	if !v.IsDir("windows/System32") || !v.IsDir("WINDOWS/system32/config") {
		t.Error("WINDOWS/system32 not found")
	}
	b, err := v.ReadFile("boot.ini")
	if err != nil || !strings.Contains(string(b), "[boot loader]") {
		t.Errorf("boot.ini: %q, %v", b, err)
	}
	if _, err := v.ReadFile("nope.txt"); !errors.Is(err, ntfs.ErrNotFound) {
		t.Errorf("missing file: %v", err)
	}
	sys, err := v.ReadFile("WINDOWS/system32/config/SYSTEM")
	if err != nil || string(sys[:4]) != "regf" {
		t.Fatalf("SYSTEM: %d bytes, %v", len(sys), err)
	}
	f, err := v.File("WINDOWS/system32/config/SYSTEM")
	if err != nil {
		t.Fatal(err)
	}
	if f.Size != int64(len(sys)) || f.Allocated < f.Size || len(f.Extents) == 0 {
		t.Errorf("mapping %+v", f)
	}
	if d, err := v.Dirty(); err != nil || d {
		t.Errorf("clean volume: dirty %v, %v", d, err)
	}
}

// TestWriteThroughExtents changes a file's bytes through its mapping and
// checks with ntfscat that the file reads back changed, and with
// ntfsfix -n that the volume is still consistent.
func TestWriteThroughExtents(t *testing.T) {
	g := wintest.Build(t, guestgen.WindowsSpec{Name: "w2k8", Version: "2008", Arch: "x64"})
	v, dev, pt := openVolume(t, g.Images[0])
	p := pt.Device()
	const path = "Windows/System32/config/SOFTWARE"
	f, err := v.File(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := v.ReadFile(path)
	copy(b[f.Size-5000:], bytes.Repeat([]byte("X"), 4000))
	if err := f.WriteAt(p, b[f.Size-5000:f.Size-1000], f.Size-5000); err != nil {
		t.Fatal(err)
	}
	if err := f.WriteAt(p, []byte("x"), f.Size); err == nil {
		t.Error("a write past the end was accepted")
	}
	// The volume alone, for the ntfs-3g tools.
	vol := t.TempDir() + "/vol"
	if err := os.WriteFile(vol, dev.B[pt.Start:pt.Start+pt.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ntfscat", vol, path).Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, b) {
		t.Error("ntfscat does not read back what was written")
	}
	if out, err := exec.Command("ntfsfix", "-n", vol).CombinedOutput(); err != nil {
		t.Errorf("ntfsfix -n: %v\n%s", err, out)
	}
}

func TestDirtyVolume(t *testing.T) {
	g := wintest.Build(t, guestgen.WindowsSpec{Name: "dirty", Version: "2003", Arch: "x86", Dirty: true})
	v, _, _ := openVolume(t, g.Images[0])
	if d, err := v.Dirty(); err != nil || !d {
		t.Errorf("dirty volume: dirty %v, %v", d, err)
	}
	// ntfsinfo agrees that the flag is set.
	_, dev, pt := openVolume(t, g.Images[0])
	vol := t.TempDir() + "/vol"
	if err := os.WriteFile(vol, dev.B[pt.Start:pt.Start+pt.Size], 0o644); err != nil {
		t.Fatal(err)
	}
	out, _ := exec.Command("ntfsinfo", "-f", "-m", vol).CombinedOutput()
	if !strings.Contains(string(out), "Volume Flags: 0x0001") {
		t.Errorf("ntfsinfo -m does not see the dirty flag:\n%s", out)
	}
}

func TestNotNTFS(t *testing.T) {
	if _, err := ntfs.Open(&testutil.MemDev{B: make([]byte, 1<<20)}); !errors.Is(err, ntfs.ErrNotNTFS) {
		t.Errorf("zeros: %v", err)
	}
}
