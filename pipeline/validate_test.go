package pipeline

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/report"
)

// newc builds a newc cpio archive of regular files.
func newc(files map[string]string, order ...string) []byte {
	var b bytes.Buffer
	add := func(name string, mode int, data string) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X", 1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.WriteString(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	add("lib", 0o40755, "")
	for _, n := range order {
		add(n, 0o100644, files[n])
	}
	add("TRAILER!!!", 0, "")
	return b.Bytes()
}

func gz(data []byte) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

// guestTree writes a converted-looking CentOS 5 guest into a directory.
func guestTree(t *testing.T, fstab, initScript string, modules ...string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{"init": initScript}
	order := []string{"init"}
	for _, m := range modules {
		files["lib/"+m] = "\x7fELF module"
		order = append(order, "lib/"+m)
	}
	w := func(name string, data []byte) {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("boot/grub/grub.conf", []byte("default=0\ntimeout=5\ntitle CentOS (2.6.18-164.el5)\n\troot (hd0,0)\n\tkernel /vmlinuz-2.6.18-164.el5 ro root=/dev/vda2 console=ttyS0\n\tinitrd /initrd-2.6.18-164.el5.img\n"))
	w("boot/vmlinuz-2.6.18-164.el5", []byte("kernel"))
	w("boot/initrd-2.6.18-164.el5.img", gz(newc(files, order...)))
	w("etc/fstab", []byte(fstab))
	return dir
}

const goodFstab = "/dev/vda2 / ext3 defaults 1 1\nLABEL=/boot /boot ext3 defaults 1 2\ntmpfs /dev/shm tmpfs defaults 0 0\nproc /proc proc defaults 0 0\n/dev/vda3 swap swap defaults 0 0\n/dev/cdrom /media auto noauto 0 0\n"
const nashInit = "#!/bin/nash\ninsmod /lib/virtio_pci.ko\ninsmod /lib/virtio_blk.ko\nmkrootdev -t ext3 -o defaults,ro vda2\n"

func view(root string) *guestView {
	r := guestfs.DirFS(root)
	return &guestView{
		root:        r,
		filesystems: map[string]fs.FS{"vda2": r},
		devices:     map[string]bool{"/dev/vda": true, "/dev/vda1": true, "/dev/vda2": true, "/dev/vda3": true},
		labels:      map[string]bool{"/boot": true},
		uuids:       map[string]bool{},
	}
}

func TestValidateView(t *testing.T) {
	k := &config.KVMDomain{Name: "g", OS: "linux"}
	for _, tc := range []struct {
		name    string
		fstab   string
		init    string
		modules []string
		fail    string // the check that must fail, "" for none
		detail  string
	}{
		{"converted", goodFstab, nashInit, []string{"virtio.ko", "virtio_ring.ko", "virtio_pci.ko", "virtio_blk.ko"}, "", ""},
		{"fstab still on xvda", strings.ReplaceAll(goodFstab, "vda2", "xvda2"), nashInit, []string{"virtio_pci.ko", "virtio_blk.ko"}, "/etc/fstab devices resolvable", "/dev/xvda2 (/)"},
		{"unknown label", strings.ReplaceAll(goodFstab, "LABEL=/boot", "LABEL=/boot1"), nashInit, []string{"virtio_pci.ko", "virtio_blk.ko"}, "/etc/fstab devices resolvable", "LABEL=/boot1"},
		{"initrd without virtio", goodFstab, "#!/bin/nash\ninsmod /lib/xenblk.ko\n", []string{"xenblk.ko"}, "initrd loads the virtio drivers", "missing virtio_blk.ko, virtio_pci.ko"},
		{"modules not loaded", goodFstab, "#!/bin/nash\ninsmod /lib/xenblk.ko\n", []string{"virtio_pci.ko", "virtio_blk.ko"}, "initrd loads the virtio drivers", "insmod virtio_blk.ko in init"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checks := validateView(view(guestTree(t, tc.fstab, tc.init, tc.modules...)), k, true, nil, t.TempDir())
			if len(checks) != 5 {
				t.Errorf("%d checks: %+v", len(checks), checks)
			}
			for _, c := range checks {
				if want := c.Name != tc.fail; c.OK != want {
					t.Errorf("%s: ok=%v (%s), want %v", c.Name, c.OK, c.Detail, want)
				}
				if c.Name == tc.fail && !strings.Contains(c.Detail, tc.detail) {
					t.Errorf("%s: detail %q lacks %q", c.Name, c.Detail, tc.detail)
				}
			}
		})
	}
}

