package pipeline

import (
	"context"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/report"
)

// parts are the steps of a migration that other packages carry out, as
// small interfaces. The product uses realParts(); the orchestration tests
// swap in fakes to inject failures cheaply.
type parts struct {
	source    sourceReader
	converter converter
	target    targetBuilder
	copier    copier
	checker   checker
}

// sourceReader reads the Xen side: the guest's config and its disks,
// read-only.
type sourceReader interface {
	ParseConfig(path string) (*config.Domain, error)
	// Open opens a source disk image read-only. format is the image
	// format the Xen config declares for it ("" when it says none).
	Open(path, format string) (source, error)
}

// converter plans the guest's conversion and holds its edits.
type converter interface {
	// Overlay returns a copy-on-write device above a read-only one; the
	// conversion is applied into it.
	Overlay(base diskimg.Device) (diskimg.Device, error)
	// Plan inspects the guest through its (overlaid) disks and plans the
	// conversion; it must not write until conversion.apply is called.
	Plan(ctx context.Context, d *config.Domain, disks []diskimg.Device, o planOptions) (*conversion, error)
}

// targetBuilder makes the KVM side of the guest.
type targetBuilder interface {
	// Target builds the KVM domain.
	Target(d *config.Domain, c *conversion) (*config.KVMDomain, error)
	// XML renders the libvirt domain.
	XML(k *config.KVMDomain) ([]byte, error)
	// Script returns NAME.sh for k, whose image paths are relative to
	// the script's folder dir.
	Script(k *config.KVMDomain, dir string) ([]byte, error)
}

// copier writes a disk image.
type copier interface {
	// Copy writes src into dst in format, reporting progress.
	Copy(ctx context.Context, src diskimg.Device, dst, format string, workers int, progress func(done, total int64)) error
}

// checker proves the written guest.
type checker interface {
	// Validate re-opens the written images read-only and checks them.
	Validate(ctx context.Context, k *config.KVMDomain, c *conversion) []report.Check
	// QEMUAvailable tells whether a boot check can run.
	QEMUAvailable() bool
	// Boot boots k (image paths absolute) and waits for its login prompt.
	Boot(ctx context.Context, k *config.KVMDomain, dir string, opts bootOptions) (*report.Boot, error)
}

// source is an opened source disk image.
type source interface {
	diskimg.Device
	Format() string
	Close() error
}

// conversion is a planned guest conversion.
type conversion struct {
	OS       *report.OS
	OSName   string // "linux", "windows" or "" for KVMOptions.OS
	Virtio   bool
	Edits    []report.Edit
	Warnings []string
	Blockers []string
	Notes    []string
	// Inspected: the guest's Linux filesystems were read, so the output
	// can be validated and booted to a login prompt.
	Inspected bool
	// bootFiles, when set, copies the kernel and initrd of the converted
	// guest's default grub entry into dir (for a guest that booted
	// through pygrub and has no boot loader of its own).
	bootFiles func(dir string) (*bootFiles, error)
	// apply writes the planned edits into the overlays.
	apply func() error
	// close releases what the plan opened.
	close func() error
	// windows is what Windows inspection found, for a Windows guest.
	windows *convert.Windows
	// windowsOpts choose the Windows rules (those left out, viostor).
	windowsOpts convert.WindowsOptions
	// virtioWin, when set, is the virtio-win driver set to stage: its ISO
	// becomes a CD-ROM and a first-boot disk is written (extraImages).
	virtioWin *virtioWinPlan
	// plan is the converter's plan, which validation reads the output
	// back against (SELinux labels of the files it wrote).
	plan *convert.Plan
	// macs are the MAC addresses the guest's ifcfg files give NICs the
	// config gives none, by NIC index, and the file each came from.
	macs, macFiles map[int]string
}

// planOptions tune the conversion plan.
type planOptions struct {
	Skip      []string // rules left out
	KernelRPM string   // a kernel RPM to install into a Xen-only guest
	VirtioWin string   // the virtio-win ISO or folder to stage for a Windows guest
	To        string   // the libvirt URI the guest is delivered to, for the notes
}

type bootOptions struct {
	Accel        string
	Timeout      time.Duration
	LogPath      string // serial log
	AllowDrift   bool
	NetCheckPort int
}

// bootFiles are a kernel and initrd copied out of the guest.
type bootFiles struct {
	Kernel, Initrd string // host paths
	Cmdline        string
	Title          string // the grub entry
}
