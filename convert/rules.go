package convert

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/grub"
	"github.com/xen2kvm/xen2kvm/initrd"
)

// devRe matches a device path in a config line.
var devRe = regexp.MustCompile(`/dev/[A-Za-z0-9_./-]*[A-Za-z0-9]`)

// remapLine renames every /dev/ disk in line.
func (c *planner) remapLine(line string) string {
	return devRe.ReplaceAllStringFunc(line, func(dev string) string {
		nd, _ := c.remap.remap(dev)
		return nd
	})
}

// splitLines splits text into lines without terminators; final tells
// whether it ended with a newline.
func splitLines(b []byte) (lines []string, final bool) {
	s := string(b)
	final = strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\n")
	if s == "" && !final {
		return nil, false
	}
	return strings.Split(s, "\n"), final
}

func joinLines(lines []string, final bool) []byte {
	s := strings.Join(lines, "\n")
	if final && len(lines) > 0 {
		s += "\n"
	}
	return []byte(s)
}

// entryRelease returns the release of the Linux kernel a grub entry boots.
func entryRelease(e *grub.Entry) string {
	k, _, _ := e.LinuxKernel()
	return strings.TrimPrefix(path.Base(k), "vmlinuz-")
}

func (c *planner) xenEntry(e *grub.Entry) bool {
	if e.Xen() {
		return true
	}
	rel := entryRelease(e)
	for _, k := range c.g.Kernels {
		if k.Release == rel {
			return k.Xen
		}
	}
	return xenRelease(rel)
}

func (c *planner) grub() error {
	bl := c.g.Grub
	if bl == nil {
		c.warn("no grub.conf or menu.lst found: the boot loader is left as it is")
		return nil
	}
	data, ok, err := c.read(bl.Path)
	if err != nil || !ok {
		return err
	}
	cfg, err := grub.Parse(data)
	if err != nil {
		return fmt.Errorf("/%s: %w", bl.Path, err)
	}
	var whys []string
	idx := -1
	for i := range cfg.Entries {
		if !c.xenEntry(&cfg.Entries[i]) && entryRelease(&cfg.Entries[i]) == c.k.Release {
			idx = i
			break
		}
	}
	if idx < 0 {
		if err := c.addEntry(cfg); err != nil {
			return err
		}
		idx = len(cfg.Entries) - 1
		whys = append(whys, "an entry for kernel "+c.k.Release+" added")
	}

	// Device names, on every line outside the Xen entries (the
	// "#boot=/dev/xvda" comment that grubby reads included).
	inXen := map[int]bool{}
	for i := range cfg.Entries {
		if e := &cfg.Entries[i]; c.xenEntry(e) {
			for n := e.Line; n <= e.End; n++ {
				inXen[n] = true
			}
		}
	}
	remapped := false
	for n := 1; n <= cfg.NumLines(); n++ {
		l := cfg.Line(n)
		if inXen[n] || l == "" {
			continue
		}
		if nl := c.remapLine(l); nl != l {
			if err := cfg.SetLine(n, nl); err != nil {
				return err
			}
			remapped = true
		}
	}
	if remapped {
		whys = append(whys, "disks renamed by disk order ("+c.remap.String()+")")
	}

	// The Xen console becomes the first serial port.
	e := &cfg.Entries[idx]
	_, args, _ := e.LinuxKernel()
	f := strings.Fields(args)
	hasConsole := false
	for i, a := range f {
		if v, ok := strings.CutPrefix(a, "console="); ok {
			hasConsole = true
			name, opts, _ := strings.Cut(v, ",")
			if name == "xvc0" || name == "hvc0" {
				f[i] = "console=ttyS0"
				if opts != "" {
					f[i] += "," + opts
				}
			}
		}
	}
	if !hasConsole && c.d.Type != config.HVM {
		f = append(f, "console=tty0", "console=ttyS0")
	}
	if na := strings.Join(f, " "); na != args {
		if err := cfg.SetKernelArgs(idx, na); err != nil {
			return err
		}
		whys = append(whys, "the Xen console (xvc0, hvc0) is the serial port ttyS0 on KVM")
	}

	if cfg.Default != idx || cfg.DefaultRaw == "saved" || cfg.DefaultLine == 0 {
		if err := cfg.SetDefault(idx); err != nil {
			return err
		}
		whys = append(whys, fmt.Sprintf("default entry %d boots %s, a kernel that runs on KVM (Xen entries stay, not as the default)", idx, c.k.Release))
	}
	if len(whys) == 0 {
		return nil
	}
	return c.write(bl.Path, cfg.Bytes(), 0o600, strings.Join(whys, "; "))
}

