package wintest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// Disk is a Windows guest's disk image read into memory, and its first
// partition: the system volume.
type Disk struct {
	Dev  *testutil.MemDev
	Part *part.Partition
}

// ReadDisk reads the raw disk image at path into memory (a qcow2 one,
// named *.qcow2, converted with qemu-img first) and finds its first
// partition.
func ReadDisk(t testing.TB, path string) *Disk {
	t.Helper()
	if strings.HasSuffix(path, ".qcow2") {
		raw := filepath.Join(t.TempDir(), "disk.raw")
		testutil.Run(t, "qemu-img", "convert", "-O", "raw", path, raw)
		path = raw
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	d := &Disk{Dev: &testutil.MemDev{B: b}}
	tab, err := part.Read(d.Dev)
	if err != nil {
		t.Fatal(err)
	}
	d.Part = tab.Partitions[0]
	return d
}

// Volume is the system volume's bytes: a slice of Dev.B, so writes to
// the disk show in it.
func (d *Disk) Volume() []byte { return d.Dev.B[d.Part.Start : d.Part.Start+d.Part.Size] }

// VolumeFile writes the system volume as it is now to a temporary file,
// for the ntfs-3g tools, and returns its path.
func (d *Disk) VolumeFile(t testing.TB) string {
	t.Helper()
	vol := filepath.Join(t.TempDir(), "vol")
	if err := os.WriteFile(vol, d.Volume(), 0o644); err != nil {
		t.Fatal(err)
	}
	return vol
}

// NTFSCat extracts the file at path (as NTFS spells it) from the NTFS
// volume file vol with ntfscat, the oracle, into a temporary file and
// returns that file's path.
func NTFSCat(t testing.TB, vol, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	if err := os.WriteFile(out, testutil.Run(t, "ntfscat", vol, path), 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}
