package pipeline_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

func needRHEL6(t *testing.T) {
	t.Helper()
	needE2E(t)
	testutil.NeedTool(t, "dracut")
	testutil.NeedTool(t, "depmod")
}

// TestE2ERHEL6 migrates the RHEL 6-style guest (ext4, grub legacy with
// console=hvc0, a dracut initramfs whose only disk driver is
// xen-blkfront, no SELinux file contexts) and boots it under TCG: the
// rebuilt initramfs loads virtio and finds the root by UUID, the guest
// relabels and reboots once for the /.autorelabel the conversion left,
// then reaches login: on ttyS0 with its network proven. The config's vif
// gives no MAC (Xen drew one at every boot), nor does its ifcfg-eth0
// (no HWADDR), so the KVM NIC has a new one: udev's persistent-net stand-in names it eth0 in the rules file
// the conversion freed (without the rule it becomes eth1 and the network
// does not come up: TestE2ERuleLeftOut). The output's ext4 filesystems
// pass e2fsck -fn.
// noVifMAC writes g's config with the MAC addresses taken out of its
// vifs: Xen draws a new MAC at every boot for such a vif, and the KVM
// guest gets one of its own.
func noVifMAC(t *testing.T, g *guestgen.Guest) string {
	t.Helper()
	b, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	without := regexp.MustCompile(`mac=[0-9A-Fa-f:]+,?`).ReplaceAll(b, nil)
	if bytes.Equal(without, b) {
		t.Fatalf("%s: no vif with a MAC", g.Config)
	}
	p := filepath.Join(t.TempDir(), g.Name)
	if err := os.WriteFile(p, without, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestE2ERHEL6(t *testing.T) {
	needRHEL6(t)
	e2fsck := testutil.NeedTool(t, "e2fsck")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	g := guest(t, guestgen.RHEL6)
	sourcesUnchanged(t, g)
	out := filepath.Join(t.TempDir(), "kvm")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, "migrate", noVifMAC(t, g), "-o", out, "--disk-map", diskMap(g),
		"--boot-check", "--accel", "tcg", "--boot-timeout", "6m", "--json")
	relabels := relabelsPlanned(&rep)
	if relabels != 1 {
		t.Errorf("the conversion left no /.autorelabel on a guest without file contexts: nothing proves the relabel reboot is followed")
	}
	firstBootProven(t, rep.Boot, guestgen.RHEL6, relabels)

	edits := map[string]report.Edit{}
	for _, e := range rep.Edits {
		edits[e.Path] = e
	}
	rel := guestgen.RHEL6.Kernels[0]
	if e := edits["boot/initramfs-"+rel+".img"]; e.Rule != "initrd" || !strings.Contains(e.Diff, "dracut") ||
		!strings.Contains(e.Diff, "virtio_blk.ko") || !strings.Contains(e.Diff, "modules.dep.bin") {
		t.Errorf("initramfs edit: %+v", e)
	}
	if e := edits["boot/grub/grub.conf"]; !strings.Contains(e.Diff, "-\tkernel") || !strings.Contains(e.Diff, "console=ttyS0") {
		t.Errorf("grub.conf edit: %+v", e)
	}
	if e := edits["etc/udev/rules.d/70-persistent-net.rules"]; e.Rule != "persistent-net" {
		t.Errorf("70-persistent-net.rules edit: %+v", e)
	}

	serial, _ := os.ReadFile(filepath.Join(out, g.Name+".boot.log"))
	for _, want := range []string{"dracut: Mounted root filesystem /dev/vda2", "SELinux targeted policy relabel is required", "login:"} {
		if !bytes.Contains(serial, []byte(want)) {
			t.Errorf("the serial log lacks %q", want)
		}
	}
	// udev recorded the KVM NIC (virtio, with the MAC the domain XML
	// gives it, not the Xen NIC's) as eth0.
	xml, err := os.ReadFile(filepath.Join(out, g.Name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`<mac address=["']([0-9a-f:]+)["']`).FindSubmatch(xml)
	if m == nil || strings.EqualFold(string(m[1]), g.MAC) {
		t.Fatalf("the domain XML's MAC: %q, want a new one (the Xen NIC had %s)", m, g.MAC)
	}
	kvmMAC := string(m[1])
	// Its ifcfg-eth0 has no HWADDR either: the report says the MAC is
	// xen2kvm's, and a warning says what that changes.
	if n := rep.Source.NICs; len(n) != 1 || n[0].NewMAC != kvmMAC || !strings.HasPrefix(n[0].MACFrom, "made by xen2kvm") {
		t.Errorf("report NICs %+v, want the MAC %s made by xen2kvm", n, kvmMAC)
	}
	if !strings.Contains(strings.Join(rep.Warnings, "\n"), "neither the config nor the guest's /etc/sysconfig/network-scripts/ifcfg-eth0 gives NIC 0 a MAC") {
		t.Errorf("no warning that NIC 0 has no MAC anywhere: %q", rep.Warnings)
	}
	recorded := false
	for _, f := range rep.Boot.Drift.Files {
		if f.Path == "etc/udev/rules.d/70-persistent-net.rules" {
			recorded = f.Change == "changed" && strings.Contains(f.Diff, "+# net device (virtio_net)") &&
				strings.Contains(f.Diff, `ATTR{address}=="`+kvmMAC+`", ATTR{type}=="1", KERNEL=="eth*", NAME="eth0"`)
			if !recorded {
				t.Errorf("70-persistent-net.rules after the first boot: %+v", f)
			}
		}
	}
	if !recorded {
		t.Errorf("the first boot did not record the KVM NIC in 70-persistent-net.rules: %+v", rep.Boot.Drift.Files)
	}

	// e2fsck on both ext4 filesystems of the output.
	raw := filepath.Join(t.TempDir(), "vda.raw")
	if b, err := exec.Command(qemuImg, "convert", "-O", "raw", filepath.Join(out, g.Name+"-vda.qcow2"), raw).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	img, err := diskimg.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	tab, err := part.Read(img)
	img.Close()
	if err != nil || len(tab.Partitions) != 3 {
		t.Fatalf("partitions of the output: %+v %v", tab, err)
	}
	for _, p := range tab.Partitions[:2] {
		if b, err := exec.Command(e2fsck, "-fn", raw+"?offset="+strconv.FormatInt(p.Start, 10)).CombinedOutput(); err != nil {
			t.Errorf("e2fsck -fn on the output's partition at %d: %v\n%s", p.Start, err, b)
		}
	}
}

// TestE2ERHEL6UnconvertedDoesNotBoot boots the RHEL 6 guest as it is on
// the hardware a migration gives it (virtio disk and NIC), with only its
// console moved to ttyS0 so the failure shows, and dracut told to give up
// after 10 s instead of 180 s: its kernel, its own initramfs (xen-blkfront
// only) and root=UUID=. dracut never sees the root and gives up.
func TestE2ERHEL6UnconvertedDoesNotBoot(t *testing.T) {
	needRHEL6(t)
	g := guest(t, guestgen.RHEL6)
	sourcesUnchanged(t, g)
	d, err := config.ParseFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	k, err := config.ToKVM(d, config.KVMOptions{Virtio: true, OS: "linux",
		Images: map[string]config.Image{d.Disks[0].Target: {Path: g.Images[0], Format: "raw"}}})
	if err != nil {
		t.Fatal(err)
	}
	rel := guestgen.RHEL6.Kernels[0]
	root := readOnlyGuest(t, g.Images[0], "xvda")
	kernel, initrd := bootFiles(t, root, "boot/vmlinuz-"+rel, "boot/initramfs-"+rel+".img")
	grub, err := root.ReadFile("boot/grub/grub.conf")
	if err != nil {
		t.Fatal(err)
	}
	var args string
	for _, l := range strings.Split(string(grub), "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "kernel" {
			args = strings.Join(f[2:], " ")
		}
	}
	if !strings.Contains(args, "console=hvc0") {
		t.Fatalf("grub.conf's kernel line %q has no console=hvc0", args)
	}
	args = strings.Replace(args, "console=hvc0", "console=ttyS0", 1) + " rd.retry=10 rd.shell=0 panic=1"
	be := bootFails(t, k, kernel, initrd, args)
	if be.Stage != kvmrun.StageInitrd {
		t.Errorf("stopped in stage %s, want dracut failing to find its root", be.Stage)
	}
	if !strings.Contains(be.Clue, "does not exist") && !strings.Contains(be.Clue, "Could not boot") {
		t.Errorf("clue %q does not name the missing root", be.Clue)
	}
}
