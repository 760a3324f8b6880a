// Kernel package rules: the kernel package that updates follow, and a
// kernel RPM installed into a guest that has only Xen kernels.

package convert

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/sassoftware/go-rpmutils"

	"github.com/xen2kvm/xen2kvm/initrd"
)

// ErrNotKernelRPM is returned by MakePlan when Options.KernelRPM is not a
// package of a kernel that runs on KVM.
var ErrNotKernelRPM = errors.New("not a non-Xen kernel RPM")

// RuleKernelRPM names the edits that install Options.KernelRPM.
const RuleKernelRPM = "kernel-rpm"

var vmlinuzRe = regexp.MustCompile(`^boot/vmlinuz-(.+)$`)

// installKernelRPM plans the files of a kernel RPM's payload as new guest
// files (what rpm -i would unpack; its scriptlets are not run, the
// modules.dep they would make is written) and returns the kernel.
func (c *planner) installKernelRPM(file string) (*Kernel, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("kernel RPM: %w", err)
	}
	defer f.Close()
	rpm, err := rpmutils.ReadRpm(f)
	if err != nil {
		return nil, fmt.Errorf("kernel RPM %s: %w", file, err)
	}
	name, err := rpm.Header.GetString(rpmutils.NAME)
	if err != nil {
		return nil, fmt.Errorf("kernel RPM %s: %w", file, err)
	}
	if !strings.HasPrefix(name, "kernel") || strings.Contains(name, "xen") || strings.Contains(name, "devel") || strings.Contains(name, "headers") {
		return nil, fmt.Errorf("%s: package %s: %w", file, name, ErrNotKernelRPM)
	}
	pr, err := rpm.PayloadReader()
	if err != nil {
		return nil, fmt.Errorf("kernel RPM %s: payload: %w", file, err)
	}
	why := "installed from " + path.Base(file) + " (" + name + ")"
	k := &Kernel{Package: name, Entry: -1, InitrdFlavour: initrd.Nash}
	files := map[string][]byte{}
	skipped := 0
	for {
		h, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("kernel RPM %s: payload: %w", file, err)
		}
		p := strings.TrimPrefix(path.Clean("/"+h.Filename()), "/")
		if h.Filename() == "TRAILER!!!" {
			break
		}
		if h.Mode()&0o170000 != 0o100000 || p == "" || !fs.ValidPath(p) {
			skipped++
			continue
		}
		data, err := io.ReadAll(pr)
		if err != nil {
			return nil, fmt.Errorf("kernel RPM %s: %s: %w", file, p, err)
		}
		files[p] = data
		if m := vmlinuzRe.FindStringSubmatch(p); m != nil {
			k.Release, k.Vmlinuz = m[1], p
		}
		if err := c.write(p, data, fs.FileMode(h.Mode()).Perm(), why); err != nil {
			return nil, err
		}
	}
	if k.Release == "" {
		return nil, fmt.Errorf("%s: no /boot/vmlinuz-* in the payload: %w", file, ErrNotKernelRPM)
	}
	if skipped > 0 {
		c.plan.Notes = append(c.plan.Notes, fmt.Sprintf("%s: %d directories and symlinks of the payload not planned as edits (directories are made as files need them)", path.Base(file), skipped))
	}
	if cfg, ok := files["boot/config-"+k.Release]; ok {
		k.Config = "boot/config-" + k.Release
		if configSet(cfg, "CONFIG_X86_XEN") || configSet(cfg, "CONFIG_X86_64_XEN") {
			return nil, fmt.Errorf("%s: kernel %s is a Xen kernel: %w", file, k.Release, ErrNotKernelRPM)
		}
		k.VirtioBlk = configBuiltin(cfg, "CONFIG_VIRTIO_BLK")
		k.VirtioNet = configBuiltin(cfg, "CONFIG_VIRTIO_NET")
	}
	k.Modules = "lib/modules/" + k.Release
	depPath := k.Modules + "/modules.dep"
	depData, ok := files[depPath]
	if !ok {
		// rpm's %post runs depmod; write what it would, in the old
		// format (absolute paths) that RHEL 4 and 5 use.
		depData = modulesDep(files, k.Modules)
		if err := c.write(depPath, depData, 0o644, why+"; modules.dep as depmod would write it"); err != nil {
			return nil, err
		}
	}
	dep, err := initrd.ParseModulesDep(depData)
	if err != nil {
		return nil, fmt.Errorf("kernel RPM %s: %w", file, err)
	}
	for _, n := range []struct {
		name string
		flag *bool
	}{{"virtio_blk", &k.VirtioBlk}, {"virtio_net", &k.VirtioNet}} {
		if p, ok := dep.Path(n.name); ok {
			_, has := files[k.Modules+"/"+p]
			*n.flag = *n.flag || has
		}
	}
	k.Initrd = "boot/initrd-" + k.Release + ".img"
	if c.g.Major >= 6 {
		k.Initrd = "boot/initramfs-" + k.Release + ".img"
	}
	if err := c.registerKernelRPM(file, name); err != nil {
		return nil, err
	}
	return k, nil
}

