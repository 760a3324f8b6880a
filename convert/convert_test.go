package convert_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// copyTree copies src to dst keeping symlinks as symlinks.
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, out)
		case d.IsDir():
			return os.MkdirAll(out, 0o755)
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return os.WriteFile(out, b, 0o644)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// buildInitrds turns each boot/*.img.nash (a nash script) and
// boot/*.img.dracut (a list of modules) into a gzip'ed newc initrd with
// device nodes and symlinks, as mkinitrd and dracut make them.
func buildInitrds(t *testing.T, rootDir, bootDir string) {
	t.Helper()
	ms, _ := filepath.Glob(filepath.Join(bootDir, "*.img.*"))
	for _, src := range ms {
		ext := filepath.Ext(src)
		img := strings.TrimSuffix(src, ext)
		rel := strings.TrimSuffix(strings.TrimPrefix(strings.TrimPrefix(filepath.Base(img), "initrd-"), "initramfs-"), ".img")
		body, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		recs := []cpio.Record{
			cpio.Directory("bin", 0o755),
			cpio.StaticFile("bin/nash", "nash binary", 0o755),
			cpio.Symlink("sbin", "bin"),
			cpio.Directory("dev", 0o755),
			cpio.CharDev("dev/console", 0o600, 5, 1),
			cpio.CharDev("dev/null", 0o666, 1, 3),
			cpio.StaticRecord(nil, cpio.Info{Name: "dev/xvda2", Mode: cpio.S_IFBLK | 0o660, Rmajor: 202, Rminor: 2}),
			cpio.Directory("lib", 0o755),
		}
		switch ext {
		case ".nash":
			recs = append(recs, cpio.StaticFile("init", string(body), 0o755))
			// mkinitrd copies lvm.conf into initrds that start LVM.
			if conf, err := os.ReadFile(filepath.Join(rootDir, "etc/lvm/lvm.conf")); err == nil && strings.Contains(string(body), "lvm vgscan") {
				recs = append(recs, cpio.Directory("etc", 0o755), cpio.Directory("etc/lvm", 0o755), cpio.StaticFile("etc/lvm/lvm.conf", string(conf), 0o644))
			}
			for _, l := range strings.Split(string(body), "\n") {
				if m, ok := strings.CutPrefix(l, "insmod /lib/"); ok {
					m = strings.TrimSpace(m)
					recs = append(recs, cpio.StaticFile("lib/"+m, "initrd copy of "+m, 0o644))
				}
			}
		case ".dracut":
			recs = append(recs, cpio.StaticFile("init", "#!/bin/sh\n# dracut mainloop\n", 0o755),
				cpio.Directory("lib/dracut", 0o755), cpio.StaticFile("lib/dracut/modules.txt", "base\n", 0o644))
			depData, err := os.ReadFile(filepath.Join(rootDir, "lib/modules", rel, "modules.dep"))
			if err != nil {
				t.Fatal(err)
			}
			dep, err := initrd.ParseModulesDep(depData)
			if err != nil {
				t.Fatal(err)
			}
			var lines []string
			for _, name := range strings.Fields(string(body)) {
				p, ok := dep.Path(name)
				if !ok {
					t.Fatalf("%s: module %s not in modules.dep", src, name)
				}
				recs = append(recs, cpio.StaticFile("lib/modules/"+rel+"/"+p, "initramfs copy of "+name, 0o644))
				lines = append(lines, p+": "+strings.Join(dep.Deps(p), " "))
			}
			recs = append(recs, cpio.StaticFile("lib/modules/"+rel+"/modules.dep", strings.Join(lines, "\n")+"\n", 0o644),
				cpio.StaticFile("lib/modules/"+rel+"/modules.dep.bin", "binary index", 0o644))
		}
		var raw bytes.Buffer
		w := cpio.Newc.Writer(&raw)
		if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
			t.Fatal(err)
		}
		if err := cpio.WriteTrailer(w); err != nil {
			t.Fatal(err)
		}
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(raw.Bytes())
		zw.Close()
		if err := os.WriteFile(img, gz.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(src); err != nil {
			t.Fatal(err)
		}
	}
}