// addEntry adds a grub entry for the chosen kernel, modelled on the
// default entry.
func (c *planner) addEntry(cfg *grub.Config) error {
	bl := c.g.Grub
	dir := "/boot/"
	if bl.BootPrefix == "boot" {
		dir = "/"
	}
	root, args, title := "(hd0,0)", "ro", c.g.Product
	if def, err := cfg.DefaultEntry(); err == nil {
		if def.Root != "" {
			root = def.Root
		}
		_, a, _ := def.LinuxKernel()
		var keep []string
		for _, w := range strings.Fields(a) {
			if !strings.HasPrefix(w, "console=") && !strings.HasPrefix(w, "xencons=") {
				keep = append(keep, w)
			}
		}
		args = strings.Join(keep, " ")
		if i := strings.LastIndex(def.Title, " ("); i > 0 {
			title = def.Title[:i]
		}
	}
	lines := []string{fmt.Sprintf("title %s (%s)", title, c.k.Release), "\troot " + root,
		fmt.Sprintf("\tkernel %svmlinuz-%s %s", dir, c.k.Release, args)}
	if c.k.Initrd != "" {
		lines = append(lines, fmt.Sprintf("\tinitrd %s%s", dir, path.Base(c.k.Initrd)))
	}
	return cfg.Append(lines...)
}

func (c *planner) deviceMapRule() error {
	files := []string{"etc/sysconfig/grub"}
	if c.g.Grub != nil && c.g.Grub.DeviceMap != "" {
		files = append([]string{c.g.Grub.DeviceMap}, files...)
	}
	for _, f := range files {
		data, ok, err := c.read(f)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		lines, final := splitLines(data)
		for i, l := range lines {
			if !strings.HasPrefix(strings.TrimSpace(l), "#") {
				lines[i] = c.remapLine(l)
			}
		}
		if err := c.write(f, joinLines(lines, final), 0o644, "grub's disk is renamed by disk order ("+c.remap.String()+")"); err != nil {
			return err
		}
	}
	return nil
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

// remapField renames the device in field n (0-based) of each line of a
// table file such as fstab.
func (c *planner) remapField(file string, field int, what string) error {
	data, ok, err := c.read(file)
	if err != nil || !ok {
		return err
	}
	lines, final := splitLines(data)
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) <= field || strings.HasPrefix(f[0], "#") {
			continue
		}
		nd, ok := c.remap.remap(f[field])
		if !ok {
			continue
		}
		// Replace the field in place, keeping the spacing.
		pos := 0
		for j := 0; j <= field; j++ {
			k := strings.Index(l[pos:], f[j])
			if j == field {
				pos += k
				break
			}
			pos += k + len(f[j])
		}
		rest := l[pos+len(f[field]):]
		// Keep the next column where it was when the name got shorter.
		if pad := len(f[field]) - len(nd); pad > 0 && strings.HasPrefix(rest, " ") {
			rest = strings.Repeat(" ", pad) + rest
		}
		lines[i] = l[:pos] + nd + rest
	}
	return c.write(file, joinLines(lines, final), 0o644, what+" are renamed by disk order ("+c.remap.String()+"); LABEL= and UUID= stay")
}

func (c *planner) fstab() error {
	return c.remapField("etc/fstab", 0, "disk devices")
}

func (c *planner) crypttab() error {
	return c.remapField("etc/crypttab", 1, "encrypted devices")
}