// modulesDep writes an old-style modules.dep for the modules in files
// under dir, from each module's .modinfo depends=.
func modulesDep(files map[string][]byte, dir string) []byte {
	byName := map[string]string{}
	var paths []string
	for p := range files {
		if rel, ok := strings.CutPrefix(p, dir+"/"); ok && strings.HasSuffix(p, ".ko") {
			byName[initrd.ModuleName(rel)] = rel
			paths = append(paths, rel)
		}
	}
	sort.Strings(paths)
	var b strings.Builder
	for _, rel := range paths {
		fmt.Fprintf(&b, "/%s/%s:", dir, rel)
		// All dependencies, transitively, as depmod lists them.
		var deps []string
		seen := map[string]bool{}
		var visit func(rel string)
		visit = func(rel string) {
			for _, ds := range initrd.ModInfo(files[dir+"/"+rel], "depends") {
				for _, d := range strings.Split(ds, ",") {
					dp, ok := byName[initrd.ModuleName(d)]
					if !ok || seen[dp] {
						continue
					}
					seen[dp] = true
					deps = append(deps, dp)
					visit(dp)
				}
			}
		}
		visit(rel)
		for _, d := range deps {
			fmt.Fprintf(&b, " /%s/%s", dir, d)
		}
		b.WriteString("\n")
	}
	return []byte(b.String())
}

// templateInitrd returns the initrd a new kernel's initrd is made from:
// the one the guest boots now (its default entry's), with each module
// replaced by the new kernel's module of the same name.
func (c *planner) templateInitrd(k *Kernel, dep *initrd.ModulesDep) ([]byte, error) {
	var tmpl *Kernel
	for i := range c.g.Kernels {
		gk := &c.g.Kernels[i]
		if gk.Initrd == "" || gk.InitrdFlavour != initrd.Nash || gk.Release == k.Release {
			continue
		}
		if tmpl == nil || (c.g.Grub != nil && gk.Entry == c.g.Grub.Config.Default) {
			tmpl = gk
		}
	}
	if tmpl == nil {
		return nil, fmt.Errorf("no nash initrd in /boot to make kernel %s's initrd from", k.Release)
	}
	data, _, err := c.read(tmpl.Initrd)
	if err != nil {
		return nil, err
	}
	img, err := initrd.Read(data)
	if err != nil {
		return nil, fmt.Errorf("/%s: %w", tmpl.Initrd, err)
	}
	for _, m := range img.Names() {
		if !strings.HasPrefix(m, "lib/") || !strings.HasSuffix(m, ".ko") {
			continue
		}
		name := initrd.ModuleName(m)
		p, ok := dep.Path(name)
		if !ok {
			if !slices.Contains(xenPVModules, name) {
				c.warn("initrd module %s of kernel %s has no counterpart in kernel %s", path.Base(m), tmpl.Release, k.Release)
			}
			continue
		}
		ko, _, err := c.read(k.Modules + "/" + p)
		if err != nil {
			return nil, err
		}
		if err := img.WriteFile(m, ko, 0o644); err != nil {
			return nil, err
		}
	}
	return img.Bytes()
}

