package pipeline

import (
	"context"

	"github.com/xen2kvm/xen2kvm/diskimg"
)

// allocated returns how many bytes of dev hold data, from its extent list
// when it has one, else its whole size.
func allocated(ctx context.Context, dev diskimg.Device) int64 {
	el, ok := dev.(diskimg.ExtentLister)
	if !ok {
		return dev.Size()
	}
	exts, err := el.Extents(ctx)
	if err != nil {
		return dev.Size()
	}
	var n int64
	for _, e := range exts {
		n += e.Length
	}
	return n
}

// estimateSize is an upper bound of the output image's size on disk: the
// allocated data (zero-filled ranges are not written, so it is usually
// less) plus, for qcow2, its metadata at 64 KiB clusters.
func estimateSize(virtual, alloc int64, format string) int64 {
	if format != "qcow2" {
		return alloc
	}
	const cluster = 64 << 10
	data := (alloc + cluster - 1) / cluster * cluster
	// header + L1 table + refcount table, one L2 table per 512 MiB of
	// virtual size, one refcount block per 2 GiB of image.
	l2 := (virtual + (cluster/8)*cluster - 1) / ((cluster / 8) * cluster)
	refblocks := (data + 2<<30 - 1) / (2 << 30)
	return data + (3+l2+refblocks+1)*cluster
}
