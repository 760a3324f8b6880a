// Package blktest holds what the tests of diskimg's format readers share.
//
//	img, err := qcow2.Open(bytes.NewReader(b), int64(len(b)), "fuzz.qcow2")
//	if err == nil {
//		blktest.ReadAll(img) // in a fuzz target: must not panic
//	}
package blktest

import (
	"context"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// Image is a format reader (qcow.Image, qcow2.Image, vhd.Image).
type Image interface {
	io.ReaderAt
	Size() int64
	Extents(ctx context.Context) ([]blk.Extent, error)
}

// ReadAll lists the image's extents and reads its first 4 MiB in 64 KiB
// pieces, returning the first error; io.EOF at the end is not one. Fuzz
// targets use it to drive the reader over arbitrary metadata.
func ReadAll(img Image) error {
	if _, err := img.Extents(context.Background()); err != nil {
		return err
	}
	buf := make([]byte, 64<<10)
	for off := int64(0); off < img.Size() && off < 4<<20; off += int64(len(buf)) {
		if _, err := img.ReadAt(buf, off); err != nil && err != io.EOF {
			return err
		}
	}
	return nil
}
