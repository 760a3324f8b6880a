package pipeline

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

func TestCheckLabels(t *testing.T) {
	testutil.NeedTool(t, "mke2fs")
	dir := t.TempDir()
	testutil.WriteTree(t, filepath.Join(dir, "tree"), map[string]string{"etc/fstab": "x\n", "etc/new.conf": "x\n"})
	img := filepath.Join(dir, "root.img")
	testutil.Run(t, "mke2fs", "-q", "-F", "-t", "ext3", "-I", "256", "-d", filepath.Join(dir, "tree"), img, "8M")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	dev := &testutil.MemDev{B: b}
	fsys, err := extfs.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	if err := fsys.SetXattr("etc/fstab", convert.SELinuxAttr, []byte("system_u:object_r:etc_t:s0\x00")); err != nil {
		t.Fatal(err)
	}
	root := guestfs.NewMounts(fsys)
	p := &convert.Plan{SELinux: "enforcing", Edits: []convert.Edit{
		{Path: "etc/fstab", Kind: convert.Modify}, {Path: "etc/new.conf", Kind: convert.Create}, {Path: "etc/gone", Kind: convert.Remove}}}
	c, ok := checkLabels(root, p)
	if !ok || c.OK || !strings.Contains(c.Detail, "/etc/new.conf") || strings.Contains(c.Detail, "/etc/fstab") {
		t.Errorf("unlabelled file: %+v", c)
	}
	if err := fsys.SetXattr("etc/new.conf", convert.SELinuxAttr, []byte("system_u:object_r:etc_t:s0\x00")); err != nil {
		t.Fatal(err)
	}
	if c, ok := checkLabels(root, p); !ok || !c.OK {
		t.Errorf("all labelled: %+v", c)
	}
	if _, ok := checkLabels(root, &convert.Plan{SELinux: "disabled"}); ok {
		t.Error("check runs for a guest without SELinux")
	}
	if err := fsys.WriteFile(".autorelabel", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fsys.RemoveXattr("etc/new.conf", convert.SELinuxAttr); err != nil {
		t.Fatal(err)
	}
	if c, ok := checkLabels(root, p); !ok || !c.OK || !strings.Contains(c.Detail, "autorelabel") {
		t.Errorf("with /.autorelabel: %+v", c)
	}
}
