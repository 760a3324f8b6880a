package guestgen

import (
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden configs in testdata/guests")

// TestConfigsGolden compares every preset's xm config with its golden
// copy in testdata/guests (go test ./guestgen -run Golden -update).
func TestConfigsGolden(t *testing.T) {
	for _, name := range PresetNames() {
		t.Run(name, func(t *testing.T) {
			g := buildForTest(t, Presets()[name])
			got, err := os.ReadFile(g.Config)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("..", "testdata", "guests", name+".xm")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("%s differs from %s:\n%s", g.Config, golden, got)
			}
		})
	}
}

func TestTwoDisks(t *testing.T) {
	testutil.NeedTool(t, "e2fsck")
	g := buildForTest(t, TwoDisks)
	if len(g.Images) != 2 || !strings.HasSuffix(g.Images[1], "centos5-2disks-data.img") {
		t.Fatalf("images: %v", g.Images)
	}
	if out, err := exec.Command("e2fsck", "-fn", fsAt(g.Images[1], 63*512)).CombinedOutput(); err != nil {
		t.Errorf("data disk: %v\n%s", err, out)
	}
	if got := readGuestFile(t, g.Images[1], 63*512, "/README"); !strings.Contains(got, "xvdb1") {
		t.Errorf("data disk README: %q", got)
	}
	p, err := plan(TwoDisks.withDefaults(), ids{TwoDisks.Name})
	if err != nil {
		t.Fatal(err)
	}
	if got := readGuestFile(t, g.Images[0], p.Root.Offset, "/etc/fstab"); !strings.Contains(got, "/dev/xvdb1              /data") {
		t.Errorf("fstab does not mount xvdb1 on /data:\n%s", got)
	}
}

func TestXenOnly(t *testing.T) {
	g := buildForTest(t, XenOnly)
	p, err := plan(XenOnly.withDefaults(), ids{XenOnly.Name})
	if err != nil {
		t.Fatal(err)
	}
	_, es := parseGrub(t, readGuestFile(t, g.Images[0], p.Boot.Offset(), "/grub/grub.conf"))
	if len(es) != 2 {
		t.Fatalf("grub entries: %+v", es)
	}
	for _, e := range es {
		if !IsXen(e.Kernel) || !strings.Contains(e.Args, "console=xvc0") {
			t.Errorf("entry %+v is not a Xen kernel's", e)
		}
	}
	ls := run(t, "debugfs", "-R", "ls /lib/modules", fsAt(g.Images[0], p.Root.Offset))
	if !strings.Contains(ls, "2.6.18-128.el5xen") || strings.Contains(ls, "el5 ") {
		t.Errorf("/lib/modules: %s", ls)
	}
}

// TestWindowsDisk checks the HVM guest's disk: one bootable NTFS
// partition blkid recognises, and the hvm config.
func TestWindowsDisk(t *testing.T) {
	blkid := testutil.NeedTool(t, "blkid")
	g := buildForTest(t, Windows2003HVM)
	out, err := exec.Command(blkid, "-p", "-O", "32256", g.Images[0]).CombinedOutput()
	if err != nil || !strings.Contains(string(out), `TYPE="ntfs"`) {
		t.Errorf("blkid does not see NTFS in partition 1: %v %s", err, out)
	}
	f, err := os.Open(g.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	mbr := make([]byte, 512)
	if _, err := f.ReadAt(mbr, 0); err != nil {
		t.Fatal(err)
	}
	if mbr[446] != 0x80 || mbr[446+4] != 0x07 || mbr[510] != 0x55 || mbr[511] != 0xaa {
		t.Errorf("MBR entry 1: % x", mbr[446:462])
	}
}

func TestMBRGeometry(t *testing.T) {
	for _, tc := range []struct {
		lba  uint64
		want [3]byte
	}{
		{63, [3]byte{1, 1, 0}},         // cylinder 0, head 1, sector 1
		{208844, [3]byte{254, 63, 12}}, // end of cylinder 12
		{16065 * 1024, [3]byte{254, 0xff, 0xff}},
	} {
		if got := chs(tc.lba); got != tc.want {
			t.Errorf("chs(%d) = % x, want % x", tc.lba, got, tc.want)
		}
	}
}