func TestValidateRootArg(t *testing.T) {
	dir := guestTree(t, goodFstab, nashInit, "virtio_pci.ko", "virtio_blk.ko")
	os.WriteFile(filepath.Join(dir, "boot/grub/grub.conf"), []byte("default=0\ntitle x\n\tkernel /vmlinuz-2.6.18-164.el5 ro root=/dev/VolGroup00/LogVol00\n\tinitrd /initrd-2.6.18-164.el5.img\n"), 0o644)
	for _, c := range validateView(view(dir), &config.KVMDomain{}, true, nil, t.TempDir()) {
		if c.Name == "root= of the default boot entry resolvable" && (c.OK || !strings.Contains(c.Detail, "VolGroup00")) {
			t.Errorf("%+v", c)
		}
	}
	os.Remove(filepath.Join(dir, "boot/grub/grub.conf"))
	for _, c := range validateView(view(dir), &config.KVMDomain{}, true, nil, t.TempDir()) {
		if strings.HasPrefix(c.Name, "default boot entry") && (c.OK || !strings.Contains(c.Detail, "no grub config")) {
			t.Errorf("%+v", c)
		}
	}
}

func TestCPIOErrors(t *testing.T) {
	good := newc(map[string]string{"init": "x"}, "init")
	for _, b := range [][]byte{nil, []byte("070701"), good[:len(good)-20], append([]byte("070799"), good[6:]...)} {
		if _, err := cpioFiles(b); err == nil {
			t.Errorf("no error for %q", b)
		}
	}
	files, err := cpioFiles(good)
	if err != nil || string(files["init"]) != "x" {
		t.Errorf("%v %q", err, files)
	}
}

func FuzzCPIOFiles(f *testing.F) {
	f.Add(newc(map[string]string{"init": "#!/bin/nash\n", "lib/virtio_blk.ko": "elf"}, "init", "lib/virtio_blk.ko"))
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cpioFiles(b)
	})
}

// TestCheckInitrdDracutIndex: a dracut initramfs whose virtio drivers are
// in its module tree but missing from modules.dep.bin (what modprobe and
// udev read) fails the check, naming the index; the one Rebuild writes
// passes.
func TestCheckInitrdDracutIndex(t *testing.T) {
	rel := "2.6.32-431.el6.x86_64"
	base := "lib/modules/" + rel + "/"
	files := map[string]string{"init": "#!/bin/sh\n# dracut\n", "lib/dracut/modules.txt": "base\n",
		base + "modules.dep": "kernel/fs/ext4/ext4.ko:\n", base + "modules.alias": "", base + "modules.dep.bin": "stale",
		base + "kernel/fs/ext4/ext4.ko": "ext4"}
	var names []string
	for n := range files {
		names = append(names, n)
	}
	orig := newc(files, names...)
	mod := func(p string, deps ...string) initrd.Module {
		return initrd.Module{Path: p, Data: []byte(p), Deps: deps}
	}
	virtio, pci, blk := mod("kernel/drivers/virtio/virtio.ko"), mod("kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/virtio/virtio.ko"),
		mod("kernel/drivers/block/virtio_blk.ko", "kernel/drivers/virtio/virtio.ko")
	dir := t.TempDir()
	check := func(data []byte) report.Check {
		f := filepath.Join(dir, "initrd.img")
		os.WriteFile(f, data, 0o644)
		return checkInitrd(f)
	}
	good, _, err := initrd.Rebuild(orig, initrd.Spec{Release: rel, Modules: []initrd.Module{virtio, pci, blk}})
	if err != nil {
		t.Fatal(err)
	}
	if c := check(good); !c.OK {
		t.Errorf("rebuilt initramfs: %+v", c)
	}
	// The index lists virtio only; the other two are added behind its back.
	partial, _, err := initrd.Rebuild(orig, initrd.Spec{Release: rel, Modules: []initrd.Module{virtio}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := initrd.Read(partial)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []initrd.Module{pci, blk} {
		img.WriteFile(base+m.Path, m.Data, 0o644)
	}
	dep, _ := img.ReadFile(base + "modules.dep")
	img.WriteFile(base+"modules.dep", append(dep, []byte(pci.Path+": "+virtio.Path+"\n"+blk.Path+": "+virtio.Path+"\n")...), 0o644)
	stale, err := img.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	if c := check(stale); c.OK || !strings.Contains(c.Detail, "virtio_blk: not in "+base+"modules.dep.bin") {
		t.Errorf("initramfs with a stale index: %+v", c)
	}
}