// guestTree copies testdata/NAME into a temporary directory, builds its
// initrds and returns it as the guest sees it (/boot mounted when the tree
// has a separate one) with the host directories.
func guestTree(t *testing.T, name string) (guestfs.FS, string, string) {
	t.Helper()
	dir := t.TempDir()
	copyTree(t, filepath.Join("testdata", name), dir)
	rootDir, bootDir := filepath.Join(dir, "root"), filepath.Join(dir, "boot")
	if _, err := os.Stat(bootDir); err != nil {
		bootDir = filepath.Join(rootDir, "boot")
		buildInitrds(t, rootDir, bootDir)
		return guestfs.DirFS(rootDir), rootDir, bootDir
	}
	buildInitrds(t, rootDir, bootDir)
	m := guestfs.NewMounts(guestfs.DirFS(rootDir))
	if err := m.Mount("boot", guestfs.DirFS(bootDir)); err != nil {
		t.Fatal(err)
	}
	return m, rootDir, bootDir
}

func disk(target string) config.Disk {
	return config.Disk{Backend: "file", Source: "/var/lib/xen/images/" + target + ".img", Target: target, Device: "disk", Mode: "w"}
}

var trees = []struct {
	name string
	dom  config.Domain
}{
	{"rhel48-pv", config.Domain{Name: "rhel48", Type: config.PV, Disks: []config.Disk{disk("xvda")},
		NICs: []config.NIC{{MAC: "00:16:3e:4a:00:01"}}}},
	{"rhel54-pv", config.Domain{Name: "rhel54", Type: config.PV, Disks: []config.Disk{disk("xvda")},
		NICs: []config.NIC{{MAC: "00:16:3e:4a:00:02"}}}},
	{"rhel54-lvm", config.Domain{Name: "rhel54lvm", Type: config.PV, Disks: []config.Disk{disk("xvda"), disk("xvdb")},
		NICs: []config.NIC{{}}}},
	{"rhel5-real", config.Domain{Name: "rhel5real", Type: config.PV, Disks: []config.Disk{disk("xvda"), disk("xvdb")},
		NICs: []config.NIC{{MAC: "00:16:3e:4a:00:02"}}}},
	{"rhel5-hvm-pvhvm", config.Domain{Name: "rhel5hvm", Type: config.HVM,
		Disks: []config.Disk{disk("hda"), {Backend: "file", Source: "/iso/rhel.iso", Target: "hdc", Device: "cdrom", Mode: "r"}},
		NICs:  []config.NIC{{MAC: "00:16:3e:4a:00:04", Model: "rtl8139"}}}},
	{"rhel6-pv", config.Domain{Name: "rhel6", Type: config.PV, Disks: []config.Disk{disk("xvda")},
		NICs: []config.NIC{{MAC: "00:16:3e:4a:00:99"}}}},
	{"xenonly", config.Domain{Name: "xenonly", Type: config.PV, Disks: []config.Disk{disk("xvda")}}},
}