func (c *planner) sysconfigKernel() error {
	const f = "etc/sysconfig/kernel"
	data, ok, err := c.read(f)
	if err != nil || !ok {
		return err
	}
	lines, final := splitLines(data)
	for i, l := range lines {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "DEFAULTKERNEL="); ok && strings.Trim(v, `"'`) != c.k.Package {
			lines[i] = "DEFAULTKERNEL=" + c.k.Package
		}
	}
	return c.write(f, joinLines(lines, final), 0o644, "kernel updates should follow "+c.k.Package+", the kernel that boots on KVM")
}

// rpmdbScript is the one-shot init script that registers an installed
// kernel RPM in the guest's RPM database at the first boot. %s are the
// package file and the script's name. rpm is called by its path, where
// RHEL 4 to 6 have it: an init script's PATH is not the user's, and a
// shell with an rpm of its own (busybox) would run that.
const rpmdbScript = `#!/bin/sh
#
# %[2]s  Written by xen2kvm: registers the kernel package xen2kvm
#        installed (its files are in place) in the RPM database, once.
#
# chkconfig: 2345 99 01
# description: xen2kvm's one-shot RPM database registration

LOG=/var/log/%[2]s.log
PKG=%[1]s
case "$1" in
start)
	if /bin/rpm -i --justdb --nodeps --noscripts --replacefiles "$PKG" >>"$LOG" 2>&1 ||
		/bin/rpm -q --quiet "$(/bin/rpm -qp --qf '%%{NAME}-%%{VERSION}-%%{RELEASE}' "$PKG" 2>/dev/null)"; then
		echo "registered $PKG in the RPM database" >>"$LOG"
		rm -f "$PKG" /etc/rc.d/rc[0-6].d/[SK][0-9][0-9]%[2]s /etc/rc.d/init.d/%[2]s
		rmdir /var/lib/xen2kvm 2>/dev/null
	else
		echo "rpm --justdb failed; trying again at the next boot" >>"$LOG"
	fi
	;;
esac
exit 0
`

// rpmdbName is the init script's name.
const rpmdbName = "xen2kvm-rpmdb"

// registerKernelRPM plans what makes the guest's RPM database know the
// kernel package installKernelRPM unpacked: the package is left in the
// guest and a one-shot init script registers it (rpm -i --justdb) at the
// first boot, then removes the package, its start links and itself. rpm
// is the guest's own and runs in the guest, as nothing of the guest runs
// here.
func (c *planner) registerKernelRPM(file, name string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("kernel RPM: %w", err)
	}
	pkg := "var/lib/xen2kvm/" + path.Base(file)
	why := "the guest's RPM database learns of " + name + " at the first boot (rpm -i --justdb --nodeps by the one-shot " + rpmdbName + " script)"
	if err := c.write(pkg, data, 0o644, why); err != nil {
		return err
	}
	script := "etc/rc.d/init.d/" + rpmdbName
	if err := c.write(script, []byte(fmt.Sprintf(rpmdbScript, "/"+pkg, rpmdbName)), 0o755, why); err != nil {
		return err
	}
	for _, lvl := range []string{"2", "3", "4", "5"} {
		if fi, err := c.root.Stat("etc/rc.d/rc" + lvl + ".d"); err != nil || !fi.IsDir() {
			continue
		}
		link := "etc/rc.d/rc" + lvl + ".d/S99" + rpmdbName
		if _, seen := c.files[link]; seen {
			continue
		}
		c.record(link, Create, nil, nil, 0o777, why)
		c.files[link].Link = "../init.d/" + rpmdbName
	}
	c.plan.Notes = append(c.plan.Notes, fmt.Sprintf("%s is installed from %s without the guest's rpm: the one-shot init script /%s registers it in the RPM database at the first boot (rpm -i --justdb --nodeps /%s) and removes itself; until then rpm -q %s and yum do not know it",
		name, path.Base(file), script, pkg, name))
	return nil
}
