// Module and initrd rules: the Xen drivers give way to virtio (or the
// emulated devices) in the module configuration and the initrd.

package convert

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/initrd"
)

// Module names of the Xen paravirtual drivers, as ModuleName spells them.
var (
	xenNetModules = []string{"xennet", "xen_netfront", "netfront", "xen_vnif"}
	xenBlkModules = []string{"xenblk", "xen_blkfront", "blkfront", "xen_vbd"}
	xenPVModules  = []string{"xen_platform_pci", "xen_balloon", "xen_vbd", "xen_vnif", "xenblk", "xennet", "xen_blkfront", "xen_netfront"}
)

func modName(m string) string { return strings.ReplaceAll(m, "-", "_") }

// modprobeFiles lists the module configuration files of the guest.
func (c *planner) modprobeFiles() ([]string, error) {
	files := []string{"etc/modprobe.conf", "etc/modules.conf"}
	es, err := c.root.ReadDir("etc/modprobe.d")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("listing /etc/modprobe.d: %w", err)
	}
	for _, e := range es {
		if e.Type().IsRegular() {
			files = append(files, "etc/modprobe.d/"+e.Name())
		}
	}
	return files, nil
}

var hostAdapterRe = regexp.MustCompile(`^scsi_hostadapter(\d*)$`)

func (c *planner) modprobe() error {
	files, err := c.modprobeFiles()
	if err != nil {
		return err
	}
	haveBlk := false // a scsi_hostadapter alias for virtio_blk is in place
	maxAdapter := -1 // highest scsi_hostadapterN seen
	mainFile := ""   // where a missing alias goes
	for _, f := range files {
		data, ok, err := c.read(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if mainFile == "" {
			mainFile = f
		}
		lines, final := splitLines(data)
		parsed := parseModprobe(data)
		var out []string
		var whys []string
		for i, l := range lines {
			d := modprobeLine{}
			if i < len(parsed) {
				d = parsed[i]
			}
			if d.Cmd == "alias" && len(d.Args) >= 2 {
				name, mod := d.Args[0], modName(d.Args[1])
				if strings.HasPrefix(name, "eth") && slices.Contains(xenNetModules, mod) {
					netModule := c.netDriver(name)
					out = append(out, strings.Replace(l, d.Args[1], netModule, 1))
					whys = append(whys, name+" uses "+netModule)
					continue
				}
				if m := hostAdapterRe.FindStringSubmatch(name); m != nil {
					n := 0
					if m[1] != "" {
						n, _ = strconv.Atoi(m[1])
					}
					maxAdapter = max(maxAdapter, n)
					if slices.Contains(xenBlkModules, mod) {
						if c.plan.Virtio && !haveBlk {
							out = append(out, strings.Replace(l, d.Args[1], "virtio_blk", 1))
							haveBlk = true
							whys = append(whys, name+" is virtio_blk, so mkinitrd puts it in new initrds")
						} else {
							whys = append(whys, "the Xen block driver alias "+name+" is removed")
						}
						continue
					}
					if mod == "virtio_blk" {
						haveBlk = true
					}
				}
			}
			out = append(out, l)
		}
		if len(whys) > 0 {
			if err := c.write(f, joinLines(out, final), 0o644, strings.Join(whys, "; ")); err != nil {
				return err
			}
		}
	}
	// mkinitrd (RHEL 4/5) builds new kernels' initrds from the
	// scsi_hostadapter aliases.
	if c.plan.Virtio && !haveBlk && c.g.Major <= 5 {
		f := "etc/modprobe.conf"
		if mainFile != "" {
			f = mainFile
		}
		data, _, err := c.read(f)
		if err != nil {
			return err
		}
		name := "scsi_hostadapter"
		if maxAdapter >= 0 {
			name += strconv.Itoa(maxAdapter + 1)
		}
		s := string(data)
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		s += "alias " + name + " virtio_blk\n"
		if err := c.write(f, []byte(s), 0o644, name+" is virtio_blk, so mkinitrd puts it in new initrds"); err != nil {
			return err
		}
	}
	// Warn about what still names a Xen driver.
	for _, f := range files {
		data, ok, err := c.read(f)
		if err != nil || !ok {
			continue
		}
		for i, d := range parseModprobe(data) {
			if d.Cmd == "" || strings.HasPrefix(strings.TrimSpace(strings.Split(string(data), "\n")[i]), "#") {
				continue
			}
			for _, a := range d.Args {
				if slices.Contains(xenPVModules, modName(a)) || strings.HasPrefix(modName(a), "xen") {
					c.warn("/%s line %d still names Xen driver %s: %s %s", f, i+1, a, d.Cmd, strings.Join(d.Args, " "))
					break
				}
			}
		}
	}
	return nil
}

func (c *planner) initrd() error {
	k := c.k
	if k.Initrd == "" {
		c.plan.Blockers = append(c.plan.Blockers, fmt.Sprintf("kernel %s has no initrd to rebuild (looked for /boot/initrd-%s.img and /boot/initramfs-%s.img)", k.Release, k.Release, k.Release))
		return nil
	}
	orig, exists, err := c.read(k.Initrd)
	if err != nil {
		return err
	}
	var dep *initrd.ModulesDep
	if k.Modules != "" {
		b, ok, err := c.read(k.Modules + "/modules.dep")
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("/%s/modules.dep: %w", k.Modules, fs.ErrNotExist)
		}
		if dep, err = initrd.ParseModulesDep(b); err != nil {
			return fmt.Errorf("/%s/modules.dep: %w", k.Modules, err)
		}
	}
	made := false
	if !exists {
		if !c.newKernel || dep == nil {
			return fmt.Errorf("/%s vanished", k.Initrd)
		}
		if orig, err = c.templateInitrd(k, dep); err != nil {
			c.plan.Blockers = append(c.plan.Blockers, err.Error())
			return nil
		}
		made = true
	}
	spec := initrd.Spec{Release: k.Release, Drop: xenPVModules, Remap: c.remap.remap, Edit: c.initrdEdit}
	if c.plan.Virtio && dep != nil {
		var want []string
		for _, n := range []string{"virtio", "virtio_ring", "virtio_pci", "virtio_blk", "virtio_net"} {
			if _, ok := dep.Path(n); ok {
				want = append(want, n)
			}
		}
		order, err := dep.LoadOrder(want...)
		if err != nil {
			return fmt.Errorf("/%s/modules.dep: %w", k.Modules, err)
		}
		for _, p := range order {
			b, ok, err := c.read(k.Modules + "/" + p)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("module /%s/%s: %w", k.Modules, p, fs.ErrNotExist)
			}
			spec.Modules = append(spec.Modules, initrd.Module{Path: p, Data: b, Deps: dep.Deps(p)})
		}
	}
	out, res, err := initrd.Rebuild(orig, spec)
	if err != nil {
		return fmt.Errorf("/%s: %w", k.Initrd, err)
	}
	if !res.Changed() && !made {
		return nil
	}
	if made {
		sum := fmt.Sprintf("new %s initrd for %s, made from the guest's current initrd with its modules taken from %s\n", res.Flavour, k.Release, k.Release)
		if err := c.write(k.Initrd, out, 0o600, "the new kernel's initrd loads the virtio drivers and mounts the renamed root"); err != nil {
			return err
		}
		c.files[k.Initrd].Summary = sum + initrdSummary(res)
		return nil
	}
	backup := k.Initrd + ".pre-xen2kvm"
	if _, exists, err := c.read(backup); err != nil {
		return err
	} else if !exists {
		mode := fs.FileMode(0o600)
		if fi, err := c.root.Stat(k.Initrd); err == nil {
			mode = fi.Mode().Perm()
		}
		c.record(backup, Create, nil, orig, mode, "the initrd as it was on Xen, kept")
	}
	sum := fmt.Sprintf("rebuilt %s initrd for %s\n", res.Flavour, k.Release) + initrdSummary(res)
	why := "the initrd loads the virtio drivers and mounts the renamed root"
	if !c.plan.Virtio {
		why = "the initrd no longer loads the Xen drivers and mounts the renamed root"
	}
	if err := c.write(k.Initrd, out, 0o600, why); err != nil {
		return err
	}
	c.files[k.Initrd].Summary = sum
	if len(res.Edited) > 0 && len(c.initrdEditWhy) > 0 {
		c.rule = "lvm-filter"
		c.addRule(c.files[k.Initrd], strings.Join(c.initrdEditWhy, "; "))
		c.rule = "initrd"
	}
	return nil
}

