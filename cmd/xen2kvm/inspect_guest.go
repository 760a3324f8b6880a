package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/xen2kvm/xen2kvm/assemble"
	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg"
)

func init() { inspectGuest = inspectDisks }

// guestReport is what inspect prints about the inside of a guest whose
// disks exist.
type guestReport struct {
	Filesystems []guestFilesystem `json:"filesystems"`
	OS          *convert.Guest    `json:"os,omitempty"`
	// Windows is what Windows inspection found on an NTFS system volume.
	Windows  *windowsReport `json:"windows,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

type windowsReport struct {
	Volume string `json:"volume"`
	*convert.Windows
	details []string
}

type guestFilesystem struct {
	Devices    []string `json:"devices"`
	Type       string   `json:"type"`
	Label      string   `json:"label,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	MountPoint string   `json:"mount_point,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// inspectDisks opens the guest's disks read-only, finds its filesystems and
// mounts them as its fstab does, and inspects the operating system. Guests
// none of whose disks exist give nil: there is nothing to look at.
func inspectDisks(ctx context.Context, d *config.Domain, maps []config.PathMap) (any, error) {
	var disks []assemble.Disk
	for _, disk := range d.Disks {
		if disk.Device == "cdrom" || disk.Source == "" || (disk.Exists != nil && !*disk.Exists) {
			continue
		}
		path := config.MapPath(disk.Source, maps)
		// Read the disk as Xen did: a declared format (file:, phy: and
		// tap:aio: are raw) is not second-guessed from the content.
		open := diskimg.Open
		if disk.Format != "" {
			open = func(path string) (*diskimg.Image, error) { return diskimg.OpenAs(path, disk.Format) }
		}
		img, err := open(path)
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", disk.Target, err)
		}
		defer img.Close()
		disks = append(disks, assemble.Disk{Target: disk.Target, Dev: img})
	}
	if len(disks) == 0 {
		return nil, nil
	}
	if d.Type == config.HVM {
		var named []convert.NamedDevice
		for _, disk := range disks {
			named = append(named, convert.NamedDevice{Name: disk.Target, Dev: disk.Dev})
		}
		wv, warnings, err := convert.FindWindows(named)
		if err != nil {
			return nil, err
		}
		if wv != nil {
			r := &guestReport{Windows: &windowsReport{Volume: wv.Name, Windows: wv.Windows, details: wv.Details()}, Warnings: warnings}
			r.Warnings = append(r.Warnings, wv.Windows.Blockers()...)
			return r, nil
		}
	}
	g, err := assemble.Open(ctx, disks, assemble.ReadOnly())
	if err != nil {
		return nil, err
	}
	defer g.Close()
	r := &guestReport{Warnings: g.Warnings}
	for _, f := range g.Filesystems {
		gf := guestFilesystem{Devices: f.Devices, Type: f.Type, Label: f.Label, UUID: f.UUID, MountPoint: f.MountPoint}
		if f.Err != nil {
			gf.Error = f.Err.Error()
		}
		r.Filesystems = append(r.Filesystems, gf)
	}
	if len(g.Filesystems) == 0 {
		r.Warnings = append(r.Warnings, "no filesystem found on the guest's disks")
		return r, nil
	}
	if g.Root == nil {
		r.Warnings = append(r.Warnings, "no root filesystem (no etc/fstab on any Linux filesystem)")
		return r, nil
	}
	osInfo, err := convert.Inspect(g.Root)
	switch {
	case errors.Is(err, convert.ErrNoOS):
		r.Warnings = append(r.Warnings, err.Error())
	case err != nil:
		return r, err
	default:
		r.OS = osInfo
	}
	return r, nil
}

// WriteText prints the guest section of inspect's human output.
func (r *guestReport) WriteText(w io.Writer) error {
	var b strings.Builder
	if w := r.Windows; w != nil {
		fmt.Fprintf(&b, "    os:          %s\n", w.Product())
		for _, d := range w.details {
			fmt.Fprintf(&b, "    windows:     %s\n", d)
		}
	}
	if o := r.OS; o != nil {
		fmt.Fprintf(&b, "    os:          %s (%s %d.%d, %s)\n", o.Product, o.Distro, o.Major, o.Minor, o.Arch)
		for _, k := range o.Kernels {
			var tags []string
			if k.Xen {
				tags = append(tags, "xen")
			}
			if k.Virtio() {
				tags = append(tags, "virtio")
			}
			if k.InitrdFlavour != "" {
				tags = append(tags, string(k.InitrdFlavour)+" initrd")
			}
			fmt.Fprintf(&b, "    kernel:      %s (%s) %s\n", k.Release, k.Package, strings.Join(tags, ", "))
		}
		if o.Grub != nil {
			fmt.Fprintf(&b, "    bootloader:  grub legacy, %s\n", o.Grub.Path)
		}
		for _, warn := range o.Warnings {
			fmt.Fprintf(&b, "    warning:     %s\n", warn)
		}
	}
	for _, f := range r.Filesystems {
		line := fmt.Sprintf("    filesystem:  %s %s", strings.Join(f.Devices, " "), f.Type)
		if f.Label != "" {
			line += " label=" + f.Label
		}
		if f.MountPoint != "" {
			line += " on " + f.MountPoint
		}
		if f.Error != "" {
			line += " (" + f.Error + ")"
		}
		b.WriteString(line + "\n")
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "    warning:     %s\n", warn)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
