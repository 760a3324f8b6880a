package lvm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

// On-disk constants of the LVM2 format ("LVM2 001").
const (
	sectorSize     = 512
	labelScan      = 4 // the label is in one of the first four sectors
	labelID        = "LABELONE"
	labelType      = "LVM2 001"
	mdaMagic       = " LVM2 x[5A%r0N*>"
	mdaHeaderLen   = 512
	initialCRC     = 0xf597a6cf
	rawLocnIgnored = 1
	maxMetadata    = 16 << 20 // larger metadata text is refused
	maxLocns       = 64
)

// lvmCRC is LVM's checksum: CRC-32 (IEEE, reflected) from initialCRC
// without the final inversion.
func lvmCRC(b []byte) uint32 {
	return ^crc32.Update(^uint32(initialCRC), crc32.IEEETable, b)
}

// area is a disk_locn: a byte range of the PV.
type area struct {
	offset, size uint64
}

// pvLabel is what the label sector of a PV says.
type pvLabel struct {
	uuid      string // 32 characters, no dashes
	devSize   uint64
	dataAreas []area
	mdas      []area
}

// errNoLabel means the device holds no LVM2 label.
var errNoLabel = errors.New("no LVM2 label")

// readLabel finds and checks the PV label in the first sectors of dev.
func readLabel(dev diskimg.Device) (*pvLabel, error) {
	buf := make([]byte, sectorSize)
	for s := int64(0); s < labelScan; s++ {
		if (s+1)*sectorSize > dev.Size() {
			break
		}
		if _, err := blk.ReadAtFull(dev, buf, s*sectorSize); err != nil {
			return nil, fmt.Errorf("reading sector %d: %w", s, err)
		}
		if string(buf[:8]) != labelID {
			continue
		}
		if got := binary.LittleEndian.Uint64(buf[8:]); got != uint64(s) {
			return nil, fmt.Errorf("label in sector %d says it is in sector %d: %w", s, got, ErrCorrupt)
		}
		want := binary.LittleEndian.Uint32(buf[16:])
		if got := lvmCRC(buf[20:]); got != want {
			return nil, fmt.Errorf("label checksum %08x, want %08x: %w", got, want, ErrCorrupt)
		}
		if t := string(buf[24:32]); t != labelType {
			return nil, fmt.Errorf("label type %q (only %q is supported): %w", t, labelType, ErrCorrupt)
		}
		off := binary.LittleEndian.Uint32(buf[20:])
		if off < 32 || off > sectorSize-32-40 {
			return nil, fmt.Errorf("pv_header at offset %d: %w", off, ErrCorrupt)
		}
		return parsePVHeader(buf[off:])
	}
	return nil, errNoLabel
}

// parsePVHeader parses a pv_header: the PV UUID, its size, and two
// zero-terminated lists of data areas and metadata areas.
func parsePVHeader(b []byte) (*pvLabel, error) {
	l := &pvLabel{
		uuid:    string(b[:32]),
		devSize: binary.LittleEndian.Uint64(b[32:]),
	}
	b = b[40:]
	list := 0
	for list < 2 {
		if len(b) < 16 {
			return nil, fmt.Errorf("pv_header area lists are not terminated: %w", ErrCorrupt)
		}
		a := area{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
		b = b[16:]
		if a.offset == 0 {
			list++
			continue
		}
		if list == 0 {
			l.dataAreas = append(l.dataAreas, a)
		} else {
			l.mdas = append(l.mdas, a)
		}
	}
	return l, nil
}

// readMetadata returns the current metadata text of the metadata area a,
// or nil when the area holds none.
func readMetadata(dev diskimg.Device, a area) ([]byte, error) {
	if a.size < mdaHeaderLen || a.offset > uint64(dev.Size()) || a.size > uint64(dev.Size())-a.offset {
		return nil, fmt.Errorf("metadata area %d+%d outside the %d-byte device: %w", a.offset, a.size, dev.Size(), ErrCorrupt)
	}
	h := make([]byte, mdaHeaderLen)
	if _, err := blk.ReadAtFull(dev, h, int64(a.offset)); err != nil {
		return nil, fmt.Errorf("reading metadata area header at %d: %w", a.offset, err)
	}
	if got, want := lvmCRC(h[4:]), binary.LittleEndian.Uint32(h); got != want {
		return nil, fmt.Errorf("metadata area header at %d: checksum %08x, want %08x: %w", a.offset, got, want, ErrCorrupt)
	}
	if string(h[4:20]) != mdaMagic {
		return nil, fmt.Errorf("metadata area header at %d: bad magic: %w", a.offset, ErrCorrupt)
	}
	if v := binary.LittleEndian.Uint32(h[20:]); v != 1 {
		return nil, fmt.Errorf("metadata area header at %d: version %d: %w", a.offset, v, ErrCorrupt)
	}
	start, size := binary.LittleEndian.Uint64(h[24:]), binary.LittleEndian.Uint64(h[32:])
	if start != a.offset || size != a.size {
		return nil, fmt.Errorf("metadata area header at %d describes %d+%d: %w", a.offset, start, size, ErrCorrupt)
	}
	// The first raw_locn is the current metadata; it lives in the ring
	// buffer after the header and may wrap around its end.
	r := h[40:]
	off := binary.LittleEndian.Uint64(r)
	n := binary.LittleEndian.Uint64(r[8:])
	sum := binary.LittleEndian.Uint32(r[16:])
	flags := binary.LittleEndian.Uint32(r[20:])
	if off == 0 || flags&rawLocnIgnored != 0 {
		return nil, nil
	}
	ring := size - mdaHeaderLen
	if off < mdaHeaderLen || off >= size || n == 0 || n > ring || n > maxMetadata {
		return nil, fmt.Errorf("metadata at %d+%d of a %d-byte area: %w", off, n, size, ErrCorrupt)
	}
	text := make([]byte, n)
	first := min(n, size-off)
	if _, err := blk.ReadAtFull(dev, text[:first], int64(start+off)); err != nil {
		return nil, fmt.Errorf("reading metadata at %d: %w", start+off, err)
	}
	if first < n {
		if _, err := blk.ReadAtFull(dev, text[first:], int64(start+mdaHeaderLen)); err != nil {
			return nil, fmt.Errorf("reading wrapped metadata at %d: %w", start+mdaHeaderLen, err)
		}
	}
	if got := lvmCRC(text); got != sum {
		return nil, fmt.Errorf("metadata at %d: checksum %08x, want %08x: %w", start+off, got, sum, ErrCorrupt)
	}
	// The text is NUL-terminated inside its size.
	if i := bytes.IndexByte(text, 0); i >= 0 {
		text = text[:i]
	}
	return text, nil
}
