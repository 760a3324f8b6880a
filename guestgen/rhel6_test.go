package guestgen

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestRHEL6 checks the RHEL 6 guest against e2fsprogs and dracut's own
// output: ext4 with RHEL 6's features and no later ones, e2fsck-clean;
// grub legacy booting with console=hvc0 and root by UUID; a dracut
// initramfs whose only disk driver is xen-blkfront; the guest's module
// tree indexed by depmod; 70-persistent-net.rules naming the vif eth0.
func TestRHEL6(t *testing.T) {
	testutil.NeedTool(t, "dracut")
	testutil.NeedTool(t, "e2fsck")
	g := buildForTest(t, RHEL6)
	p, err := plan(RHEL6.withDefaults(), ids{RHEL6.Name})
	if err != nil {
		t.Fatal(err)
	}
	img := g.Images[0]
	for _, fs := range []struct {
		name string
		off  int64
		bs   string
	}{{"/boot", p.Boot.Offset(), "1024"}, {"/", p.Root.Offset, "4096"}} {
		run(t, "e2fsck", "-fn", fsAt(img, fs.off))
		hdr := run(t, "dumpe2fs", "-h", fsAt(img, fs.off))
		var feats []string
		for _, l := range strings.Split(hdr, "\n") {
			if v, ok := strings.CutPrefix(l, "Filesystem features:"); ok {
				feats = strings.Fields(v)
			}
			if v, ok := strings.CutPrefix(l, "Block size:"); ok && strings.TrimSpace(v) != fs.bs {
				t.Errorf("%s: block size %s, want %s", fs.name, strings.TrimSpace(v), fs.bs)
			}
		}
		for _, want := range []string{"has_journal", "extent", "flex_bg", "uninit_bg", "huge_file", "dir_nlink", "extra_isize"} {
			if !slices.Contains(feats, want) {
				t.Errorf("%s lacks %s: %v", fs.name, want, feats)
			}
		}
		for _, not := range []string{"metadata_csum", "64bit", "orphan_file", "metadata_csum_seed"} {
			if slices.Contains(feats, not) {
				t.Errorf("%s has %s, which RHEL 6's e2fsprogs does not know: %v", fs.name, not, feats)
			}
		}
	}
	rel := RHEL6.Kernels[0]
	grub := readGuestFile(t, img, p.Boot.Offset(), "/grub/grub.conf")
	if !strings.Contains(grub, "console=hvc0") || !strings.Contains(grub, "root=UUID="+p.Layout.rootUUID) ||
		!strings.Contains(grub, "initrd /initramfs-"+rel+".img") {
		t.Errorf("grub.conf:\n%s", grub)
	}
	data, err := os.ReadFile(dumpGuestFile(t, img, p.Boot.Offset(), "/initramfs-"+rel+".img"))
	if err != nil {
		t.Fatal(err)
	}
	ir, err := initrd.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	if f := initrd.Detect(ir); f != initrd.Dracut {
		t.Errorf("initramfs flavour %s", f)
	}
	var kos []string
	for _, n := range ir.Names() {
		if strings.HasSuffix(n, ".ko") {
			kos = append(kos, initrd.ModuleName(n))
		}
	}
	if !slices.Contains(kos, "xen_blkfront") || !slices.Contains(kos, "ext4") || slices.ContainsFunc(kos, func(m string) bool { return strings.HasPrefix(m, "virtio") }) {
		t.Errorf("initramfs modules %v: want xen_blkfront and ext4, no virtio", kos)
	}
	for _, f := range []string{"lib/modules/" + rel + "/modules.dep.bin", "lib/modules/" + rel + "/modules.alias.bin"} {
		if _, err := ir.ReadFile(f); err != nil {
			t.Errorf("initramfs: %v", err)
		}
	}
	dep := readGuestFile(t, img, p.Root.Offset, "/lib/modules/"+rel+"/modules.dep")
	if !strings.Contains(dep, "kernel/drivers/block/virtio_blk.ko:") || !strings.Contains(dep, "kernel/drivers/block/xen-blkfront.ko:") {
		t.Errorf("the guest's modules.dep lacks virtio_blk or xen-blkfront:\n%s", dep)
	}
	rules := readGuestFile(t, img, p.Root.Offset, "/etc/udev/rules.d/70-persistent-net.rules")
	if !strings.Contains(rules, `ATTR{address}=="`+g.MAC+`"`) || !strings.Contains(rules, `NAME="eth0"`) {
		t.Errorf("70-persistent-net.rules:\n%s", rules)
	}
	fstab := readGuestFile(t, img, p.Root.Offset, "/etc/fstab")
	if !strings.Contains(fstab, "UUID="+p.Layout.rootUUID) || !strings.Contains(fstab, " ext4 ") {
		t.Errorf("fstab:\n%s", fstab)
	}
	if _, err := os.Stat(filepath.Join(g.Dir, "etc/xen", g.Name)); err != nil {
		t.Error(err)
	}
}
