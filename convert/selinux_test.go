package convert_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// imgDev is an image file as a diskimg.Device.
type imgDev struct {
	*os.File
	size int64
}

func (d *imgDev) Size() int64 { return d.size }

// extImage builds an ext3 image of dir with mke2fs -d and opens it
// writable with extfs.
func extImage(t *testing.T, dir string) (*extfs.FS, string) {
	t.Helper()
	testutil.NeedTool(t, "mke2fs")
	img := filepath.Join(t.TempDir(), filepath.Base(dir)+".img")
	testutil.Run(t, "mke2fs", "-q", "-F", "-t", "ext3", "-I", "256", "-b", "1024", "-d", dir, img, "24M")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	fsys, err := extfs.Open(&imgDev{fh, 24 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return fsys, img
}

func eaGet(t *testing.T, img, path string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "ea")
	msg, _ := exec.Command("debugfs", "-R", fmt.Sprintf("ea_get -f %s /%s security.selinux", out, path), img).CombinedOutput()
	b, err := os.ReadFile(out)
	if err != nil {
		if strings.Contains(string(msg), "not found") || os.IsNotExist(err) {
			return ""
		}
		t.Fatalf("debugfs ea_get %s: %v\n%s", path, err, msg)
	}
	return string(b)
}

// labelledGuest is the rhel54-pv tree with the targeted policy's
// file_contexts, on two real ext3 images (/ and /boot) whose files carry
// labels.
func labelledGuest(t *testing.T, policy bool) (*guestfs.Mounts, string, string) {
	t.Helper()
	dir := t.TempDir()
	copyTree(t, filepath.Join("testdata", "rhel54-pv"), dir)
	rootDir, bootDir := filepath.Join(dir, "root"), filepath.Join(dir, "boot")
	buildInitrds(t, rootDir, bootDir)
	if policy {
		fc, err := os.ReadFile("../selinux/testdata/file_contexts")
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(rootDir, "etc/selinux/targeted/contexts/files/file_contexts")
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, fc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	rootFS, rootImg := extImage(t, rootDir)
	bootFS, bootImg := extImage(t, bootDir)
	for fsys, files := range map[*extfs.FS][]string{rootFS: {"etc/fstab", "etc/modprobe.conf"}, bootFS: {"grub/grub.conf", "initrd-2.6.18-164.el5.img"}} {
		for _, f := range files {
			if err := fsys.SetXattr(f, convert.SELinuxAttr, []byte("system_u:object_r:guest_own_t:s0\x00")); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := guestfs.NewMounts(rootFS)
	if err := m.Mount("boot", bootFS); err != nil {
		t.Fatal(err)
	}
	return m, rootImg, bootImg
}

func TestSELinuxLabels(t *testing.T) {
	testutil.NeedTool(t, "debugfs")
	root, rootImg, bootImg := labelledGuest(t, true)
	p := makePlan(t, root, "rhel54-pv", convert.Options{})
	if !p.Labels {
		t.Fatalf("plan does not label: warnings %q", p.Warnings)
	}
	diff := p.Diff()
	for _, e := range p.Edits {
		if e.Path == ".autorelabel" {
			t.Errorf("/.autorelabel planned although the policy is readable")
		}
	}
	if !strings.Contains(diff, "selinux: ") || !strings.Contains(diff, "labelled system_u:object_r:boot_t:s0") {
		t.Errorf("dry-run diff does not give the labels and their reason:\n%s", diff)
	}
	if err := p.Apply(root); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ img, path, want string }{
		// Modified files keep the guest's own label.
		{rootImg, "etc/fstab", "system_u:object_r:guest_own_t:s0\x00"},
		{rootImg, "etc/modprobe.conf", "system_u:object_r:guest_own_t:s0\x00"},
		{bootImg, "grub/grub.conf", "system_u:object_r:guest_own_t:s0\x00"},
		{bootImg, "initrd-2.6.18-164.el5.img", "system_u:object_r:guest_own_t:s0\x00"},
		// Created files get the label file_contexts gives their path.
		{bootImg, "initrd-2.6.18-164.el5.img.pre-xen2kvm", "system_u:object_r:boot_t:s0\x00"},
	} {
		if got := eaGet(t, tc.img, tc.path); got != tc.want {
			t.Errorf("/%s label %q, want %q", tc.path, got, tc.want)
		}
	}
	for _, img := range []string{rootImg, bootImg} {
		testutil.Run(t, "e2fsck", "-fn", img)
	}

	// Without the rule, created files are left unlabelled.
	root2, _, bootImg2 := labelledGuest(t, true)
	p2 := makePlan(t, root2, "rhel54-pv", convert.Options{Disable: []string{"selinux"}})
	if p2.Labels {
		t.Error("plan with the selinux rule disabled claims labels")
	}
	if err := p2.Apply(root2); err != nil {
		t.Fatal(err)
	}
	if got := eaGet(t, bootImg2, "initrd-2.6.18-164.el5.img.pre-xen2kvm"); got != "" {
		t.Errorf("rule disabled, created file labelled %q", got)
	}
}

// A guest whose policy cannot be read gets /.autorelabel instead.
func TestSELinuxFallback(t *testing.T) {
	root, _, _ := labelledGuest(t, false)
	p := makePlan(t, root, "rhel54-pv", convert.Options{})
	found := false
	for _, e := range p.Edits {
		found = found || e.Path == ".autorelabel" && e.Kind == convert.Create
		if e.Label != "" {
			t.Errorf("/%s labelled %q without a policy", e.Path, e.Label)
		}
	}
	if !found || p.Labels {
		t.Errorf("no /.autorelabel fallback (labels %v):\n%s", p.Labels, p.Diff())
	}
	if !strings.Contains(strings.Join(p.Warnings, "\n"), "file contexts cannot be read") {
		t.Errorf("warnings do not say why: %q", p.Warnings)
	}
}
