package assemble

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var update = flag.Bool("update", false, "rebuild testdata/rhel5-lvm.img.gz with the lvm2 tools (root)")

const (
	uuidHome   = "6b0c7a3e-0000-4000-8000-00000000603e"
	lvmFstab   = "/dev/VolGroup00/LogVol00 / ext3 defaults 1 1\nLABEL=/boot /boot ext3 defaults 1 2\n/dev/mapper/VolGroup00-lv--home /home ext3 defaults 1 2\n/dev/VolGroup00/LogVol01 swap swap defaults 0 0\n"
	lvmLayout  = "label: dos\nstart=2048,size=16384,type=83,bootable\nstart=18432,type=8e\n"
	lvmPVStart = 18432 * 512
)

// TestLVMGuest assembles the committed RHEL 5 default layout: /boot on
// xvda1, VolGroup00 on xvda2 with the root, swap and a home LV whose
// name has a dash.
func TestLVMGuest(t *testing.T) {
	checkLVMGuest(t, testutil.ReadGz(t, "testdata/rhel5-lvm.img.gz"))
}

// TestLVMGuestBuilt builds the same layout with the lvm2 tools on loop
// devices (root only) and assembles it.
func TestLVMGuestBuilt(t *testing.T) {
	testutil.NeedRoot(t, "building LVM volumes needs root (loop devices)")
	for _, tool := range []string{"losetup", "lvm", "sfdisk", "mke2fs", "mkswap"} {
		testutil.NeedTool(t, tool)
	}
	img := buildLVMGuest(t)
	checkLVMGuest(t, img)
	if *update {
		testutil.WriteGz(t, "testdata/rhel5-lvm.img.gz", img)
	}
}

func checkLVMGuest(t *testing.T, img []byte) {
	t.Helper()
	g, err := Open(context.Background(), []Disk{{"xvda", &testutil.MemDev{B: img}}}, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	var got []string
	for _, f := range g.Filesystems {
		got = append(got, fmt.Sprintf("%s %s %s %s %s", strings.Join(f.Devices, ","), f.Type, f.Label, f.UUID, f.MountPoint))
	}
	want := []string{
		"/dev/xvda1 ext3 /boot " + uuidBoot + " /boot",
		"/dev/VolGroup00/LogVol00,/dev/mapper/VolGroup00-LogVol00 ext3 / " + uuidRoot + " /",
		"/dev/VolGroup00/LogVol01,/dev/mapper/VolGroup00-LogVol01 swap  " + uuidSwap + " ",
		"/dev/VolGroup00/lv-home,/dev/mapper/VolGroup00-lv--home ext3 home " + uuidHome + " /home",
	}
	if !slices.Equal(got, want) {
		t.Errorf("filesystems:\n got %q\nwant %q", got, want)
	}
	if len(g.VGs) != 1 || g.VGs[0].Name != "VolGroup00" || len(g.Warnings) != 0 {
		t.Errorf("VGs %v, warnings %q", g.VGs, g.Warnings)
	}
	wantDevs := []string{"/dev/VolGroup00/LogVol00", "/dev/VolGroup00/LogVol01", "/dev/VolGroup00/lv-home",
		"/dev/mapper/VolGroup00-LogVol00", "/dev/mapper/VolGroup00-LogVol01", "/dev/mapper/VolGroup00-lv--home",
		"/dev/xvda", "/dev/xvda1", "/dev/xvda2"}
	if !slices.Equal(g.Devices, wantDevs) {
		t.Errorf("devices = %q", g.Devices)
	}
	for name, content := range map[string]string{
		"etc/fstab":               lvmFstab,
		"boot/grub/grub.conf":     "root (hd0,0)\n",
		"home/user/.bash_profile": "PATH=$PATH\n",
		"etc/sysconfig/network":   "NETWORKING=yes\n",
	} {
		if b, err := fs.ReadFile(g.Root, name); err != nil || string(b) != content {
			t.Errorf("%s = %q, %v", name, b, err)
		}
	}
}

func lvmFilesystems(t *testing.T) (boot, root, swap, home []byte) {
	boot = mkfs(t, fsSpec{"ext3", "/boot", uuidBoot, 8 << 20, map[string]string{"grub/grub.conf": "root (hd0,0)\n"}})
	root = mkfs(t, fsSpec{"ext3", "/", uuidRoot, 12 << 20, map[string]string{
		"etc/fstab": lvmFstab, "etc/sysconfig/network": "NETWORKING=yes\n", "sbin/": "", "boot/": "", "home/": "",
	}})
	swap = mkfs(t, fsSpec{"swap", "", uuidSwap, 2 << 20, nil})
	home = mkfs(t, fsSpec{"ext3", "home", uuidHome, 4 << 20, map[string]string{"user/.bash_profile": "PATH=$PATH\n"}})
	return
}

func buildLVMGuest(t *testing.T) []byte {
	boot, root, swap, home := lvmFilesystems(t)
	path := filepath.Join(t.TempDir(), "xvda.img")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 32<<20); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sfdisk", "-q", path)
	cmd.Stdin = strings.NewReader(lvmLayout)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	loop := testutil.Loop(t, path, "--offset", strconv.Itoa(lvmPVStart))
	// Activation is off: nothing reaches device-mapper and the data is
	// written at the extents lvs reports.
	conf := "backup { backup=0 archive=0 } global { activation=0 }"
	lvm := func(args ...string) []byte {
		t.Helper()
		return testutil.Run(t, "lvm", append([]string{args[0], "--devices", loop, "--config", conf}, args[1:]...)...)
	}
	lvm("pvcreate", "-q", loop)
	lvm("vgcreate", "-q", "-s", "1M", "VolGroup00", loop)
	content := map[string][]byte{"LogVol00": root, "LogVol01": swap, "lv-home": home}
	for _, name := range []string{"LogVol00", "LogVol01", "lv-home"} {
		lvm("lvcreate", "-q", "-an", "-Zn", "-L", fmt.Sprintf("%dM", len(content[name])>>20), "-n", name, "VolGroup00")
	}
	var rep struct {
		Report []struct {
			Seg []struct {
				Name   string `json:"lv_name"`
				Ranges string `json:"seg_pe_ranges"`
			} `json:"seg"`
			PV []struct {
				PEStart string `json:"pe_start"`
			} `json:"pv"`
		} `json:"report"`
	}
	if err := json.Unmarshal(lvm("lvs", "--segments", "--reportformat", "json", "-o", "lv_name,seg_pe_ranges", "VolGroup00"), &rep); err != nil {
		t.Fatal(err)
	}
	segs := rep.Report[0].Seg
	if err := json.Unmarshal(lvm("pvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "pe_start"), &rep); err != nil {
		t.Fatal(err)
	}
	peStart, err := strconv.ParseInt(rep.Report[0].PV[0].PEStart, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(boot, 2048*512); err != nil {
		t.Fatal(err)
	}
	for _, s := range segs {
		// One linear segment per LV: "/dev/loopN:first-last".
		_, r, _ := strings.Cut(s.Ranges, ":")
		first, _, _ := strings.Cut(r, "-")
		pe, err := strconv.ParseInt(first, 10, 64)
		if err != nil || strings.Contains(s.Ranges, " ") {
			t.Fatalf("LV %s: unexpected PE ranges %q", s.Name, s.Ranges)
		}
		if _, err := f.WriteAt(content[s.Name], lvmPVStart+peStart+pe<<20); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return img
}
