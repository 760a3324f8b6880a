package part

import (
	"encoding/binary"
	"fmt"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

const (
	sector        = 512
	maxLogical    = 256 // Linux stops well before this; a longer chain is corrupt
	mbrTableStart = 446
)

type mbrEntry struct {
	boot       byte
	typ        byte
	start, len uint32 // sectors, relative to the sector that holds the entry (or the extended partition for links)
}

func isExtended(typ byte) bool { return typ == 0x05 || typ == 0x0F || typ == 0x85 }

// parseMBRSector returns the four entries of an MBR or EBR sector, or false
// when the sector is not one: no 0x55AA signature, or a boot flag other
// than 0x00 or 0x80 (which is how a filesystem boot sector is told apart).
func parseMBRSector(b []byte) ([4]mbrEntry, bool) {
	var es [4]mbrEntry
	if len(b) < sector || b[510] != 0x55 || b[511] != 0xAA {
		return es, false
	}
	for i := range es {
		r := b[mbrTableStart+16*i:]
		es[i] = mbrEntry{
			boot:  r[0],
			typ:   r[4],
			start: binary.LittleEndian.Uint32(r[8:]),
			len:   binary.LittleEndian.Uint32(r[12:]),
		}
		if es[i].boot != 0 && es[i].boot != 0x80 {
			return es, false
		}
	}
	return es, true
}

func readMBR(disk diskimg.Device, mbr []byte, entries [4]mbrEntry) (*Table, error) {
	t := &Table{
		Scheme:     MBR,
		SectorSize: sector,
		ID:         fmt.Sprintf("0x%08x", binary.LittleEndian.Uint32(mbr[440:])),
	}
	size := disk.Size()
	add := func(num int, e mbrEntry, base int64, ext bool) error {
		start := (base + int64(e.start)) * sector
		if e.start == 0 {
			return fmt.Errorf("partition %d starts on its own partition table sector %d: %w", num, base, ErrCorrupt)
		}
		if start >= size {
			return fmt.Errorf("partition %d starts at sector %d, outside the %d-byte disk: %w", num, base+int64(e.start), size, ErrCorrupt)
		}
		length := min(int64(e.len)*sector, size-start)
		t.Partitions = append(t.Partitions, &Partition{
			Number:   num,
			Type:     fmt.Sprintf("%x", e.typ),
			Start:    start,
			Size:     length,
			Cut:      int64(e.len)*sector - length,
			Bootable: e.boot == 0x80,
			Extended: ext,
			disk:     disk,
		})
		return nil
	}
	var extStart, extLen int64 = -1, 0
	for i, e := range entries {
		if e.typ == 0 || e.len == 0 {
			continue
		}
		ext := isExtended(e.typ)
		if err := add(i+1, e, 0, ext); err != nil {
			return nil, err
		}
		if ext {
			if extStart >= 0 {
				return nil, fmt.Errorf("second extended partition %d: %w", i+1, ErrCorrupt)
			}
			extStart, extLen = int64(e.start), int64(e.len)
		}
	}
	if extStart < 0 {
		return t, nil
	}
	// Walk the chain of extended boot records. Each holds the logical
	// partitions relative to itself and a link relative to the extended
	// partition's start.
	num := 5
	seen := map[int64]bool{}
	ebr := extStart
	buf := make([]byte, sector)
	for {
		if seen[ebr] {
			return nil, fmt.Errorf("extended boot record chain loops at sector %d: %w", ebr, ErrCorrupt)
		}
		seen[ebr] = true
		if len(seen) > maxLogical {
			return nil, fmt.Errorf("more than %d extended boot records: %w", maxLogical, ErrCorrupt)
		}
		if ebr*sector+sector > size {
			return nil, fmt.Errorf("extended boot record at sector %d is past the end of the disk: %w", ebr, ErrCorrupt)
		}
		if _, err := blk.ReadAtFull(disk, buf, ebr*sector); err != nil {
			return nil, fmt.Errorf("reading extended boot record at sector %d: %w", ebr, err)
		}
		es, ok := parseMBRSector(buf)
		if !ok {
			if ebr == extStart {
				// An extended partition with no logical partitions yet.
				return t, nil
			}
			return nil, fmt.Errorf("invalid extended boot record at sector %d: %w", ebr, ErrCorrupt)
		}
		next := int64(-1)
		for _, e := range es {
			if e.typ == 0 || e.len == 0 {
				continue
			}
			if isExtended(e.typ) {
				if next < 0 {
					next = extStart + int64(e.start)
				}
				continue
			}
			if err := add(num, e, ebr, false); err != nil {
				return nil, err
			}
			num++
		}
		if next < 0 {
			return t, nil
		}
		if next < extStart || next >= extStart+extLen {
			return nil, fmt.Errorf("extended boot record link to sector %d leaves the extended partition: %w", next, ErrCorrupt)
		}
		ebr = next
	}
}
