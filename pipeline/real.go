package pipeline

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
	"github.com/xen2kvm/xen2kvm/internal/closer"
	"github.com/xen2kvm/xen2kvm/report"
)

// realParts wires the pipeline to xen2kvm's packages.
func realParts() parts {
	return parts{source: localSource{}, converter: realConverter{}, target: kvmTarget{}, copier: diskCopier{}, checker: realChecker{}}
}

// localSource reads a config file and disk images on this host.
type localSource struct{}

func (localSource) ParseConfig(path string) (*config.Domain, error) { return config.ParseFile(path) }

// Open opens a disk image. A format the config declares is how Xen read
// the disk: file:, phy: and tap:aio: are raw, and their content is not
// interpreted, so a guest that wrote an image header into its own disk
// cannot point xen2kvm at files on this host.
func (localSource) Open(path, format string) (source, error) {
	open := diskimg.Open
	if format != "" {
		open = func(path string) (*diskimg.Image, error) { return diskimg.OpenAs(path, format) }
	}
	img, err := open(path)
	if err != nil {
		return nil, err
	}
	return img, nil
}

// realConverter converts with package convert (see plan.go).
type realConverter struct{}

func (realConverter) Overlay(base diskimg.Device) (diskimg.Device, error) {
	return overlay.New(base), nil
}

// kvmTarget maps the Xen domain onto KVM with package config.
type kvmTarget struct{}

func (kvmTarget) Target(d *config.Domain, c *conversion) (*config.KVMDomain, error) {
	o := config.KVMOptions{Virtio: c.Virtio, OS: c.OSName, MACs: c.macs}
	if w := c.windows; w != nil {
		o.OSVersion, o.RTCUTC = w.Version, w.RealTimeIsUniversal
		if o.OSVersion == "" {
			o.OSVersion = "5.2" // no SOFTWARE hive: the older hardware is the safer guess
		}
	}
	k, err := config.ToKVM(d, o)
	if err != nil {
		return nil, err
	}
	if err := attachVirtioWin(k, c); err != nil {
		return nil, err
	}
	return k, nil
}

func (kvmTarget) XML(k *config.KVMDomain) ([]byte, error) { return k.LibvirtXML() }

func (kvmTarget) Script(k *config.KVMDomain, dir string) ([]byte, error) {
	argv := append([]string{"qemu-system-x86_64"}, config.QEMUArgs(relocate(k, dir), config.QEMUOptions{})...)
	return launchScript(k.Name, argv), nil
}

// diskCopier copies with diskimg.Convert.
type diskCopier struct{}

func (diskCopier) Copy(ctx context.Context, src diskimg.Device, dst, format string, workers int, progress func(done, total int64)) error {
	return diskimg.Convert(ctx, src, dst, format, diskimg.WithWorkers(workers), diskimg.WithProgress(progress))
}

// realChecker validates the output by reading it back and boots it with
// kvmrun (see boot.go).
type realChecker struct{}

func (realChecker) QEMUAvailable() bool {
	_, err := exec.LookPath("qemu-system-x86_64")
	return err == nil
}

// Validate re-opens the written images read-only and checks them.
func (realChecker) Validate(ctx context.Context, k *config.KVMDomain, c *conversion) []report.Check {
	var disks []namedDisk
	var cl closer.All
	defer func() { cl.Close() }()
	for _, d := range k.Disks {
		if d.Device == "cdrom" || d.Path == "" {
			continue
		}
		img, err := diskimg.Open(d.Path)
		if err != nil {
			return []report.Check{{Name: "output image " + d.Target + " opens", Detail: err.Error()}}
		}
		cl = append(cl, img)
		disks = append(disks, namedDisk{name: d.Target, dev: img})
	}
	if c.windows != nil {
		return validateWindows(disks, c)
	}
	if !c.Inspected {
		return []report.Check{{Name: "output images open", OK: true, Detail: fmt.Sprintf("%d disks", len(disks))}}
	}
	v, closeView, err := assembleView(ctx, disks, true)
	if err != nil {
		return []report.Check{{Name: "guest filesystems assemble", Detail: err.Error()}}
	}
	defer closeView()
	var edited []string
	for _, e := range c.Edits {
		edited = append(edited, e.Path)
	}
	// The images are in the staging folder: scratch files go there too,
	// so that a killed run leaves them where the next run removes them.
	scratch := ""
	for _, d := range k.Disks {
		if d.Device != "cdrom" && d.Path != "" {
			scratch = filepath.Dir(d.Path)
			break
		}
	}
	checks := validateView(v, k, c.Virtio, edited, scratch)
	if c.plan != nil {
		if lc, ok := checkLabels(v.root, c.plan); ok {
			checks = append(checks, lc)
		}
	}
	return checks
}
