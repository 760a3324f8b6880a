package firstboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/xen2kvm/xen2kvm/assemble"
	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
	"github.com/xen2kvm/xen2kvm/internal/scratch"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// Sentinel errors of Check, besides the launcher's *kvmrun.BootError.
var (
	// ErrDrift: the first boot changed files that mean a broken
	// conversion (see Flag), and Options.AllowDrift was not set.
	ErrDrift = errors.New("the first boot changed the guest's configuration")
	// ErrNoNetwork: the login prompt came but the guest's network did
	// not answer.
	ErrNoNetwork = errors.New("the guest's network did not answer")
)

// DefaultMaxReboots is how many reboots of its own a guest may make
// before its login prompt.
const DefaultMaxReboots = 3

// Options configure Check.
type Options struct {
	// Boot are the launcher's options: accelerator, timeout, serial log,
	// QEMU binary, logger. Check adds its own overlay, reboot and
	// network options.
	Boot []kvmrun.Option
	// QEMU are the QEMU runtime options (networking, display); their Net
	// must be "" or "user" for the network proof.
	QEMU config.QEMUOptions
	// AllowDrift turns flagged drift into a warning.
	AllowDrift bool
	// NetCheckPort is the TCP port the guest listens on (22 when 0); a
	// negative port turns the network proof off.
	NetCheckPort int
	// NetCheckTimeout bounds the network proof after the login prompt
	// (kvmrun.DefaultNetCheckTimeout when 0).
	NetCheckTimeout time.Duration
	// MaxReboots bounds the guest's own reboots (DefaultMaxReboots when 0).
	MaxReboots int
	// Dir holds the overlays; a temporary folder when "". The overlays
	// are removed when Check returns unless KeepOverlays.
	Dir          string
	KeepOverlays bool
	// Logger receives the steps; nil discards.
	Logger *slog.Logger
}

// Result is a first-boot check.
type Result struct {
	// Report is the boot check as the migration report shows it.
	Report *report.Boot
	// Boot is the launcher's result; nil when QEMU did not start.
	Boot *kvmrun.BootResult
	// Overlays are the overlay images the guest ran on (kept with
	// KeepOverlays), in disk order.
	Overlays []string
	// Net is the guest's network configuration, read before the boot.
	Net NetConfig
}

