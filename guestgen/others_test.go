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
	// /data is DataVG/data: its filesystem starts at the PV's first
	// extent, after the LVM label and metadata.
	vg := dataVG(TwoDisks, ids{TwoDisks.Name}, 0)
	parts, err := cylinderPartitions(100<<20, []int{0}, []byte{0x8e})
	if err != nil {
		t.Fatal(err)
	}
	vg.PVSectors = parts[0].Size
	vg.LVs[0].Extents = vg.peCount()
	lvOff, _, err := vg.lvOffset("data")
	if err != nil {
		t.Fatal(err)
	}
	off := parts[0].Offset() + lvOff
	if out, err := exec.Command("e2fsck", "-fn", fsAt(g.Images[1], off)).CombinedOutput(); err != nil {
		t.Errorf("data LV: %v\n%s", err, out)
	}
	if got := readGuestFile(t, g.Images[1], off, "/README"); !strings.Contains(got, "xvdb1") {
		t.Errorf("data disk README: %q", got)
	}
	f, err := os.Open(g.Images[1])
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	label := make([]byte, 32)
	if _, err := f.ReadAt(label, parts[0].Offset()+512); err != nil || string(label[:8]) != "LABELONE" || string(label[24:32]) != "LVM2 001" {
		t.Errorf("xvdb1 is no LVM2 PV: %q %v", label, err)
	}
	p, err := plan(TwoDisks.withDefaults(), ids{TwoDisks.Name})
	if err != nil {
		t.Fatal(err)
	}
	if got := readGuestFile(t, g.Images[0], p.Root.Offset, "/etc/fstab"); !strings.Contains(got, "/dev/DataVG/data        /data") {
		t.Errorf("fstab does not mount DataVG/data on /data:\n%s", got)
	}
	// The initrd activates DataVG as well as (here no) root VG.
	initrd := dumpGuestFile(t, g.Images[0], p.Boot.Offset(), "/initrd-2.6.18-164.el5.img")
	if init := run(t, "sh", "-c", "zcat "+initrd+" | cpio -i --quiet --to-stdout init"); !strings.Contains(init, "lvm vgchange -ay --ignorelockingfailure  DataVG") {
		t.Errorf("the initrd does not activate DataVG:\n%s", init)
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
	// The RPM database knows the two kernel-xen packages, and no kernel.
	db := readGuestFile(t, g.Images[0], p.Root.Offset, "/var/lib/rpm/Packages")
	for _, want := range []string{"\nkernel-xen-2.6.18-164.el5\n", "\nkernel-xen-2.6.18-128.el5\n"} {
		if !strings.Contains(db, want) || strings.Contains(db, "\nkernel-2") {
			t.Errorf("rpm database:\n%s", db)
		}
	}
	if rpm := readGuestFile(t, g.Images[0], p.Root.Offset, "/bin/rpm"); rpm != skel("rpm") {
		t.Errorf("/bin/rpm is not the rpm stand-in")
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
