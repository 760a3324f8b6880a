package pipeline

import (
	"context"
	"path/filepath"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/firstboot"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// Boot proves k's first boot with firstboot.Check: the guest runs on
// throw-away overlays above the staged images (left as they were
// written) until its login prompt, its network is proven, it is powered
// off and what the boot changed on its disk is read back. The serial
// console goes to opts.LogPath. A guest that boots from its disk's grub
// config is booted by kvmrun's built-in pygrub from the image itself.
func (realChecker) Boot(ctx context.Context, k *config.KVMDomain, dir string, o bootOptions) (*report.Boot, error) {
	accel := o.Accel
	if accel == "" {
		accel = kvmrun.AccelAuto
	}
	var run []kvmrun.Option
	// The runtime folder (kernel, initrd, QMP socket, network capture) is
	// in the staging folder: a killed run leaves it where the next run
	// removes it, not in $TMPDIR. Unless the QMP socket's path would be
	// too long for a unix socket there: then kvmrun makes its own.
	if rd := filepath.Join(dir, ".run"); len(filepath.Join(rd, "qmp.sock")) <= maxSocketPath {
		run = append(run, kvmrun.WithDir(rd))
	}
	res, err := firstboot.Check(ctx, k, firstboot.Options{
		Boot: append(run,
			kvmrun.WithAccel(accel),
			kvmrun.WithTimeout(o.Timeout),
			kvmrun.WithSerialLog(o.LogPath),
			// The guest gets time to power off cleanly, so that what it
			// wrote is on its disk when the drift is read.
			kvmrun.WithShutdownGrace(60*time.Second),
		),
		AllowDrift:   o.AllowDrift,
		NetCheckPort: o.NetCheckPort,
		Dir:          dir,
	})
	return res.Report, err
}

// maxSocketPath is the longest unix socket path Linux takes.
const maxSocketPath = 107