// render is the golden text of an inspection and its plan.
func render(g *convert.Guest, p *convert.Plan) string {
	var b strings.Builder
	fmt.Fprintf(&b, "guest: %s %s %d.%d %s (%s)\n", g.OS, g.Distro, g.Major, g.Minor, g.Arch, g.Product)
	if g.Grub != nil {
		fmt.Fprintf(&b, "grub: /%s device.map=%q boot-prefix=%q\n", g.Grub.Path, g.Grub.DeviceMap, g.Grub.BootPrefix)
	}
	fmt.Fprintf(&b, "selinux: %s  pv-on-hvm: %v\n", g.SELinux, g.XenPVHVM)
	for _, k := range g.Kernels {
		fmt.Fprintf(&b, "kernel %s pkg=%s xen=%v virtio_blk=%v virtio_net=%v entry=%d initrd=/%s (%s)\n",
			k.Release, k.Package, k.Xen, k.VirtioBlk, k.VirtioNet, k.Entry, k.Initrd, k.InitrdFlavour)
	}
	b.WriteString("--- plan\n")
	if p.Kernel != nil {
		fmt.Fprintf(&b, "boots: %s (%s)\n", p.Kernel.Release, p.Kernel.Package)
	}
	fmt.Fprintf(&b, "virtio: %v\n", p.Virtio)
	var dm []string
	for _, k := range p.DiskOrder {
		dm = append(dm, k+"->"+p.DeviceMap[k])
	}
	fmt.Fprintf(&b, "disks: %s\n", strings.Join(dm, " "))
	for _, s := range p.Blockers {
		fmt.Fprintf(&b, "BLOCKER: %s\n", s)
	}
	for _, s := range p.Warnings {
		fmt.Fprintf(&b, "warning: %s\n", s)
	}
	for _, s := range p.Notes {
		fmt.Fprintf(&b, "note: %s\n", s)
	}
	b.WriteString("--- diff\n")
	b.WriteString(p.Diff())
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name+".txt")
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file (run with -update to accept):\n%s", path, got)
	}
}

func TestGolden(t *testing.T) {
	for _, tc := range trees {
		t.Run(tc.name, func(t *testing.T) {
			root, _, _ := guestTree(t, tc.name)
			g, err := convert.Inspect(root)
			if err != nil {
				t.Fatal(err)
			}
			p, err := convert.MakePlan(g, root, &tc.dom, convert.Options{})
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.name, render(g, p))

			if len(p.Blockers) > 0 {
				if err := p.Apply(root); !errors.Is(err, convert.ErrBlocked) {
					t.Errorf("Apply of a blocked plan: err = %v", err)
				}
				return
			}
			if err := p.Apply(root); err != nil {
				t.Fatal(err)
			}
			// Applying twice: the files are no longer as the plan found them.
			if len(p.Edits) > 0 {
				if err := p.Apply(root); !errors.Is(err, convert.ErrConflict) {
					t.Errorf("second Apply of the same plan: err = %v, want ErrConflict", err)
				}
			}
			// A new plan on the converted guest changes nothing.
			g2, err := convert.Inspect(root)
			if err != nil {
				t.Fatal(err)
			}
			p2, err := convert.MakePlan(g2, root, &tc.dom, convert.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(p2.Edits) > 0 || len(p2.Blockers) > 0 {
				t.Errorf("second plan is not empty:\n%s", render(g2, p2))
			}
			if p2.Kernel == nil || p2.Kernel.Release != p.Kernel.Release || p2.Virtio != p.Virtio {
				t.Errorf("second plan boots %v, first %v", p2.Kernel, p.Kernel)
			}
		})
	}
}

func TestWindowsHVM(t *testing.T) {
	d := &config.Domain{Name: "win2003", Type: config.HVM,
		Disks: []config.Disk{disk("hda"), {Target: "hdc", Device: "cdrom", Mode: "r"}}}
	for _, g := range []*convert.Guest{nil, {OS: "windows", Distro: "windows"}} {
		p, err := convert.MakePlan(g, nil, d, convert.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Edits) != 0 || len(p.Blockers) != 0 || p.Virtio || p.DeviceMap["hda"] != "hda" {
			t.Errorf("Windows plan: %+v", p)
		}
		if !strings.Contains(strings.Join(p.Notes, "\n"), "virtio") {
			t.Errorf("notes do not name virtio drivers as the next step: %q", p.Notes)
		}
	}
	// A PV guest without Linux is blocked.
	p, err := convert.MakePlan(nil, nil, &config.Domain{Name: "x", Type: config.PV}, convert.Options{})
	if err != nil || len(p.Blockers) == 0 {
		t.Errorf("PV guest without an OS: %v, %+v", err, p)
	}
}

func TestRulesTable(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range convert.Rules() {
		if r.Name == "" || r.Reason == "" || strings.ContainsAny(r.Name, " +,") {
			t.Errorf("rule %+v: want a one-word name and a reason", r)
		}
		if seen[r.Name] {
			t.Errorf("rule %s listed twice", r.Name)
		}
		seen[r.Name] = true
	}
	if !seen["network"] {
		t.Error("the network rule is not in Rules, so it cannot be disabled")
	}
}

