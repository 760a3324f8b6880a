package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/xen2kvm/xen2kvm/assemble"
	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// InspectOptions tune Inspect.
type InspectOptions struct {
	// Stdin is read for the path "-".
	Stdin io.Reader
	// Parse are the options of config.Parse (a forced format).
	Parse []config.Option
	// DiskMap says where the guests' disk images are on this host, as
	// Options.DiskMap.
	DiskMap []PathMap
	// SSH configures the connections for ssh:// paths.
	SSH *xenhost.Options
}

// Inspect reads each config and, where the guest's disks exist here,
// looks inside them, read-only: the filesystems, mounted as the guest's
// fstab does, and the operating system (distribution, kernels, boot
// loader). Every disk's Exists is filled in. A config that cannot be read
// is kept in the results with its error, and the returned error says how
// many failed; a guest whose disks cannot be read gets a warning.
//
// A path may be ssh://[USER@]HOST[:PORT]/NAME, a guest on a Xen host, or
// ssh://[USER@]HOST[:PORT], every guest on it (one result each, with
// Host set: the state xm list gives, where the config came from, the
// disks' sizes).
func Inspect(ctx context.Context, paths []string, opts InspectOptions) ([]report.Inspection, error) {
	p, closeHosts := withHosts(ctx, realParts(), RunOptions{SSH: opts.SSH})
	defer closeHosts()
	return inspect(ctx, p, paths, opts)
}

func inspect(ctx context.Context, p parts, paths []string, opts InspectOptions) ([]report.Inspection, error) {
	var (
		results []report.Inspection
		errs    []error
	)
	for _, path := range paths {
		var (
			d   *config.Domain
			err error
		)
		if hs, ok := p.source.(*hostSource); ok && xenhost.IsURL(path) {
			rs, err := inspectRemote(ctx, hs, path, opts)
			if err != nil {
				errs = append(errs, err)
			}
			if len(rs) == 0 && err != nil {
				rs = []report.Inspection{{File: path, Error: err.Error()}}
			}
			results = append(results, rs...)
			continue
		}
		if path == "-" {
			var data []byte
			data, err = io.ReadAll(io.LimitReader(opts.Stdin, config.MaxConfigSize+1))
			if err == nil {
				d, err = config.Parse(data, "<stdin>", opts.Parse...)
			}
		} else {
			d, err = config.ParseFile(path, opts.Parse...)
		}
		if err != nil {
			errs = append(errs, err)
			results = append(results, report.Inspection{File: path, Error: err.Error()})
			continue
		}
		d.CheckDisks(opts.DiskMap)
		if err := d.CheckName(); err != nil && d.Name != "" {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%v: migrate and batch refuse this guest", err))
		}
		g, err := inspectGuest(ctx, p.source, d, opts.DiskMap)
		if err != nil {
			d.Warnings = append(d.Warnings, fmt.Sprintf("guest inspection: %v", err))
		}
		results = append(results, report.Inspection{Domain: d, Guest: g})
	}
	switch {
	case len(errs) == 1 && len(paths) == 1:
		return results, errs[0]
	case len(errs) > 0:
		return results, fmt.Errorf("%d of %d configs could not be read: %w", len(errs), len(paths), errors.Join(errs...))
	}
	return results, nil
}

// inspectGuest opens the guest's disks read-only, finds its filesystems
// and mounts them as its fstab does, and inspects the operating system.
// A guest none of whose disks exist gives nil: there is nothing to look
// at.
func inspectGuest(ctx context.Context, src sourceReader, d *config.Domain, maps []PathMap) (*report.InspectedGuest, error) {
	var disks []assemble.Disk
	for _, disk := range d.Disks {
		if disk.Device == "cdrom" || disk.Source == "" || (disk.Exists != nil && !*disk.Exists) {
			continue
		}
		img, err := src.Open(config.MapPath(disk.Source, maps), disk.Format)
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
		// Windows: its NTFS system volume and registry, read natively.
		var named []convert.NamedDevice
		for _, disk := range disks {
			named = append(named, convert.NamedDevice{Name: disk.Target, Dev: disk.Dev})
		}
		wv, warnings, err := convert.FindWindows(named)
		if err != nil {
			return nil, err
		}
		if wv != nil {
			r := &report.InspectedGuest{Windows: &report.InspectedWindows{Volume: wv.Name, Windows: wv.Windows, Details: wv.Details()}, Warnings: warnings}
			r.Warnings = append(r.Warnings, wv.Windows.Blockers()...)
			return r, nil
		}
	}
	g, err := assemble.Open(ctx, disks, assemble.ReadOnly())
	if err != nil {
		return nil, err
	}
	defer g.Close()
	r := &report.InspectedGuest{Warnings: g.Warnings}
	for _, f := range g.Filesystems {
		gf := report.InspectedFilesystem{Devices: f.Devices, Type: f.Type, Label: f.Label, UUID: f.UUID, MountPoint: f.MountPoint}
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
