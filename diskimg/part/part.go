// Package part reads MBR (with extended and logical partitions) and GPT
// partition tables and presents each partition as a block device.
//
//	tab, err := part.Read(disk)
//	if errors.Is(err, part.ErrNoTable) {
//		// a whole-disk filesystem or LVM PV
//	}
//	for _, p := range tab.Partitions {
//		fmt.Println(p.Number, p.Type, p.Start, p.Size) // 5 83 1048576 ...
//		dev := p.Device() // reads and writes clamped to the partition
//	}
//
// Partitions are numbered as Linux numbers them: MBR primaries 1-4,
// logical partitions from 5 in chain order, GPT partitions by their slot.
// Sizes and offsets are in bytes.
package part

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// Sentinel errors.
var (
	// ErrNoTable means the device holds no MBR or GPT partition table.
	ErrNoTable = errors.New("no partition table")
	// ErrCorrupt means a partition table was found but is invalid.
	ErrCorrupt = errors.New("corrupt partition table")
)

// Scheme names.
const (
	MBR = "mbr"
	GPT = "gpt"
)

// Table is a disk's partition table.
type Table struct {
	Scheme     string // MBR or GPT
	SectorSize int
	// ID is the MBR disk signature as sfdisk prints it ("0x0ce131c5") or
	// the GPT disk GUID.
	ID         string
	Partitions []*Partition
}

// Partition is one entry of a partition table.
type Partition struct {
	// Number is the Linux partition number (sda5 is 5).
	Number int
	// Type is the MBR type byte in hex as sfdisk prints it ("83", "8e",
	// "5") or the GPT partition type GUID in upper case.
	Type string
	// Start and Size are in bytes. A partition that runs past the end of
	// the disk is cut at the end, as Linux does; Cut is how many bytes
	// the table gives it past the end (0 for a whole partition).
	Start, Size int64
	Cut         int64
	// Bootable is the MBR active flag or the GPT legacy BIOS bootable
	// attribute.
	Bootable bool
	// Extended marks the MBR extended partition that holds the logical
	// ones; it holds no filesystem.
	Extended bool
	// Name and UUID are the GPT partition name and unique GUID.
	Name, UUID string

	disk diskimg.Device
}

// Device returns the partition as a block device over the disk: reads and
// writes are clamped to the partition and go to the disk.
func (p *Partition) Device() diskimg.Device {
	return &window{dev: p.disk, off: p.Start, size: p.Size}
}

// Read reads the partition table of dev. It returns ErrNoTable when there
// is none and an error wrapping ErrCorrupt when the table is invalid.
func Read(dev diskimg.Device) (*Table, error) {
	if dev.Size() < 512 {
		return nil, ErrNoTable
	}
	mbr := make([]byte, 512)
	if _, err := blk.ReadAtFull(dev, mbr, 0); err != nil {
		return nil, fmt.Errorf("reading MBR: %w", err)
	}
	entries, ok := parseMBRSector(mbr)
	if !ok {
		// No MBR; a GPT without a protective MBR is still read.
		if t, err := readGPT(dev); err == nil {
			return t, nil
		}
		return nil, ErrNoTable
	}
	for _, e := range entries {
		if e.typ == 0xEE {
			return readGPT(dev)
		}
	}
	return readMBR(dev, mbr, entries)
}

// window is a byte range of a device.
type window struct {
	dev       diskimg.Device
	off, size int64
}

func (w *window) Size() int64 { return w.size }

func (w *window) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("reading partition at %d: negative offset", off)
	}
	if off >= w.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	short := false
	if int64(len(p)) > w.size-off {
		p = p[:w.size-off]
		short = true
	}
	n, err := w.dev.ReadAt(p, w.off+off)
	if n == len(p) {
		err = nil
	} else if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	if err == nil && short {
		err = io.EOF
	}
	return n, err
}

func (w *window) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off > w.size || int64(len(p)) > w.size-off {
		return 0, fmt.Errorf("writing %d bytes at %d of a %d-byte partition: past its end", len(p), off, w.size)
	}
	return w.dev.WriteAt(p, w.off+off)
}

// Extents lists the disk's extents within the partition, relative to it,
// when the disk can list them.
func (w *window) Extents(ctx context.Context) ([]diskimg.Extent, error) {
	l, ok := w.dev.(diskimg.ExtentLister)
	if !ok {
		return nil, diskimg.ErrNotSupported
	}
	all, err := l.Extents(ctx)
	if err != nil {
		return nil, err
	}
	var out []diskimg.Extent
	for _, e := range all {
		s, end := max(e.Offset, w.off), min(e.Offset+e.Length, w.off+w.size)
		if s < end {
			out = append(out, diskimg.Extent{Offset: s - w.off, Length: end - s})
		}
	}
	return out, nil
}
