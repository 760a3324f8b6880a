package pipeline

import (
	"context"
	"fmt"
	"os/exec"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/overlay"
	"github.com/xen2kvm/xen2kvm/report"
)

// realParts wires the pipeline to xen2kvm's packages.
func realParts() parts {
	return parts{
		parseConfig: func(path string) (*config.Domain, error) { return config.ParseFile(path) },
		openSource: func(path, format string) (source, error) {
			// A format the config declares is how Xen read the disk:
			// file:, phy: and tap:aio: are raw, and their content is not
			// interpreted, so a guest that wrote an image header into its
			// own disk cannot point xen2kvm at files on this host.
			open := diskimg.Open
			if format != "" {
				open = func(path string) (*diskimg.Image, error) { return diskimg.OpenAs(path, format) }
			}
			img, err := open(path)
			if err != nil {
				return nil, err
			}
			return img, nil
		},
		overlay: func(base diskimg.Device) (diskimg.Device, error) {
			return overlay.New(base), nil
		},
		plan:   realPlan,
		target: realTarget,
		xml:    func(k *config.KVMDomain) ([]byte, error) { return k.LibvirtXML() },
		copy: func(ctx context.Context, src diskimg.Device, dst, format string, workers int, progress func(done, total int64)) error {
			return diskimg.Convert(ctx, src, dst, format, diskimg.WithWorkers(workers), diskimg.WithProgress(progress))
		},
		script: func(k *config.KVMDomain, dir string) ([]byte, error) {
			argv := append([]string{"qemu-system-x86_64"}, config.QEMUArgs(relocate(k, dir), config.QEMUOptions{})...)
			return launchScript(k.Name, argv), nil
		},
		validate: realValidate,
		qemuAvailable: func() bool {
			_, err := exec.LookPath("qemu-system-x86_64")
			return err == nil
		},
		boot: realBoot,
	}
}

// realTarget maps the Xen domain onto KVM with config.ToKVM.
func realTarget(d *config.Domain, c *conversion) (*config.KVMDomain, error) {
	return config.ToKVM(d, config.KVMOptions{Virtio: c.Virtio, OS: c.OSName})
}

// realValidate re-opens the written images read-only and checks them.
func realValidate(ctx context.Context, k *config.KVMDomain, c *conversion) []report.Check {
	var disks []namedDisk
	var cl closers
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
	if !c.Inspected {
		return []report.Check{{Name: "output images open", OK: true, Detail: fmt.Sprintf("%d disks", len(disks))}}
	}
	v, closeView, err := assembleView(ctx, disks, true)
	if err != nil {
		return []report.Check{{Name: "guest filesystems assemble", Detail: err.Error()}}
	}
	defer closeView()
	checks := validateView(v, k, c.Virtio)
	if p, ok := c.impl.(*convert.Plan); ok {
		if lc, ok := checkLabels(v.root, p); ok {
			checks = append(checks, lc)
		}
	}
	return checks
}
