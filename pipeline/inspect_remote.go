package pipeline

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// inspectRemote inspects ssh://HOST/NAME (one guest) or ssh://HOST (every
// guest on the host): configs from the toolstack, disk sizes, and the
// inside of the guests whose disks can be read.
func inspectRemote(ctx context.Context, hs *hostSource, path string, opts InspectOptions) ([]report.Inspection, error) {
	u, err := xenhost.ParseURL(path)
	if err != nil {
		return nil, err
	}
	h, err := hs.host(u)
	if err != nil {
		return nil, err
	}
	var guests []*xenhost.Guest
	if u.Name != "" {
		g, err := h.Guest(ctx, u.Name)
		if err != nil {
			return nil, err
		}
		guests = []*xenhost.Guest{g}
	} else if guests, err = h.Discover(ctx); err != nil {
		return nil, err
	}
	var out []report.Inspection
	var bad []error
	for _, g := range guests {
		gu := u.Guest(g.Name)
		hg := &report.HostGuest{URL: gu.String(), Running: g.Running(), ConfigFrom: g.ConfigFrom}
		if g.State != nil {
			hg.State = g.State.State
		}
		if g.Domain == nil {
			out = append(out, report.Inspection{File: gu.String(), Error: g.ConfigErr.Error(), Host: hg})
			bad = append(bad, g.ConfigErr)
			continue
		}
		d := g.Domain
		d.Warnings = append(d.Warnings, g.Warnings...)
		d.Warnings = append(d.Warnings, h.Warnings()...)
		gs := &guestSource{hostSource: hs, u: gu}
		for i := range d.Disks {
			disk := &d.Disks[i]
			if disk.Device == "cdrom" || disk.Source == "" {
				continue
			}
			hd := report.HostDisk{Target: disk.Target, Path: config.MapPath(disk.Source, opts.DiskMap)}
			exists := false
			if dd, err := h.OpenDisk(ctx, hd.Path); err != nil {
				hd.Error = err.Error()
			} else {
				hd.Size, exists = dd.Size(), true
				dd.Close()
			}
			disk.Exists = &exists
			hg.Disks = append(hg.Disks, hd)
		}
		var ig *report.InspectedGuest
		if g.Running() {
			d.Warnings = append(d.Warnings, fmt.Sprintf("the guest is running on %s: its filesystems were not looked at (they change under the reader)", u.Host))
		} else {
			ig, err = inspectGuest(ctx, gs, d, opts.DiskMap)
			if err != nil {
				d.Warnings = append(d.Warnings, fmt.Sprintf("guest inspection: %v", err))
			}
		}
		out = append(out, report.Inspection{Domain: d, Guest: ig, Host: hg})
	}
	if len(bad) > 0 {
		return out, fmt.Errorf("%d of %d guests on %s: the config could not be read: %w", len(bad), len(guests), u.Addr(), errors.Join(bad...))
	}
	return out, nil
}

// HostManifest renders a batch manifest (see Manifest) that migrates the
// guests of the Xen host hostURL into output (relative to the manifest's
// folder). Running guests are listed with a comment saying so.
func HostManifest(hostURL string, results []report.Inspection, output string) ([]byte, error) {
	u, err := xenhost.ParseURL(hostURL)
	if err != nil {
		return nil, err
	}
	if output == "" {
		output = "kvm"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# Guests of %s, as xen2kvm inspect found them.\n", u.HostURL())
	fmt.Fprintf(&b, "# Run: xen2kvm batch THIS-FILE (guests that are running are refused\n# until they are shut down).\n")
	fmt.Fprintf(&b, "defaults:\n  output: %s\n  format: qcow2\n  boot_check: true\n  source_host: %s\n", strconv.Quote(output), strconv.Quote(u.HostURL()))
	b.WriteString("guests:\n")
	n := 0
	for _, r := range results {
		if r.Host == nil || r.Domain == nil {
			continue
		}
		gu, err := xenhost.ParseURL(r.Host.URL)
		if err != nil || gu.Name == "" {
			continue
		}
		fmt.Fprintf(&b, "  - config: %s", strconv.Quote(gu.Name))
		if r.Host.Running {
			b.WriteString("  # running on the host: shut it down first")
		}
		b.WriteString("\n")
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("%s has no guest whose config could be read: no manifest written", u.HostURL())
	}
	return []byte(b.String()), nil
}
