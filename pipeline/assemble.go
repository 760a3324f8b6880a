package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/xen2kvm/xen2kvm/assemble"
	"github.com/xen2kvm/xen2kvm/diskimg"
)

// namedDisk is a disk under the name the guest knows it by (xvda on Xen,
// vda on KVM).
type namedDisk struct {
	name string
	dev  diskimg.Device
}

// assembleView assembles the guest on disks with package assemble: its
// partitions, LVM volumes and filesystems, the root with the others
// mounted where fstab says, and every device name, label and UUID the
// guest would see.
func assembleView(ctx context.Context, disks []namedDisk, readOnly bool) (*guestView, func() error, error) {
	var ad []assemble.Disk
	for _, d := range disks {
		ad = append(ad, assemble.Disk{Target: d.name, Dev: d.dev})
	}
	var opts []assemble.Option
	if readOnly {
		opts = append(opts, assemble.ReadOnly())
	}
	if now := sourceDateEpoch(); now != nil {
		opts = append(opts, assemble.WithClock(now))
	}
	g, err := assemble.Open(ctx, ad, opts...)
	if err != nil {
		return nil, nil, err
	}
	if g.Root == nil {
		err := noRoot(g)
		g.Close()
		return nil, nil, err
	}
	v := &guestView{root: g.Root, warnings: g.Warnings, filesystems: map[string]fs.FS{}, broken: map[string]error{},
		devices: map[string]bool{}, labels: map[string]bool{}, uuids: map[string]bool{}}
	for _, d := range g.Devices {
		v.devices[d] = true
	}
	for _, f := range g.Filesystems {
		name := strings.TrimPrefix(f.Devices[0], "/dev/")
		switch {
		case f.FS != nil:
			v.filesystems[name] = f.FS
		case f.Err != nil:
			v.broken[name] = fmt.Errorf("%s: %w", f.Type, f.Err)
		}
		if f.Label != "" {
			v.labels[f.Label] = true
		}
		if f.UUID != "" {
			v.uuids[strings.ToLower(f.UUID)] = true
		}
	}
	return v, g.Close, nil
}

// ErrNoRoot: no filesystem of the guest holds etc/fstab.
var ErrNoRoot = errors.New("no root filesystem (no ext2/3/4 filesystem holds etc/fstab)")

// NoRootError is ErrNoRoot with what went wrong on the way: a filesystem
// that could not be opened, an fstab that could not be read, a partition
// cut short. The first of them is usually why there is no root.
type NoRootError struct {
	Problems []string
}

func (e *NoRootError) Error() string {
	if len(e.Problems) == 0 {
		return ErrNoRoot.Error()
	}
	return fmt.Sprintf("%s: %s", strings.Join(e.Problems, "; "), ErrNoRoot)
}

func (e *NoRootError) Unwrap() error { return ErrNoRoot }

// Hint points at the source: xen2kvm only reads it.
func (e *NoRootError) Hint() string {
	if len(e.Problems) == 0 {
		return "check that the config lists the guest's system disk, and that --disk-map points at the right images"
	}
	return "the source disk image is damaged or incomplete: run e2fsck -fn on a copy of it (or xen2kvm disk info IMAGE) to see what is wrong"
}

func noRoot(g *assemble.Guest) error {
	return &NoRootError{Problems: append([]string(nil), g.Warnings...)}
}

// sourceDateEpoch is a clock stopped at $SOURCE_DATE_EPOCH (seconds since
// 1970, the reproducible-builds convention) when it is set: the
// conversion's edits then carry that time, and two migrations of a guest
// write the same guest data. nil when it is unset or not a number.
func sourceDateEpoch() func() time.Time {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return nil
	}
	sec, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	t := time.Unix(sec, 0).UTC()
	return func() time.Time { return t }
}
