package diskimg

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
	"github.com/xen2kvm/xen2kvm/diskimg/vhd"
)

// Format names, as Image.Format returns them.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
	FormatQCOW  = "qcow" // qcow version 1, as RHEL 5 blktap's tap:qcow: writes it
	FormatVHD   = "vhd"
)

// maxBackingDepth bounds backing chains (and so backing file loops).
const maxBackingDepth = 16

// Image is a disk image or block device opened read-only. Its format is
// detected from its content, never from its name. It implements Device
// (WriteAt returns ErrReadOnly), ExtentLister and io.Closer, and is safe
// for concurrent reads.
type Image struct {
	path     string
	f        *os.File
	format   string
	size     int64
	blockDev bool
	r        formatReader
	backing  *Image
}

type formatReader interface {
	io.ReaderAt
	Extents(ctx context.Context) ([]Extent, error)
}

var (
	_ Device       = (*Image)(nil)
	_ ExtentLister = (*Image)(nil)
	_ io.Closer    = (*Image)(nil)
)

// Open opens the disk image or block device at path read-only and detects
// its format: raw (sparse files and block devices), qcow2 (v2/v3, with
// backing files resolved relative to the image), qcow v1 (blktap's
// tap:qcow:), VHD fixed and dynamic. Encrypted images fail with
// ErrEncrypted, formats or features it cannot read with ErrUnsupported and
// damaged ones with ErrCorrupt; the message names the file.
func Open(path string) (*Image, error) {
	return open(path, "", nil)
}

// OpenAs opens path like Open when the caller knows the format from
// elsewhere (a Xen disk line says tap:aio:, file: or phy:, all raw). With
// FormatRaw the content is not interpreted at all: a guest that wrote a
// qcow2 header into its raw disk cannot make xen2kvm follow a backing file
// on the host. With another format, the content must be of that format.
func OpenAs(path, format string) (*Image, error) {
	switch format {
	case FormatRaw, FormatQCOW2, FormatQCOW, FormatVHD:
	default:
		return nil, fmt.Errorf("%s: %w: format %q", path, ErrUnsupported, format)
	}
	return open(path, format, nil)
}

// chainError reports a backing chain that loops or is too deep; it is
// returned as is through the chain rather than wrapped at every level.
type chainError struct{ err error }

func (e *chainError) Error() string { return e.err.Error() }
func (e *chainError) Unwrap() error { return e.err }

// CheckImageMode refuses a file mode that is not a regular file or a
// block device, naming what path is.
func CheckImageMode(path string, m os.FileMode) error {
	if m.IsRegular() || isBlockDevice(m) {
		return nil
	}
	return fmt.Errorf("%s: %w: it is %s", path, ErrNotImage, fileKind(m))
}

func isBlockDevice(m os.FileMode) bool {
	return m&os.ModeDevice != 0 && m&os.ModeCharDevice == 0
}

// fileKind says what a file of mode m is, for errors: "it is a FIFO".
func fileKind(m os.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a folder"
	case m&os.ModeNamedPipe != 0:
		return "a FIFO"
	case m&os.ModeSocket != 0:
		return "a socket"
	case m&os.ModeCharDevice != 0:
		return "a character device"
	case isBlockDevice(m):
		return "a block device"
	}
	return "of mode " + m.String()
}