// Check boots a converted guest on throw-away qcow2 overlays above its
// images and proves its first boot: the login prompt (following reboots
// of its own up to Options.MaxReboots), the network answering on the
// first NIC (shaped to the guest's own ifcfg), a clean ACPI power-off,
// the problems on its console, and what the boot changed on its disk
// (Diff, read back from the overlays with xen2kvm's own readers, never
// written). The guest's images are only read.
//
// The error is a *kvmrun.BootError when the guest did not reach its
// prompt, wraps ErrDrift, ErrLeftover or ErrNoNetwork when it did but the
// proof failed; Result.Report says what was seen either way.
func Check(ctx context.Context, dom *config.KVMDomain, o Options) (*Result, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := &Result{Report: &report.Boot{Ran: true}}
	rb := res.Report

	// The converted guest as it is before the boot. A guest whose disks
	// xen2kvm cannot read (not Linux, or not an image it knows) still
	// boots, on QEMU's own snapshot, without a drift report.
	var noDrift string
	base, err := openGuest(ctx, dom.Disks, false)
	if err != nil {
		noDrift = err.Error()
		log.Warn("the converted guest's disks cannot be read: booting without a drift report", "guest", dom.Name, "err", err)
	} else {
		defer base.close()
		mac := ""
		if len(dom.NICs) > 0 {
			mac = dom.NICs[0].MAC
		}
		res.Net = ReadNetConfig(base.g.Root, mac)
	}

	odom, snapshot := dom, true
	if base != nil {
		dir := o.Dir
		if dir == "" {
			// A scratch folder: a check killed before removing it leaves it
			// where the next one removes it.
			sd, serr := scratch.New("xen2kvm-firstboot-")
			if serr != nil {
				return res, serr
			}
			dir = sd.Path
			if o.KeepOverlays {
				defer sd.Keep()
			} else {
				defer sd.Remove()
			}
		} else if err := os.MkdirAll(dir, 0o755); err != nil {
			return res, err
		}
		var overlays []string
		odom, overlays, err = makeOverlays(dom, base, dir)
		res.Overlays = overlays
		if !o.KeepOverlays {
			defer func() {
				for _, p := range overlays {
					os.Remove(p)
				}
			}()
		}
		if err != nil {
			return res, err
		}
		snapshot = false
	}

	maxReboots := o.MaxReboots
	if maxReboots <= 0 {
		maxReboots = DefaultMaxReboots
	}
	opts := append([]kvmrun.Option{}, o.Boot...)
	opts = append(opts, kvmrun.WithQEMUOptions(o.QEMU), kvmrun.WithSnapshot(snapshot), kvmrun.WithMaxReboots(maxReboots))
	if o.NetCheckPort >= 0 {
		nc := kvmrun.NetCheck{Port: o.NetCheckPort, Timeout: o.NetCheckTimeout}
		if !res.Net.DHCP {
			nc.GuestIP, nc.Prefix, nc.Gateway = res.Net.IP, res.Net.Prefix, res.Net.Gateway
		}
		opts = append(opts, kvmrun.WithNetCheck(nc))
	}
	br, berr := kvmrun.Boot(ctx, odom, opts...)
	res.Boot = br
	if br != nil {
		rb.Accel = br.Accel.Accel
		rb.Seconds = br.BootTime.Seconds()
		rb.Reboots = br.Reboots
		rb.Shutdown = br.Shutdown
		for _, f := range br.Findings {
			rb.Findings = append(rb.Findings, report.Finding{Kind: f.Kind, Line: f.Line, Seconds: f.Seconds, Text: f.Text})
		}
		if n := br.Network; n != nil {
			rb.Network = &report.NetworkProof{OK: n.OK, Proof: n.Method, Detail: n.Detail, MAC: n.MAC,
				GuestIP: n.GuestIP, Port: n.Port, Config: res.Net.String()}
		}
	}
	if berr != nil {
		rb.Detail = berr.Error()
		var be *kvmrun.BootError
		if errors.As(berr, &be) {
			rb.Detail = fmt.Sprintf("%v\nlast serial lines:\n%s", berr, strings.Join(be.SerialTail, "\n"))
		}
		return res, berr
	}
	if rb.Reboots > 0 {
		log.Info("the guest rebooted on its own during its first boot", "guest", dom.Name, "reboots", rb.Reboots)
	}
	if br.Shutdown != kvmrun.ShutdownPowerdown && br.Shutdown != kvmrun.ShutdownExited {
		rb.Warnings = append(rb.Warnings, fmt.Sprintf("the guest did not power off after the ACPI power button (stopped by %s): its filesystems were not cleanly unmounted; the drift below is read with the journal replayed", br.Shutdown))
	}

	// What the boot changed, read back from the overlays.
	rb.Drift = &report.Drift{Dirs: append(append([]string{}, DiffDirs...), ListDirs...)}
	var files []report.DriftFile
	if noDrift != "" {
		rb.Drift.Error = "not read: " + noDrift
		rb.Warnings = append(rb.Warnings, "no drift report: the guest's disks cannot be read: "+noDrift)
	} else {
		var derr error
		files, derr = diffAfter(ctx, base, odom.Disks)
		rb.Drift.Files = files
		if derr != nil {
			rb.Drift.Error = derr.Error()
			if files == nil {
				return res, derr
			}
		}
	}
	var flagged []string
	for _, f := range files {
		if f.Flag != "" {
			flagged = append(flagged, f.Flag)
		}
	}
	rb.Drift.Flagged = len(flagged)
	log.Info("first-boot drift", "guest", dom.Name, "files", len(files), "flagged", len(flagged))

	var errs []error
	if len(flagged) > 0 {
		if o.AllowDrift {
			rb.Drift.Allowed = true
			for _, f := range flagged {
				rb.Warnings = append(rb.Warnings, "first-boot drift (allowed): "+f)
			}
		} else {
			errs = append(errs, fmt.Errorf("%w: %s (--allow-drift to accept)", ErrDrift, strings.Join(flagged, "; ")))
		}
	}
	var root fs.FS
	if base != nil {
		root = base.g.Root
	}
	booted := ""
	if br.DirectBoot != nil {
		booted = br.DirectBoot.KernelPath
	}
	if left := Leftovers(rb.Findings, booted, root); len(left) > 0 {
		if o.AllowDrift {
			for _, l := range left {
				rb.Warnings = append(rb.Warnings, "conversion left undone (allowed): "+l)
			}
		} else {
			errs = append(errs, fmt.Errorf("%w: %s (--allow-drift to accept)", ErrLeftover, strings.Join(left, "; ")))
		}
	}
	if n := rb.Network; n != nil && !n.OK && !strings.HasPrefix(n.Detail, "not tried") {
		errs = append(errs, fmt.Errorf("%w: %s%s", ErrNoNetwork, n.Detail, consoleSays(rb.Findings, kvmrun.FindingFailed, 4)))
	} else if n != nil && !n.OK {
		rb.Warnings = append(rb.Warnings, "network "+n.Detail)
	}
	if err := errors.Join(errs...); err != nil {
		rb.Detail = err.Error()
		return res, err
	}
	rb.OK = true
	return res, nil
}

