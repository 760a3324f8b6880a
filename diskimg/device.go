// Package diskimg is xen2kvm's block-device layer: disk image formats
// (raw, qcow2, qcow, VHD), sparse extents, a copy-on-write overlay,
// partition tables, LVM2 volumes and the concurrent copy engine.
//
// Sources are always opened read-only. Everything above this package (the
// guest filesystem layer, the converter) works on a Device.
//
//	img, err := diskimg.Open("/var/lib/xen/images/web01.qcow") // format from the content
//	if err != nil {
//		return err // errors.Is(err, diskimg.ErrEncrypted), ErrUnsupported, ErrCorrupt
//	}
//	defer img.Close()
//	fmt.Println(img.Format(), img.Size()) // qcow 8589934592
//	err = diskimg.Convert(ctx, img, "web01-vda.qcow2", diskimg.OutputQCOW2,
//		diskimg.WithProgress(func(done, total int64) { ... }))
//
// Format packages: qcow2 (read and write), qcow (version 1, blktap's
// tap:qcow:), vhd; partitions in part, LVM2 in lvm, the copy-on-write
// overlay in overlay, and probe to describe what a disk holds.
package diskimg

import (
	"context"
	"errors"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// Device is a random-access block device: a disk image, a partition, an
// LVM logical volume or an overlay over any of these.
type Device interface {
	io.ReaderAt
	io.WriterAt
	// Size is the virtual size in bytes.
	Size() int64
}

// Extent is a byte range of a device: Offset and Length in bytes. It is
// shared with the format packages (qcow2, qcow, vhd), hence the alias.
type Extent = blk.Extent

// ExtentLister is implemented by devices that know which ranges hold data.
// Ranges not listed read as zeros. The extents are sorted and do not overlap.
type ExtentLister interface {
	Extents(ctx context.Context) ([]Extent, error)
}

// Sentinel errors.
var (
	// ErrReadOnly is returned by WriteAt on a read-only device.
	ErrReadOnly = errors.New("device is read-only")
	// ErrNotSupported is returned for an optional capability a device lacks.
	ErrNotSupported = errors.New("not supported")
	// ErrNotImage is returned by Open for a path that is neither a regular
	// file nor a block device: a FIFO, socket, character device or
	// folder, which could block a reader forever or never end.
	ErrNotImage = errors.New("not a disk image file or block device")

	// ErrCorrupt is matched by errors about damaged or truncated images;
	// the message names the file and the problem.
	ErrCorrupt = blk.ErrCorrupt
	// ErrEncrypted is matched by errors about encrypted images, which are
	// refused.
	ErrEncrypted = blk.ErrEncrypted
	// ErrUnsupported is matched by errors about image formats or features
	// xen2kvm does not read (VMDK, differencing VHD, zstd qcow2, ...).
	ErrUnsupported = blk.ErrUnsupported
)