func TestDisableRule(t *testing.T) {
	hwaddrWarnings := func(p *convert.Plan) int {
		n := 0
		for _, w := range p.Warnings {
			if strings.Contains(w, "HWADDR") {
				n++
			}
		}
		return n
	}
	for _, tree := range []int{1, 4} { // rhel54-pv, rhel6-pv (whose HWADDR the network rule warns about)
		root, _, _ := guestTree(t, trees[tree].name)
		g, err := convert.Inspect(root)
		if err != nil {
			t.Fatal(err)
		}
		d := &trees[tree].dom
		full, err := convert.MakePlan(g, root, d, convert.Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rule := range convert.Rules() {
			p, err := convert.MakePlan(g, root, d, convert.Options{Disable: []string{rule.Name}})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Contains(p.Notes, "rule "+rule.Name+" disabled") {
				t.Errorf("%s: rule %s disabled, notes %q do not say so", trees[tree].name, rule.Name, p.Notes)
			}
			for _, e := range p.Edits {
				for _, r := range strings.Split(e.Rule, "+") {
					if r == rule.Name {
						t.Errorf("%s: rule %s disabled but edits /%s", trees[tree].name, rule.Name, e.Path)
					}
				}
			}
			if rule.Name == "network" && hwaddrWarnings(p) != 0 {
				t.Errorf("%s: network rule disabled but still warns: %q", trees[tree].name, p.Warnings)
			}
		}
		if trees[tree].name == "rhel6-pv" && hwaddrWarnings(full) == 0 {
			t.Errorf("rhel6-pv: the network rule gave no HWADDR warning: %q", full.Warnings)
		}
	}
	root, _, _ := guestTree(t, "rhel54-pv")
	g, err := convert.Inspect(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := convert.MakePlan(g, root, &trees[1].dom, convert.Options{Disable: []string{"nosuchrule"}}); !errors.Is(err, convert.ErrUnknownRule) || !strings.Contains(err.Error(), "network") {
		t.Errorf("unknown rule: err = %v, want ErrUnknownRule listing every rule", err)
	}
}

// TestRebuiltInitrd unpacks the rebuilt nash initrds with GNU cpio.
func TestRebuiltInitrd(t *testing.T) {
	testutil.NeedTool(t, "cpio")
	for _, tc := range []struct {
		tree, initrd, root, resume string
	}{
		{"rhel54-pv", "initrd-2.6.18-164.el5.img", "/dev/vda2", "/dev/vda3"},
		{"rhel54-lvm", "initrd-2.6.18-164.el5.img", "/dev/VolGroup00/LogVol00", "/dev/VolGroup00/LogVol01"},
		{"rhel48-pv", "initrd-2.6.9-89.EL.img", "/dev/root", ""},
		{"rhel5-hvm-pvhvm", "initrd-2.6.18-128.el5.img", "/dev/vda2", "/dev/vda3"},
	} {
		t.Run(tc.tree, func(t *testing.T) {
			root, rootDir, bootDir := guestTree(t, tc.tree)
			p := makePlan(t, root, tc.tree, convert.Options{})
			if err := p.Apply(root); err != nil {
				t.Fatal(err)
			}
			orig, err := os.ReadFile(filepath.Join(bootDir, tc.initrd+".pre-xen2kvm"))
			if err != nil {
				t.Fatalf("original initrd not kept: %v", err)
			}
			if _, err := initrd.Read(orig); err != nil {
				t.Fatalf("kept original: %v", err)
			}
			x := unpackCpio(t, filepath.Join(bootDir, tc.initrd))

			// Module files present and as in the guest's tree.
			rel := strings.TrimSuffix(strings.TrimPrefix(tc.initrd, "initrd-"), ".img")
			dep, err := os.ReadFile(filepath.Join(rootDir, "lib/modules", rel, "modules.dep"))
			if err != nil {
				t.Fatal(err)
			}
			md, err := initrd.ParseModulesDep(dep)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_net"} {
				p, _ := md.Path(name)
				want, err := os.ReadFile(filepath.Join(rootDir, "lib/modules", rel, p))
				if err != nil {
					t.Fatal(err)
				}
				got, err := os.ReadFile(filepath.Join(x, "lib", filepath.Base(p)))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("initrd lib/%s = %q, %v; want the guest's module", filepath.Base(p), got, err)
				}
			}
			// insmod order consistent with modules.dep.
			script, err := os.ReadFile(filepath.Join(x, "init"))
			if err != nil {
				t.Fatal(err)
			}
			loaded := map[string]int{}
			var stabilized, mkrootdev int
			for i, l := range strings.Split(string(script), "\n") {
				f := strings.Fields(l)
				if len(f) == 0 {
					continue
				}
				switch f[0] {
				case "insmod":
					loaded[initrd.ModuleName(f[1])] = i
					if strings.Contains(f[1], "xen") {
						t.Errorf("line %d still loads a Xen driver: %s", i+1, l)
					}
				case "stabilized":
					stabilized = i
				case "mkrootdev":
					mkrootdev = i
					if f[len(f)-1] != tc.root {
						t.Errorf("mkrootdev %s, want %s", f[len(f)-1], tc.root)
					}
				case "resume":
					if f[1] != tc.resume {
						t.Errorf("resume %s, want %s", f[1], tc.resume)
					}
				}
			}
			for name, line := range loaded {
				p, ok := md.Path(name)
				if !ok {
					continue // an initrd module the guest tree does not list (ata_piix)
				}
				for _, d := range md.Deps(p) {
					dl, ok := loaded[initrd.ModuleName(d)]
					if !ok || dl > line {
						t.Errorf("%s loaded on line %d before its dependency %s (%v)", name, line+1, d, ok)
					}
				}
				if line > stabilized || line > mkrootdev {
					t.Errorf("%s loaded after the root device is needed", name)
				}
			}
			if _, ok := loaded["virtio_blk"]; !ok {
				t.Errorf("virtio_blk not loaded:\n%s", script)
			}
			// Device nodes and symlinks of the original survive.
			for name, want := range map[string][3]uint32{"dev/console": {syscall.S_IFCHR, 5, 1}, "dev/null": {syscall.S_IFCHR, 1, 3}, "dev/xvda2": {syscall.S_IFBLK, 202, 2}} {
				var st syscall.Stat_t
				if err := syscall.Lstat(filepath.Join(x, name), &st); err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				if st.Mode&syscall.S_IFMT != want[0] || uint32(st.Rdev>>8) != want[1] || uint32(st.Rdev&0xff) != want[2] {
					t.Errorf("%s: mode %o rdev %#x", name, st.Mode, st.Rdev)
				}
			}
			if target, err := os.Readlink(filepath.Join(x, "sbin")); err != nil || target != "bin" {
				t.Errorf("symlink sbin -> %q, %v", target, err)
			}
		})
	}
}