// guest is a guest's disks opened read-only and assembled.
type guest struct {
	imgs []*diskimg.Image
	g    *assemble.Guest
}

func (g *guest) close() {
	if g.g != nil {
		g.g.Close()
	}
	for _, img := range g.imgs {
		img.Close()
	}
}

// openGuest opens the domain's disk images read-only and assembles the
// guest on them (an overlay's backing image is followed).
func openGuest(ctx context.Context, disks []config.KVMDisk, overlay bool) (*guest, error) {
	g := &guest{}
	var ad []assemble.Disk
	for _, d := range disks {
		if d.Device != "" && d.Device != "disk" {
			continue
		}
		var img *diskimg.Image
		var err error
		if d.Format != "" && !overlay {
			img, err = diskimg.OpenAs(d.Path, d.Format)
		} else {
			img, err = diskimg.Open(d.Path)
		}
		if err != nil {
			g.close()
			return nil, err
		}
		g.imgs = append(g.imgs, img)
		ad = append(ad, assemble.Disk{Target: d.Target, Dev: img})
	}
	ag, err := assemble.Open(ctx, ad, assemble.ReadOnly())
	if err != nil {
		g.close()
		return nil, err
	}
	g.g = ag
	if ag.Root == nil {
		g.close()
		return nil, errors.New("no root filesystem (no ext2/3/4 filesystem holds etc/fstab)")
	}
	return g, nil
}

// makeOverlays writes an empty qcow2 overlay above each disk image into
// dir and returns the domain booting them.
func makeOverlays(dom *config.KVMDomain, base *guest, dir string) (*config.KVMDomain, []string, error) {
	c := *dom
	c.Disks = append([]config.KVMDisk(nil), dom.Disks...)
	var paths []string
	i := 0
	for k, d := range c.Disks {
		if d.Device != "" && d.Device != "disk" {
			continue
		}
		img := base.imgs[i]
		i++
		abs, err := filepath.Abs(d.Path)
		if err != nil {
			return nil, paths, err
		}
		p := filepath.Join(dir, fmt.Sprintf("%s-%s.firstboot.qcow2", dom.Name, d.Target))
		w, err := qcow2.Create(p, img.Size(), qcow2.WithBacking(abs, img.Format()))
		if err != nil {
			return nil, paths, fmt.Errorf("creating the boot overlay of %s: %w", d.Path, err)
		}
		paths = append(paths, p)
		if err := w.Close(); err != nil {
			return nil, paths, fmt.Errorf("creating the boot overlay of %s: %w", d.Path, err)
		}
		c.Disks[k].Path, c.Disks[k].Format, c.Disks[k].ReadOnly = p, "qcow2", false
	}
	return &c, paths, nil
}

// ReadDrift reads what a boot wrote into overlays: before are the
// guest's disks as converted, after the overlays above them (qcow2 images
// backed by them, as Check makes and Options.KeepOverlays keeps), in the
// same order. Both are opened read-only; an ext3/4 journal left by a guest
// that was not cleanly stopped is replayed in memory.
func ReadDrift(ctx context.Context, before, after []config.KVMDisk) ([]report.DriftFile, error) {
	base, err := openGuest(ctx, before, false)
	if err != nil {
		return nil, fmt.Errorf("reading the converted guest: %w", err)
	}
	defer base.close()
	return diffAfter(ctx, base, after)
}

func diffAfter(ctx context.Context, base *guest, after []config.KVMDisk) ([]report.DriftFile, error) {
	a, err := openGuest(ctx, after, true)
	if err != nil {
		return nil, fmt.Errorf("reading the guest's disk after its first boot: %w", err)
	}
	defer a.close()
	return Diff(base.g.Root, a.g.Root)
}

// consoleSays quotes up to max console findings of kind, as "; the
// console says: line N: "TEXT", ..." ("" when there are none): what the
// guest itself reported about a failure.
func consoleSays(findings []report.Finding, kind string, max int) string {
	var q []string
	for _, f := range findings {
		if f.Kind == kind && len(q) < max {
			q = append(q, fmt.Sprintf("line %d: %q", f.Line, f.Text))
		}
	}
	if len(q) == 0 {
		return ""
	}
	return "; the console says: " + strings.Join(q, ", ")
}
