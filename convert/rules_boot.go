// Boot loader rules: grub.conf and the files that name grub's disk.

package convert

import (
	"fmt"
	"path"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/grub"
)

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