// open opens path; chain holds the images above it in a backing chain.
func open(path, wantFormat string, chain []*Image) (*Image, error) {
	if len(chain) > maxBackingDepth {
		return nil, &chainError{fmt.Errorf("%s: %w: backing chain deeper than %d images", chain[0].path, ErrCorrupt, maxBackingDepth)}
	}
	// O_RDONLY: sources are never opened for writing. O_NONBLOCK: opening
	// a FIFO does not wait for a writer; it is refused below (Fd puts
	// the descriptor back into blocking mode for the reads).
	if st, err := os.Stat(path); err == nil {
		if err := CheckImageMode(path, st.Mode()); err != nil {
			return nil, err // a socket cannot even be opened
		}
	}
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	img := &Image{path: path, f: f}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := CheckImageMode(path, st.Mode()); err != nil {
		f.Close()
		return nil, err
	}
	f.Fd()
	for _, up := range chain {
		if ust, err := up.f.Stat(); err == nil && os.SameFile(st, ust) {
			f.Close()
			return nil, &chainError{fmt.Errorf("%s: %w: backing chain loops: %s is backed by %s again", chain[0].path, ErrCorrupt, chain[len(chain)-1].path, up.path)}
		}
	}
	if err := img.init(st, wantFormat, append(chain, img)); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

func (img *Image) init(st os.FileInfo, wantFormat string, chain []*Image) error {
	var err error
	fileSize := st.Size()
	switch {
	case st.Mode().IsRegular():
	case st.Mode()&os.ModeDevice != 0 && st.Mode()&os.ModeCharDevice == 0:
		img.blockDev = true
		if fileSize, err = blockDevSize(img.f); err != nil {
			return fmt.Errorf("sizing block device %s: %w", img.path, err)
		}
	default:
		return fmt.Errorf("%s: not a regular file or block device", img.path)
	}

	format, err := detect(img.f, fileSize, img.path)
	if err != nil {
		return err
	}
	if wantFormat == FormatRaw {
		format = FormatRaw
	} else if wantFormat != "" && wantFormat != format {
		return fmt.Errorf("%s: %w: expected a %s image but the content is %s", img.path, ErrCorrupt, wantFormat, format)
	}
	img.format = format
	switch format {
	case FormatRaw:
		img.size = fileSize
		img.r = &rawReader{f: img.f, size: fileSize, name: img.path}
	case FormatVHD:
		v, err := vhd.Open(img.f, fileSize, img.path)
		if err != nil {
			return err
		}
		img.size = v.Size()
		if v.Type() == "fixed" {
			img.r = &rawReader{f: img.f, size: v.Size(), name: img.path}
		} else {
			img.r = v
		}
	case FormatQCOW2:
		q, err := qcow2.Open(img.f, fileSize, img.path)
		if err != nil {
			return err
		}
		img.size, img.r = q.Size(), q
		if q.BackingFile() != "" {
			if img.backing, err = img.openBacking(q.BackingFile(), q.BackingFormat(), chain); err != nil {
				return err
			}
			q.SetBacking(img.backing)
		}
	case FormatQCOW:
		q, err := qcow.Open(img.f, fileSize, img.path)
		if err != nil {
			return err
		}
		img.size, img.r = q.Size(), q
		if q.BackingFile() != "" {
			if img.backing, err = img.openBacking(q.BackingFile(), "", chain); err != nil {
				return err
			}
			q.SetBacking(img.backing)
		}
	}
	return nil
}

// openBacking opens a backing file named in the image header.
func (img *Image) openBacking(name, format string, chain []*Image) (*Image, error) {
	if strings.HasPrefix(name, "json:") || strings.Contains(name, "://") {
		return nil, fmt.Errorf("%s: %w: backing file %q is not a local file", img.path, ErrUnsupported, name)
	}
	switch format {
	case "", FormatRaw, FormatQCOW2, FormatQCOW:
	case "vpc":
		format = FormatVHD
	default:
		return nil, fmt.Errorf("%s: %w: backing file format %q", img.path, ErrUnsupported, format)
	}
	p := name
	if !filepath.IsAbs(p) {
		p = filepath.Join(filepath.Dir(img.path), p)
	}
	b, err := open(p, format, chain)
	var ce *chainError
	if errors.As(err, &ce) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("%s: opening backing file: %w", img.path, err)
	}
	return b, nil
}

