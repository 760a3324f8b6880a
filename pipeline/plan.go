package pipeline

import (
	"context"
	"errors"
	"fmt"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// Plan assembles the guest's filesystems over its overlaid disks, inspects
// it and plans the conversion with package convert. Applying the plan
// writes into the overlays only.
func (realConverter) Plan(ctx context.Context, d *config.Domain, disks []diskimg.Device, o planOptions) (*conversion, error) {
	var named []namedDisk
	i := 0
	for _, xd := range d.Disks {
		if xd.Device == "cdrom" || xd.Source == "" {
			continue
		}
		if i < len(disks) {
			named = append(named, namedDisk{name: xd.Target, dev: disks[i]})
		}
		i++
	}
	c := &conversion{}
	var g *convert.Guest
	view, closeView, err := assembleView(ctx, named, false)
	switch {
	case err == nil:
		c.close = closeView
		c.Warnings = append(c.Warnings, view.warnings...)
		g, err = convert.Inspect(view.root)
		if err != nil && !(errors.Is(err, convert.ErrNoOS) && d.Type == config.HVM) {
			return c, err
		}
	case d.Type == config.HVM:
		// An HVM guest whose filesystems xen2kvm cannot read (Windows):
		// MakePlan leaves it as it is.
	default:
		return nil, err
	}
	if d.Type == config.HVM && (g == nil || g.OS != "linux") {
		// Windows: its NTFS system volume and registry are read natively.
		wc, warnings, err := windowsPlan(named, d, o)
		if err != nil {
			return c, err
		}
		if wc != nil {
			wc.close = c.close
			return wc, nil
		}
		c.Warnings = append(c.Warnings, warnings...)
		if len(warnings) > 0 && g == nil {
			// An NTFS volume xen2kvm cannot read: most likely Windows
			// all the same, which gets Windows' virtual hardware.
			c.OSName = "windows"
			c.Notes = append(c.Notes, "an NTFS volume was found but could not be read: the guest is taken for Windows (Cirrus VGA, RTC tick catch-up) without reading its registry")
		}
	}
	if o.VirtioWin != "" {
		c.Warnings = append(c.Warnings, "--virtio-win ignored: no Windows system volume found on the guest's disks")
	}
	var p *convert.Plan
	if view != nil {
		p, err = convert.MakePlan(g, view.root, d, convert.Options{Disable: o.Skip, KernelRPM: o.KernelRPM})
	} else {
		p, err = convert.MakePlan(nil, nil, d, convert.Options{Disable: o.Skip, KernelRPM: o.KernelRPM})
	}
	if err != nil {
		return c, err
	}
	c.Virtio = p.Virtio
	c.Warnings = append(c.Warnings, p.Warnings...)
	c.Blockers = append(c.Blockers, p.Blockers...)
	c.Notes = append(c.Notes, p.Notes...)
	for _, m := range p.GuestMACs {
		if c.macs == nil {
			c.macs, c.macFiles = map[int]string{}, map[int]string{}
		}
		c.macs[m.NIC], c.macFiles[m.NIC] = m.MAC, m.File
	}
	if g != nil {
		c.OSName = g.OS
		c.Inspected = g.OS == "linux"
		c.OS = &report.OS{Distro: g.Distro, Version: fmt.Sprintf("%d.%d", g.Major, g.Minor), Arch: g.Arch, Virtio: p.Virtio}
		if g.Product != "" {
			c.OS.Distro = g.Product
			c.OS.Version = ""
		}
		if p.Kernel != nil {
			c.OS.Kernel = p.Kernel.Release
		}
	}
	for _, e := range p.Edits {
		c.Edits = append(c.Edits, report.Edit{Path: e.Path, Rule: e.Rule, Why: e.Why, Diff: e.Diff()})
	}
	if view != nil {
		root := view.root
		c.apply = func() error { return p.Apply(root) }
		c.plan = p
		if c.Inspected {
			c.bootFiles = func(dir string) (*bootFiles, error) {
				db, err := kvmrun.PyGrub(root, dir)
				if err != nil {
					return nil, err
				}
				return &bootFiles{Kernel: db.Kernel, Initrd: db.Initrd, Cmdline: db.Append, Title: db.Title}, nil
			}
		}
	}
	return c, nil
}
