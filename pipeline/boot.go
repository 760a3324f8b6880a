package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// Boot boots k with kvmrun until its login prompt; the serial console
// goes to opts.LogPath. The images are used through a throw-away
// snapshot, so the boot check leaves them as they were written. A guest
// that boots from its disk's grub config is booted by kvmrun's built-in
// pygrub from the image itself.
func (realChecker) Boot(ctx context.Context, k *config.KVMDomain, dir string, o bootOptions) (*report.Boot, error) {
	accel := o.Accel
	if accel == "" {
		accel = kvmrun.AccelAuto
	}
	// The runtime folder (kernel, initrd, QMP socket) is in the staging
	// folder: a killed run leaves it where the next run removes it, not
	// in $TMPDIR.
	res, err := kvmrun.Boot(ctx, k,
		kvmrun.WithDir(filepath.Join(dir, ".run")),
		kvmrun.WithAccel(accel),
		kvmrun.WithTimeout(o.Timeout),
		kvmrun.WithSerialLog(o.LogPath),
		// The disks run on a throw-away snapshot: after the login
		// prompt there is nothing to save, so do not wait long for the
		// guest to power off.
		kvmrun.WithShutdownGrace(5*time.Second),
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

// closers closes several things in order.
type closers []io.Closer

func (cs closers) Close() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
