package diskimg

import (
	"context"
	"fmt"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
	"github.com/xen2kvm/xen2kvm/diskimg/vhd"
)

// ReaderImage is a disk image read through an io.ReaderAt rather than a
// local file: a disk on a Xen host read over SFTP. It is read-only and
// has no backing chain.
type ReaderImage struct {
	name   string
	format string
	size   int64
	r      formatReader
}

var (
	_ Device       = (*ReaderImage)(nil)
	_ ExtentLister = (*ReaderImage)(nil)
)

// OpenReader reads the image of size bytes that r holds; name names it in
// errors. format is as for OpenAs ("" detects it from the content; with
// FormatRaw the content is not interpreted). An image with a backing file
// is refused with ErrUnsupported: it would name a file elsewhere. A raw
// image lists its whole size as one extent, unless r is an ExtentLister
// (a disk on a Xen host with a zero map): then r's extents.
func OpenReader(r io.ReaderAt, size int64, name, format string) (*ReaderImage, error) {
	switch format {
	case "", FormatRaw, FormatQCOW2, FormatQCOW, FormatVHD:
	default:
		return nil, fmt.Errorf("%s: %w: format %q", name, ErrUnsupported, format)
	}
	detected, err := detect(r, size, name)
	if err != nil {
		return nil, err
	}
	if format == "" {
		format = detected
	} else if format != FormatRaw && format != detected {
		return nil, fmt.Errorf("%s: %w: expected a %s image but the content is %s", name, ErrCorrupt, format, detected)
	}
	img := &ReaderImage{name: name, format: format}
	switch format {
	case FormatRaw:
		img.size, img.r = size, &wholeReader{ReaderAt: r, size: size}
	case FormatVHD:
		v, err := vhd.Open(r, size, name)
		if err != nil {
			return nil, err
		}
		img.size, img.r = v.Size(), v
	case FormatQCOW2:
		q, err := qcow2.Open(r, size, name)
		if err != nil {
			return nil, err
		}
		if q.BackingFile() != "" {
			return nil, fmt.Errorf("%s: %w: backing file %q (copy the chain or convert it on the host first)", name, ErrUnsupported, q.BackingFile())
		}
		img.size, img.r = q.Size(), q
	case FormatQCOW:
		q, err := qcow.Open(r, size, name)
		if err != nil {
			return nil, err
		}
		if q.BackingFile() != "" {
			return nil, fmt.Errorf("%s: %w: backing file %q (copy the chain or convert it on the host first)", name, ErrUnsupported, q.BackingFile())
		}
		img.size, img.r = q.Size(), q
	}
	return img, nil
}

// Format is the image format.
func (img *ReaderImage) Format() string { return img.format }

// Size is the virtual size in bytes.
func (img *ReaderImage) Size() int64 { return img.size }

// ReadAt reads guest data.
func (img *ReaderImage) ReadAt(p []byte, off int64) (int, error) { return img.r.ReadAt(p, off) }

// WriteAt always fails with ErrReadOnly.
func (img *ReaderImage) WriteAt(p []byte, off int64) (int, error) {
	return 0, fmt.Errorf("%s: %w", img.name, ErrReadOnly)
}

// Extents lists the ranges that may hold data.
func (img *ReaderImage) Extents(ctx context.Context) ([]Extent, error) { return img.r.Extents(ctx) }

// wholeReader is raw data whose holes are not known, or known by r.
type wholeReader struct {
	io.ReaderAt
	size int64
}

func (w *wholeReader) Extents(ctx context.Context) ([]Extent, error) {
	if l, ok := w.ReaderAt.(ExtentLister); ok {
		return l.Extents(ctx)
	}
	var l blk.List
	if w.size > 0 {
		l.Add(0, w.size)
	}
	return l, nil
}
