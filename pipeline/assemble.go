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
		g.Close()
		return nil, nil, errors.New("no root filesystem (no ext2/3/4 filesystem holds etc/fstab)")
	}
	v := &guestView{root: g.Root, filesystems: map[string]fs.FS{}, broken: map[string]error{},
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
