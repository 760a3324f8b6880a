package probe_test

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/probe"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

func sh(t *testing.T, stdin, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	}
}

func open(t *testing.T, p string) *diskimg.Image {
	t.Helper()
	img, err := diskimg.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	return img
}

func TestPartitionedDisk(t *testing.T) {
	sfdisk := testutil.NeedTool(t, "sfdisk")
	mke2fs := testutil.NeedTool(t, "mke2fs")
	mkswap := testutil.NeedTool(t, "mkswap")
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, 40<<20); err != nil {
		t.Fatal(err)
	}
	sh(t, "label: dos\nstart=2048, size=32768, type=83, bootable\nstart=34816, type=82\n", sfdisk, "-q", p)
	sh(t, "", mke2fs, "-q", "-F", "-t", "ext3", "-b", "1024", "-L", "/boot", "-E", "offset=1048576", p, "16384")
	// This mkswap has no --offset: make the swap area apart and copy it in.
	sw := filepath.Join(t.TempDir(), "swap")
	os.WriteFile(sw, make([]byte, 4<<20), 0o644)
	sh(t, "", mkswap, "-L", "SWAP-xvda2", sw)
	data, err := os.ReadFile(sw)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(data, 34816*512); err != nil {
		t.Fatal(err)
	}
	f.Close()

	layout, err := probe.Disk(open(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if layout.Scheme != "mbr" || len(layout.Partitions) != 2 {
		t.Fatalf("layout %+v", layout)
	}
	p1, p2 := layout.Partitions[0], layout.Partitions[1]
	if p1.Number != 1 || !p1.Bootable || p1.Content.Type != "ext3" || p1.Content.Label != "/boot" || p1.Content.UUID == "" {
		t.Errorf("partition 1: %+v", p1)
	}
	if p2.Number != 2 || p2.Type != "82" || p2.Content.Type != "swap" || p2.Content.Label != "SWAP-xvda2" {
		t.Errorf("partition 2: %+v", p2)
	}
}

func TestWholeDiskFilesystems(t *testing.T) {
	mke2fs := testutil.NeedTool(t, "mke2fs")
	for _, typ := range []string{"ext2", "ext3", "ext4"} {
		t.Run(typ, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "fs.img")
			sh(t, "", mke2fs, "-q", "-F", "-t", typ, "-L", "root", p, "8M")
			layout, err := probe.Disk(open(t, p))
			if err != nil {
				t.Fatal(err)
			}
			if layout.Scheme != "" || layout.Content == nil || layout.Content.Type != typ || layout.Content.Label != "root" {
				t.Fatalf("layout %+v content %+v", layout, layout.Content)
			}
		})
	}
}

func TestEmptyDisk(t *testing.T) {
	p := filepath.Join(t.TempDir(), "zero.img")
	os.WriteFile(p, make([]byte, 1<<20), 0o644)
	layout, err := probe.Disk(open(t, p))
	if err != nil {
		t.Fatal(err)
	}
	if layout.Content == nil || layout.Content.Type != "" || len(layout.Partitions) != 0 {
		t.Fatalf("layout %+v", layout)
	}
}

// TestLVM reads the lvm2-made disk that diskimg/lvm's tests keep.
func TestLVM(t *testing.T) {
	gz, err := os.ReadFile("../lvm/testdata/lvm.img.gz")
	if err != nil {
		t.Skipf("no LVM test image: %v", err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lvm.img")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	layout, err := probe.Disk(open(t, p))
	if err != nil {
		t.Fatal(err)
	}
	pvs := 0
	for _, p := range layout.Partitions {
		if p.Content.Type == "LVM2_member" {
			pvs++
		}
	}
	names := map[string]bool{}
	for _, lv := range layout.LVs {
		names[lv.VG+"/"+lv.Name] = lv.Error == ""
	}
	if pvs == 0 || !names["VolGroup00/LogVol00"] || !names["VolGroup00/LogVol01"] {
		t.Fatalf("layout %+v", layout)
	}
}
