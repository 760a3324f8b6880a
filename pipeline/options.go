package pipeline

import (
	"context"
	"log/slog"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// BootMode says whether Migrate boots the result.
type BootMode int

const (
	// BootAuto boots the result when qemu-system-x86_64 is installed and
	// notes in the report why it did not otherwise.
	BootAuto BootMode = iota
	// BootAlways boots the result; a missing QEMU is an error.
	BootAlways
	// BootNever skips the boot check.
	BootNever
)

// RunOptions are the options Migrate and RunBatch share.
type RunOptions struct {
	// DryRun plans everything, applies the plan to an overlay that is then
	// thrown away, and writes nothing (a batch: no images, no state file,
	// no logs).
	DryRun bool
	// Accel is the boot check's accelerator: "kvm", "tcg" or "auto" ("").
	Accel string
	// BootTimeout bounds the boot check; 0 means 5 minutes.
	BootTimeout time.Duration
	// AllowDrift makes flagged first-boot drift (the guest rewrote its
	// network config, fstab, grub.conf, ...) a warning instead of a
	// failed boot check (a batch guest's allow_drift also allows it).
	AllowDrift bool
	// NetCheckPort is the TCP port the boot check's network proof
	// connects to (22 when 0); negative turns the network proof off.
	NetCheckPort int
	// Workers is the number of copy workers: per disk for Migrate, for
	// all guests together for RunBatch; 0 means 4.
	Workers int
	// SkipRules leaves conversion rules out by name (convert.Rules lists
	// them; for tests and for finding which rule a guest trips on).
	SkipRules []string
	// Progress, when set, is called as the disks are copied.
	Progress func(Progress)
	// SSH configures the connections to Xen hosts for ssh:// sources
	// (keys, known_hosts, retries); nil means xenhost's defaults.
	SSH *xenhost.Options
	// ForceRunning migrates a guest its Xen host reports as running: the
	// copy is only crash-consistent, and the report warns so.
	ForceRunning bool
	// HostZeroMap, for ssh:// sources' raw disks (file images and phy:
	// devices) in cold migrations: before the copy, run the read-only
	// helper of warm migrations on the host to find the disk's all-zero
	// blocks (HostZeroMapMethod: python, or dd and md5sum; "" for either),
	// and never read those over SSH. When the helper cannot run, every
	// block is read, with a warning.
	HostZeroMap       bool
	HostZeroMapMethod xenhost.HashMethod
	// Logger receives what Migrate does, step by step, or RunBatch's own
	// events (guest started, done, skipped; each guest logs to its own
	// file); nil discards.
	Logger *slog.Logger
}

// Options configure one migration.
type Options struct {
	RunOptions
	// OutDir receives NAME.xml, NAME.sh, NAME-TARGET.FORMAT images and
	// NAME.report.json. Not needed for a dry run.
	OutDir string
	// Format of the output images: "qcow2" (default) or "raw".
	Format string
	// DiskMap rewrites disk source paths that start with Old (whole path
	// components) to start with New.
	DiskMap []PathMap
	// Force replaces a guest of the same name already in OutDir.
	Force bool

	// To, when set, is a libvirt URI (qemu:///system,
	// qemu+ssh://root@kvm01/system) the guest is delivered to: its disks
	// are streamed into volumes of Pool and the domain is defined there.
	// OutDir then receives only NAME.xml, NAME.report.json and the boot log.
	To string
	// Pool is the storage pool on To; "" means "default".
	Pool string
	// Start starts the domain on To once it is defined.
	Start bool
	// Replace replaces a domain and volumes of the guest's name on To
	// (--force). What an interrupted earlier run left there is replaced
	// without it: the run's state volume names it.
	Replace bool
	// Placement, when set, is recorded in the report as why To was picked.
	Placement string

	Boot BootMode

	// Warm, for an ssh:// source, copies its disks while it runs and
	// moves what changed after it stopped (nil: a cold migration).
	Warm *WarmOptions

	// Limit, when set, bounds the copy workers of every migration that
	// shares it (a batch shares one between its guests).
	Limit *Limiter
	// uploads, when set, bounds how many migrations that share it upload
	// to one libvirt host at once (a batch's UploadsPerHost).
	uploads *hostSlots
	// KernelRPM is a kernel RPM (kernel, kernel-PAE) to install into a
	// guest that has only Xen kernels, so it can boot on KVM.
	KernelRPM string
	// VirtioWin is the virtio-win ISO or folder to stage for a Windows
	// guest (--virtio-win): the ISO is attached as a CD-ROM and a small
	// FAT disk with a first-boot script that installs viostor and netkvm
	// is added, the script registered in the guest's RunOnce key.
	VirtioWin string
	// CopyRate is the throughput in bytes per second that dry-run copy
	// time estimates assume; 0 means 200 MiB/s.
	CopyRate float64
}

// PathMap is one --disk-map prefix rewrite (config.PathMap).
type PathMap = config.PathMap

// Progress reports how far the copy of one disk is.
type Progress struct {
	Guest  string // guest name
	Disk   string // the disk's KVM target, e.g. vda
	Done   int64  // bytes copied so far
	Total  int64  // bytes to copy (the disk's allocated data)
	Finish bool   // the disk's copy is complete
	// Network is the bytes read from the Xen host for the disk so far
	// (ssh:// sources; 0 for local disks): with a hole-aware copy it
	// differs from Done.
	Network int64
}

const defaultCopyRate = 200 << 20

// Limiter is a global bound on copy workers shared by concurrent
// migrations: each read of a source disk during a copy holds one slot.
type Limiter struct{ slots chan struct{} }

// NewLimiter returns a Limiter that lets n copy workers run at once.
func NewLimiter(n int) *Limiter {
	if n < 1 {
		n = 1
	}
	return &Limiter{slots: make(chan struct{}, n)}
}

// Size is the number of workers the Limiter lets run at once.
func (l *Limiter) Size() int { return cap(l.slots) }

func (l *Limiter) acquire() { l.slots <- struct{}{} }
func (l *Limiter) release() { <-l.slots }

// limitedDevice makes every ReadAt of a device hold a Limiter slot.
type limitedDevice struct {
	diskimg.Device
	lim *Limiter
}

func (d *limitedDevice) ReadAt(p []byte, off int64) (int, error) {
	d.lim.acquire()
	defer d.lim.release()
	return d.Device.ReadAt(p, off)
}

// limitedExtents is a limitedDevice whose device lists its extents.
type limitedExtents struct {
	*limitedDevice
	el diskimg.ExtentLister
}

func (d *limitedExtents) Extents(ctx context.Context) ([]diskimg.Extent, error) {
	return d.el.Extents(ctx)
}

func limit(dev diskimg.Device, lim *Limiter) diskimg.Device {
	if lim == nil {
		return dev
	}
	ld := &limitedDevice{Device: dev, lim: lim}
	if el, ok := dev.(diskimg.ExtentLister); ok {
		return &limitedExtents{ld, el}
	}
	return ld
}