func (c *planner) blkidCache() error {
	for _, f := range []string{"etc/blkid/blkid.tab", "etc/blkid/blkid.tab.old", "etc/blkid.tab", "etc/blkid.tab.old"} {
		if err := c.remove(f, "the blkid cache names the Xen disks; blkid rebuilds it at boot"); err != nil {
			return err
		}
	}
	return c.remove("etc/lvm/cache/.cache", "the LVM device cache names the Xen disks; LVM rescans at boot")
}

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
		c.rule = RuleLVMFilter
		c.addRule(c.files[k.Initrd], strings.Join(c.initrdEditWhy, "; "))
		c.rule = RuleInitrd
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
	if d := unifiedDiff("a/"+res.Script, "b/"+res.Script, res.ScriptBefore, res.ScriptAfter); !strings.HasSuffix(d, "+++ b/"+res.Script+"\n") {
		sum.WriteString(d)
	}
	return sum.String()
}

var gettyRe = regexp.MustCompile(`\b(xvc0|hvc0)\b`)

func (c *planner) console() error {
	const inittab = "etc/inittab"
	data, ok, err := c.read(inittab)
	if err != nil {
		return err
	}
	if ok {
		lines, final := splitLines(data)
		serial := false
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || !strings.Contains(l, "getty") {
				continue
			}
			lines[i] = gettyRe.ReplaceAllString(l, "ttyS0")
			if strings.Contains(lines[i], "ttyS0") {
				serial = true
			}
		}
		if !serial && c.d.Type != config.HVM && c.g.Major <= 5 {
			lines = append(lines, "S0:2345:respawn:/sbin/agetty ttyS0 115200 vt100-nav")
		}
		if err := c.write(inittab, joinLines(lines, final || len(lines) > 0), 0o644, "the login console moves from the Xen console xvc0 to the serial port ttyS0"); err != nil {
			return err
		}
	}
	const securetty = "etc/securetty"
	data, ok, err = c.read(securetty)
	if err != nil || !ok {
		return err
	}
	lines, _ := splitLines(data)
	if slices.Contains(lines, "ttyS0") {
		return nil
	}
	lines = append(lines, "ttyS0")
	return c.write(securetty, joinLines(lines, true), 0o600, "root may log in on the serial console ttyS0, as on xvc0 before")
}

var xorgDriverRe = regexp.MustCompile(`(?m)^(\s*Driver\s+")(xenfb|fbdev)(")`)

func (c *planner) xorg() error {
	for _, f := range []string{"etc/X11/xorg.conf", "etc/X11/XF86Config"} {
		data, ok, err := c.read(f)
		if err != nil {
			return err
		}
		if !ok || !xorgDriverRe.Match(data) {
			continue
		}
		out := xorgDriverRe.ReplaceAll(data, []byte("${1}vesa${3}"))
		if err := c.write(f, out, 0o644, "the Xen framebuffer is gone; vesa drives KVM's emulated VGA"); err != nil {
			return err
		}
	}
	return nil
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

// network warns about interface configs whose HWADDR will not match.
func (c *planner) network() {
	const dir = "etc/sysconfig/network-scripts"
	es, err := c.root.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range es {
		dev, ok := strings.CutPrefix(e.Name(), "ifcfg-eth")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(dev)
		if err != nil {
			continue
		}
		b, err := c.root.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		hw := ""
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "HWADDR="); ok {
				hw = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
		if hw == "" {
			continue
		}
		switch {
		case n >= len(c.d.NICs):
			c.warn("/%s/%s has HWADDR %s but the config has no NIC %d", dir, e.Name(), hw, n)
		case c.d.NICs[n].MAC == "":
			c.warn("/%s/%s has HWADDR %s but the config gives NIC %d no MAC: set it, or the guest will not bring eth%d up", dir, e.Name(), hw, n, n)
		case !strings.EqualFold(c.d.NICs[n].MAC, hw):
			c.warn("/%s/%s has HWADDR %s but NIC %d has MAC %s: the guest will not bring eth%d up", dir, e.Name(), hw, n, c.d.NICs[n].MAC, n)
		}
	}
}
