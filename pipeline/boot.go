package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// realBoot boots k with kvmrun until its login prompt; the serial console
// goes to opts.LogPath. The images are used through a throw-away
// snapshot, so the boot check leaves them as they were written.
func realBoot(ctx context.Context, k *config.KVMDomain, dir string, o bootOptions) (*report.Boot, error) {
	accel := o.Accel
	if accel == "" {
		accel = kvmrun.AccelAuto
	}
	res, err := kvmrun.Boot(ctx, k,
		kvmrun.WithAccel(accel),
		kvmrun.WithTimeout(o.Timeout),
		kvmrun.WithSerialLog(o.LogPath),
		kvmrun.WithBootFS(openBootFS),
	)
	b := &report.Boot{Ran: true}
	if res != nil {
		b.Accel = res.Accel.Accel
		b.Seconds = res.BootTime.Seconds()
	}
	if err != nil {
		b.Detail = err.Error()
		var be *kvmrun.BootError
		if errors.As(err, &be) {
			b.Detail = fmt.Sprintf("%v\nlast serial lines:\n%s", err, strings.Join(be.SerialTail, "\n"))
		}
		return b, err
	}
	b.OK = true
	return b, nil
}

// openBootFS opens, read-only, the first filesystem of a disk image that
// holds a grub legacy config: the /boot partition of a PV guest.
func openBootFS(ctx context.Context, disk config.KVMDisk) (fs.FS, io.Closer, error) {
	img, err := diskimg.Open(disk.Path)
	if err != nil {
		return nil, nil, err
	}
	var devs []diskimg.Device
	tbl, err := part.Read(img)
	switch {
	case errors.Is(err, part.ErrNoTable):
		devs = []diskimg.Device{img}
	case err != nil:
		img.Close()
		return nil, nil, fmt.Errorf("%s: %w", disk.Path, err)
	default:
		for _, p := range tbl.Partitions {
			if !p.Extended {
				devs = append(devs, p.Device())
			}
		}
	}
	for _, d := range devs {
		fsys, err := extfs.Open(d, extfs.ReadOnly())
		if err != nil {
			continue
		}
		for _, c := range []string{"grub/grub.conf", "grub/menu.lst", "boot/grub/grub.conf", "boot/grub/menu.lst"} {
			if _, err := fs.Stat(fsys, c); err == nil {
				return fsys, closers{fsys, img}, nil
			}
		}
		fsys.Close()
	}
	img.Close()
	return nil, nil, fmt.Errorf("%s: %w", disk.Path, kvmrun.ErrNoGrubConfig)
}

// closers closes several things in order.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