// initrdSummary lists what a rebuild added and removed, and its script
// diff.
func initrdSummary(res *initrd.Result) string {
	var sum strings.Builder
	for _, a := range res.Added {
		fmt.Fprintf(&sum, "  + %s\n", a)
	}
	for _, r := range res.Removed {
		fmt.Fprintf(&sum, "  - %s\n", r)
	}
	for _, e := range res.Edited {
		fmt.Fprintf(&sum, "  ~ %s\n", e)
	}
	for _, x := range res.Indexes {
		fmt.Fprintf(&sum, "  ~ %s (binary module index, rewritten to list the added drivers)\n", x)
	}
	if d := unifiedDiff("a/"+res.Script, "b/"+res.Script, res.ScriptBefore, res.ScriptAfter); !strings.HasSuffix(d, "+++ b/"+res.Script+"\n") {
		sum.WriteString(d)
	}
	return sum.String()
}

const xenpvConf = `# Written by xen2kvm: the Xen PV-on-HVM drivers (kmod-xenpv) have no
# devices to drive on KVM, so they are never loaded.
install xen-platform-pci /bin/true
install xen-balloon /bin/true
install xen-vbd /bin/true
install xen-vnif /bin/true
`

func (c *planner) xenpv() error {
	if !c.g.XenPVHVM {
		return nil
	}
	return c.write("etc/modprobe.d/xen2kvm-xenpv.conf", []byte(xenpvConf), 0o644, "Xen PV-on-HVM drivers disabled on KVM")
}

var xenInsmodRe = regexp.MustCompile(`\b(insmod|modprobe)\b.*\bxen[-_](vbd|vnif|platform[-_]pci|balloon)\b`)

// rcXenModules comments out rc.local and rc.sysinit lines that load the
// Xen PV drivers by hand: on KVM they fail (no Xen platform device), and
// a script that stops on the error stops the boot.
func (c *planner) rcXenModules() error {
	for _, f := range []string{"etc/rc.d/rc.local", "etc/rc.d/rc.sysinit", "etc/rc.local", "etc/rc.sysinit"} {
		if fi, err := c.root.Lstat(f); err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			continue // etc/rc.local is a link to rc.d/rc.local
		}
		data, ok, err := c.read(f)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		lines, final := splitLines(data)
		n := 0
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || !xenInsmodRe.MatchString(l) {
				continue
			}
			lines[i] = "# xen2kvm: Xen PV driver, no device on KVM: " + l
			n++
		}
		if n > 0 {
			if err := c.write(f, joinLines(lines, final), 0o755, fmt.Sprintf("%d line(s) load the Xen PV drivers (xen-vbd, xen-vnif), which find no Xen device on KVM: commented out", n)); err != nil {
				return err
			}
		}
	}
	return nil
}