// detect names the format of the image from its first and last sectors.
func detect(r io.ReaderAt, size int64, name string) (string, error) {
	head := make([]byte, 512)
	n, err := r.ReadAt(head, 0)
	if err != nil && err != io.EOF {
		return "", fmt.Errorf("reading %s: %w", name, err)
	}
	head = head[:n]
	be := binary.BigEndian
	if len(head) >= 8 && be.Uint32(head) == 0x514649fb { // "QFI\xfb"
		switch v := be.Uint32(head[4:]); v {
		case 1:
			return FormatQCOW, nil
		case 2, 3:
			return FormatQCOW2, nil
		default:
			return "", fmt.Errorf("%s: %w: qcow version %d", name, ErrUnsupported, v)
		}
	}
	if size >= 512 {
		foot := make([]byte, 8)
		if _, err := r.ReadAt(foot, size-512); err == nil && string(foot) == "conectix" {
			return FormatVHD, nil
		}
	}
	switch {
	case bytes.HasPrefix(head, []byte("conectix")):
		return FormatVHD, nil // vhd.Open explains the missing footer
	case bytes.HasPrefix(head, []byte("KDMV")), bytes.HasPrefix(head, []byte("# Disk DescriptorFile")):
		return "", fmt.Errorf("%s: %w: VMDK image; convert it with qemu-img first", name, ErrUnsupported)
	case len(head) >= 68 && binary.LittleEndian.Uint32(head[64:]) == 0xbeda107f:
		return "", fmt.Errorf("%s: %w: VirtualBox VDI image; convert it with qemu-img first", name, ErrUnsupported)
	case bytes.HasPrefix(head, []byte("QED\x00")):
		return "", fmt.Errorf("%s: %w: QED image; convert it with qemu-img first", name, ErrUnsupported)
	case bytes.HasPrefix(head, []byte("LUKS\xba\xbe")):
		return "", fmt.Errorf("%s: %w: LUKS volume", name, ErrEncrypted)
	}
	return FormatRaw, nil
}

// blockDevSize sizes a block device by seeking to its end, falling back to
// the BLKGETSIZE64 ioctl.
func blockDevSize(f *os.File) (int64, error) {
	if n, err := f.Seek(0, io.SeekEnd); err == nil && n > 0 {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return 0, err
		}
		return n, nil
	}
	n, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return 0, err
	}
	return int64(n), nil
}

// Path is the path the image was opened from.
func (img *Image) Path() string { return img.path }

// Format is the detected format: FormatRaw, FormatQCOW2, FormatQCOW or
// FormatVHD.
func (img *Image) Format() string { return img.format }

// Size is the virtual size in bytes.
func (img *Image) Size() int64 { return img.size }

// BlockDevice tells whether the image is a block device (a phy: disk).
func (img *Image) BlockDevice() bool { return img.blockDev }

// Backing is the backing image of a qcow2 or qcow overlay, or nil.
func (img *Image) Backing() *Image { return img.backing }

// ReadAt reads guest data; it satisfies io.ReaderAt.
func (img *Image) ReadAt(p []byte, off int64) (int, error) { return img.r.ReadAt(p, off) }

// WriteAt always fails with ErrReadOnly: images are sources and are never
// written.
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	return 0, fmt.Errorf("%s: %w", img.path, ErrReadOnly)
}

// Extents lists the ranges that may hold data; everything else reads as
// zeros. For raw files these come from SEEK_DATA/SEEK_HOLE, for the other
// formats from their allocation tables (and their backing files').
func (img *Image) Extents(ctx context.Context) ([]Extent, error) { return img.r.Extents(ctx) }

// Close closes the image and its backing chain.
func (img *Image) Close() error {
	var errs []error
	if img.backing != nil {
		errs = append(errs, img.backing.Close())
		img.backing = nil
	}
	if img.f != nil {
		errs = append(errs, img.f.Close())
		img.f = nil
	}
	return errors.Join(errs...)
}

// rawReader reads the first size bytes of a file or block device.
type rawReader struct {
	f    *os.File
	size int64
	name string
}

func (r *rawReader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("%s: negative offset %d", r.name, off)
	}
	if off >= r.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	short := int64(len(p)) > r.size-off
	if short {
		p = p[:r.size-off]
	}
	n, err := r.f.ReadAt(p, off)
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

// Extents walks the file with SEEK_DATA/SEEK_HOLE. Where the file system
// or device does not support them, the whole range is one extent.
func (r *rawReader) Extents(ctx context.Context) ([]Extent, error) {
	var out blk.List
	fd := int(r.f.Fd())
	for off := int64(0); off < r.size; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, syscall.ENXIO) {
			break // no data after off
		}
		if err != nil {
			if len(out) == 0 && off == 0 {
				out.Add(0, r.size) // SEEK_DATA unsupported
				return out, nil
			}
			return nil, fmt.Errorf("%s: seeking data: %w", r.name, err)
		}
		if data >= r.size {
			break
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("%s: seeking hole: %w", r.name, err)
		}
		hole = min(hole, r.size)
		out.Add(data, hole-data)
		off = hole
	}
	return out, nil
}