// makePlan inspects the guest on root and plans its conversion as the
// domain of trees' tree, with opts.
func makePlan(t *testing.T, root guestfs.FS, tree string, opts convert.Options) *convert.Plan {
	t.Helper()
	g, err := convert.Inspect(root)
	if err != nil {
		t.Fatal(err)
	}
	p, err := convert.MakePlan(g, root, &trees[treeIndex(t, tree)].dom, opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func treeIndex(t *testing.T, name string) int {
	for i, tc := range trees {
		if tc.name == name {
			return i
		}
	}
	t.Fatalf("no tree %s", name)
	return -1
}

func unpackCpio(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("unpacking device nodes needs root")
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "--quiet", "-idm", "--no-absolute-filenames")
	cmd.Dir, cmd.Stdin = dir, zr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, stderr.Bytes())
	}
	return dir
}

// FuzzPlanGrub converts the RHEL 5.4 tree with an arbitrary grub.conf:
// planning either fails or gives a plan that applies, after which a new
// plan changes nothing.
func FuzzPlanGrub(f *testing.F) {
	for _, tree := range []string{"rhel54-pv", "rhel48-pv", "xenonly"} {
		ms, _ := filepath.Glob(filepath.Join("testdata", tree, "*", "grub", "grub.conf"))
		ms2, _ := filepath.Glob(filepath.Join("testdata", tree, "*", "boot", "grub", "grub.conf"))
		for _, m := range append(ms, ms2...) {
			b, err := os.ReadFile(m)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	src := filepath.Join("testdata", "rhel54-pv")
	d := &trees[1].dom
	opts := convert.Options{Disable: []string{"initrd"}}
	f.Fuzz(func(t *testing.T, conf []byte) {
		dir := t.TempDir()
		copyTree(t, src, dir)
		if err := os.WriteFile(filepath.Join(dir, "boot/grub/grub.conf"), conf, 0o600); err != nil {
			t.Fatal(err)
		}
		m := guestfs.NewMounts(guestfs.DirFS(filepath.Join(dir, "root")))
		if err := m.Mount("boot", guestfs.DirFS(filepath.Join(dir, "boot"))); err != nil {
			t.Fatal(err)
		}
		g, err := convert.Inspect(m)
		if err != nil {
			return
		}
		p, err := convert.MakePlan(g, m, d, opts)
		if err != nil || len(p.Blockers) > 0 {
			return
		}
		if err := p.Apply(m); err != nil {
			t.Fatalf("Apply: %v\n%s", err, p.Diff())
		}
		g2, err := convert.Inspect(m)
		if err != nil {
			t.Fatalf("inspecting the converted guest: %v", err)
		}
		p2, err := convert.MakePlan(g2, m, d, opts)
		if err != nil {
			t.Fatalf("second plan: %v", err)
		}
		if len(p2.Edits) > 0 {
			t.Fatalf("second plan not empty:\n%s\nfirst:\n%s", p2.Diff(), p.Diff())
		}
	})
}

func TestEditDiff(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    convert.Edit
		want string
	}{
		{"modify", convert.Edit{Path: "etc/fstab", Kind: convert.Modify, Before: []byte("/dev/xvda1 / ext3\n"), After: []byte("/dev/vda1 / ext3\n")},
			"--- a/etc/fstab\n+++ b/etc/fstab\n@@ -1 +1 @@\n-/dev/xvda1 / ext3\n+/dev/vda1 / ext3\n"},
		{"create", convert.Edit{Path: "etc/x.conf", Kind: convert.Create, After: []byte("a\n")},
			"--- /dev/null\n+++ b/etc/x.conf\n@@ -0,0 +1 @@\n+a\n"},
		{"remove empty", convert.Edit{Path: "etc/blkid.tab", Kind: convert.Remove, Before: []byte{}},
			"--- a/etc/blkid.tab\n+++ /dev/null\n"},
		{"no final newline", convert.Edit{Path: "etc/securetty", Kind: convert.Modify, Before: []byte("tty1"), After: []byte("tty1\nttyS0\n")},
			"--- a/etc/securetty\n+++ b/etc/securetty\n@@ -1 +1,2 @@\n-tty1\n\\ No newline at end of file\n+tty1\n+ttyS0\n"},
		{"binary", convert.Edit{Path: "boot/initrd.img", Kind: convert.Modify, Before: []byte{0x1f, 0x8b, 0}, After: []byte{0x1f, 0x8b, 1, 0}, Summary: "  + virtio_blk.ko"},
			"Binary file /boot/initrd.img (modify)\n  + virtio_blk.ko\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.e.Diff(); got != tc.want {
				t.Errorf("Diff:\n%s\nwant:\n%s", got, tc.want)
			}
			p := convert.Plan{Edits: []convert.Edit{tc.e}}
			if got, want := p.Diff(), "# "+tc.e.Rule+": "+tc.e.Why+"\n"+tc.want; got != want {
				t.Errorf("Plan.Diff:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}
