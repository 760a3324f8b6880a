package convert_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

func planTree(t *testing.T, tree string, opts convert.Options) (*convert.Plan, string, string) {
	t.Helper()
	root, rootDir, bootDir := guestTree(t, tree)
	p := makePlan(t, root, tree, opts)
	if err := p.Apply(root); err != nil {
		t.Fatal(err)
	}
	return p, rootDir, bootDir
}

// Each RHEL rule edits what it should, says why in the dry-run diff, and
// disabling it leaves those files as they were.
func TestRHELRules(t *testing.T) {
	tests := []struct {
		rule, tree string
		check      func(t *testing.T, rootDir, bootDir string) // after Apply, rule on
		off        func(t *testing.T, rootDir, bootDir string) // after Apply, rule off
		why        string
	}{
		{"kudzu", "rhel5-real", func(t *testing.T, r, _ string) {
			for _, l := range []string{"3", "4", "5"} {
				if _, err := os.Lstat(filepath.Join(r, "etc/rc.d/rc"+l+".d/S05kudzu")); !os.IsNotExist(err) {
					t.Errorf("rc%s.d/S05kudzu still there: %v", l, err)
				}
			}
			if _, err := os.Lstat(filepath.Join(r, "etc/rc.d/rc0.d/K95kudzu")); err != nil {
				t.Errorf("stop link removed: %v", err)
			}
			if _, err := os.Stat(filepath.Join(r, "etc/rc.d/init.d/kudzu")); err != nil {
				t.Errorf("the init script itself removed: %v", err)
			}
		}, func(t *testing.T, r, _ string) {
			if _, err := os.Lstat(filepath.Join(r, "etc/rc.d/rc3.d/S05kudzu")); err != nil {
				t.Errorf("rule off, S05kudzu gone: %v", err)
			}
		}, "chkconfig kudzu off"},
		{"lvm-filter", "rhel5-real", func(t *testing.T, r, b string) {
			conf := readFile(t, filepath.Join(r, "etc/lvm/lvm.conf"))
			if !strings.Contains(conf, `"a|^/dev/vd[a-z]+[0-9]*$|"`) || !strings.Contains(conf, `"a|/dev/vda2|"`) {
				t.Errorf("lvm.conf filter not rewritten:\n%s", conf)
			}
			x := unpackCpio(t, filepath.Join(b, "initrd-2.6.18-164.el5.img"))
			if in := readFile(t, filepath.Join(x, "etc/lvm/lvm.conf")); in != conf {
				t.Errorf("initrd's lvm.conf differs from the guest's:\n%s", in)
			}
		}, func(t *testing.T, r, b string) {
			x := unpackCpio(t, filepath.Join(b, "initrd-2.6.18-164.el5.img"))
			if in := readFile(t, filepath.Join(x, "etc/lvm/lvm.conf")); strings.Contains(in, "/dev/vd") {
				t.Errorf("rule off, initrd's lvm.conf changed:\n%s", in)
			}
		}, "accepts only Xen disks"},
		{"rc-xen-modules", "rhel5-real", func(t *testing.T, r, _ string) {
			s := readFile(t, filepath.Join(r, "etc/rc.d/rc.local"))
			for _, l := range strings.Split(s, "\n") {
				if strings.Contains(l, "xen-v") && !strings.HasPrefix(l, "#") {
					t.Errorf("rc.local still loads a Xen driver: %s", l)
				}
			}
		}, nil, "load the Xen PV drivers"},
		{"kdump", "rhel5-real", func(t *testing.T, r, _ string) {
			if s := readFile(t, filepath.Join(r, "etc/kdump.conf")); !strings.Contains(s, "ext3 /dev/vdb1\n") || !strings.Contains(s, "#raw /dev/xvdb2") {
				t.Errorf("kdump.conf:\n%s", s)
			}
		}, nil, "dump target"},
		{"persistent-net", "rhel6-pv", func(t *testing.T, r, _ string) {
			s := readFile(t, filepath.Join(r, "etc/udev/rules.d/70-persistent-net.rules"))
			for _, l := range strings.Split(s, "\n") {
				if strings.Contains(l, "NAME=") && !strings.HasPrefix(l, "#") {
					t.Errorf("active persistent name left: %s", l)
				}
			}
		}, nil, "would name the KVM NIC eth1"},
	}
	for _, tc := range tests {
		t.Run(tc.rule, func(t *testing.T) {
			p, rootDir, bootDir := planTree(t, tc.tree, convert.Options{})
			if d := p.Diff(); !strings.Contains(d, "# "+tc.rule+": ") && !strings.Contains(d, "+"+tc.rule+": ") || !strings.Contains(d, tc.why) {
				t.Errorf("dry-run diff has no %s edit saying %q:\n%s", tc.rule, tc.why, d)
			}
			tc.check(t, rootDir, bootDir)
			p2, rootDir, bootDir := planTree(t, tc.tree, convert.Options{Disable: []string{tc.rule}})
			for _, e := range p2.Edits {
				if strings.Contains("+"+e.Rule+"+", "+"+tc.rule+"+") {
					t.Errorf("rule disabled, still edits /%s", e.Path)
				}
			}
			if tc.off != nil {
				tc.off(t, rootDir, bootDir)
			}
		})
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// An lvm2 that predates virtio disks makes the guest IDE, with a warning.
func TestOldLVMFallsBackToIDE(t *testing.T) {
	testutil.NeedTool(t, "cpio")
	root, rootDir, _ := guestTree(t, "rhel5-real")
	if err := os.WriteFile(filepath.Join(rootDir, "sbin/lvm.static"), []byte("fake lvm2 2.02.32\x00device types: ide sd md xvd\x00"), 0o755); err != nil {
		t.Fatal(err)
	}
	p := makePlan(t, root, "rhel5-real", convert.Options{})
	if p.Virtio || p.DeviceMap["xvda"] != "hda" {
		t.Errorf("old lvm2: virtio %v, xvda -> %s; want IDE", p.Virtio, p.DeviceMap["xvda"])
	}
	if w := strings.Join(p.Warnings, "\n"); !strings.Contains(w, "/sbin/lvm.static") || !strings.Contains(w, "virtblk") {
		t.Errorf("no warning naming the lvm binary: %q", p.Warnings)
	}
	if !strings.Contains(p.Diff(), `"a|^/dev/hd[a-z]+[0-9]*$|"`) {
		t.Errorf("filter not rewritten for IDE disks:\n%s", p.Diff())
	}
}
