package kvmrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/internal/closer"
)

// OpenBootFS is the default BootFSOpener: it opens the disk image
// read-only (any format diskimg reads) and returns the first ext2/3/4
// filesystem holding a grub legacy config, looking at the partitions
// (bootable ones first) or, on a disk without a partition table, at the
// whole disk (a Xen PV disk is often a bare filesystem). GRUB legacy
// cannot read LVM, so its config is never inside a logical volume.
func OpenBootFS(ctx context.Context, disk config.KVMDisk) (fs.FS, io.Closer, error) {
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
		parts := append([]*part.Partition(nil), tbl.Partitions...)
		sort.SliceStable(parts, func(i, j int) bool { return parts[i].Bootable && !parts[j].Bootable })
		for _, p := range parts {
			if !p.Extended {
				devs = append(devs, p.Device())
			}
		}
	}
	for _, d := range devs {
		if ctx.Err() != nil {
			img.Close()
			return nil, nil, ctx.Err()
		}
		fsys, err := extfs.Open(d, extfs.ReadOnly())
		if err != nil {
			continue // swap, LVM, another filesystem
		}
		for _, c := range grubConfigs {
			if _, err := fs.Stat(fsys, c); err == nil {
				return fsys, closer.All{fsys, img}, nil
			}
		}
		fsys.Close()
	}
	img.Close()
	return nil, nil, fmt.Errorf("%s: %w: no ext2/3/4 filesystem on the disk holds one", disk.Path, ErrNoGrubConfig)
}
