package part

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"unicode/utf16"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/internal/blk"
)

const (
	gptSignature           = "EFI PART"
	gptHeaderMin           = 92
	maxGPTEntries          = 1 << 14
	maxGPTArray            = 4 << 20
	attrLegacyBIOSBootable = 1 << 2
)

// errNoSignature wraps ErrCorrupt: a protective MBR promised a GPT.
var errNoSignature = fmt.Errorf("no GPT header signature: %w", ErrCorrupt)

type gptHeader struct {
	myLBA, altLBA           uint64
	firstUsable, lastUsable uint64
	diskGUID                [16]byte
	entriesLBA              uint64
	numEntries, entrySize   uint32
	entriesCRC              uint32
}

// readGPT reads the primary GPT and falls back to the backup at the end of
// the disk. It tries 512- and 4096-byte sectors.
func readGPT(dev diskimg.Device) (*Table, error) {
	var first, found error
	for _, ss := range []int64{512, 4096} {
		t, err := readGPTSectorSize(dev, ss)
		if err == nil {
			return t, nil
		}
		if first == nil {
			first = err
		}
		if found == nil && !errors.Is(err, errNoSignature) {
			found = err
		}
	}
	if found != nil {
		// Report the sector size at which a GPT header was found.
		return nil, fmt.Errorf("reading GPT: %w", found)
	}
	return nil, fmt.Errorf("reading GPT: %w", first)
}

func readGPTSectorSize(dev diskimg.Device, ss int64) (*Table, error) {
	size := dev.Size()
	if size < 3*ss {
		return nil, fmt.Errorf("%d-byte disk too small for a GPT: %w", size, ErrCorrupt)
	}
	lastLBA := uint64(size/ss) - 1
	h, entries, err := readGPTAt(dev, ss, 1, lastLBA)
	if err != nil {
		var err2 error
		h, entries, err2 = readGPTAt(dev, ss, lastLBA, lastLBA)
		if err2 != nil {
			if errors.Is(err, errNoSignature) && errors.Is(err2, errNoSignature) {
				return nil, fmt.Errorf("%d-byte sectors: %w", ss, errNoSignature)
			}
			return nil, fmt.Errorf("%d-byte sectors: primary header: %w; backup header: %w", ss, err, err2)
		}
	}
	t := &Table{Scheme: GPT, SectorSize: int(ss), ID: formatGUID(h.diskGUID)}
	for i := range int(h.numEntries) {
		e := entries[i*int(h.entrySize):][:h.entrySize]
		var typ, uniq [16]byte
		copy(typ[:], e[0:16])
		copy(uniq[:], e[16:32])
		if typ == ([16]byte{}) {
			continue
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		attrs := binary.LittleEndian.Uint64(e[48:])
		num := i + 1
		if last < first || first > lastLBA || first == 0 {
			return nil, fmt.Errorf("GPT partition %d spans sectors %d-%d of a %d-sector disk: %w", num, first, last, lastLBA+1, ErrCorrupt)
		}
		start := int64(first) * ss
		length := int64(min(last, lastLBA)-first+1) * ss
		t.Partitions = append(t.Partitions, &Partition{
			Number:   num,
			Type:     formatGUID(typ),
			Start:    start,
			Size:     length,
			Cut:      int64(last-first+1)*ss - length,
			Bootable: attrs&attrLegacyBIOSBootable != 0,
			Name:     decodeName(e[56:min(len(e), 56+72)]),
			UUID:     formatGUID(uniq),
			disk:     dev,
		})
	}
	return t, nil
}

// readGPTAt reads and checks the GPT header at lba and its entry array.
func readGPTAt(dev diskimg.Device, ss int64, lba, lastLBA uint64) (*gptHeader, []byte, error) {
	buf := make([]byte, ss)
	if _, err := blk.ReadAtFull(dev, buf, int64(lba)*ss); err != nil {
		return nil, nil, fmt.Errorf("reading sector %d: %w", lba, err)
	}
	if string(buf[:8]) != gptSignature {
		return nil, nil, fmt.Errorf("sector %d: %w", lba, errNoSignature)
	}
	hsize := binary.LittleEndian.Uint32(buf[12:])
	if hsize < gptHeaderMin || int64(hsize) > ss {
		return nil, nil, fmt.Errorf("GPT header size %d: %w", hsize, ErrCorrupt)
	}
	want := binary.LittleEndian.Uint32(buf[16:])
	hdr := bytes.Clone(buf[:hsize])
	clear(hdr[16:20])
	if got := crc32.ChecksumIEEE(hdr); got != want {
		return nil, nil, fmt.Errorf("GPT header checksum %08x, want %08x: %w", got, want, ErrCorrupt)
	}
	h := &gptHeader{
		myLBA:       binary.LittleEndian.Uint64(buf[24:]),
		altLBA:      binary.LittleEndian.Uint64(buf[32:]),
		firstUsable: binary.LittleEndian.Uint64(buf[40:]),
		lastUsable:  binary.LittleEndian.Uint64(buf[48:]),
		entriesLBA:  binary.LittleEndian.Uint64(buf[72:]),
		numEntries:  binary.LittleEndian.Uint32(buf[80:]),
		entrySize:   binary.LittleEndian.Uint32(buf[84:]),
		entriesCRC:  binary.LittleEndian.Uint32(buf[88:]),
	}
	copy(h.diskGUID[:], buf[56:72])
	if h.myLBA != lba {
		return nil, nil, fmt.Errorf("GPT header at sector %d says it is at %d: %w", lba, h.myLBA, ErrCorrupt)
	}
	if h.entrySize < 128 || h.entrySize%8 != 0 || h.numEntries > maxGPTEntries ||
		uint64(h.numEntries)*uint64(h.entrySize) > maxGPTArray {
		return nil, nil, fmt.Errorf("GPT entry array of %d entries of %d bytes: %w", h.numEntries, h.entrySize, ErrCorrupt)
	}
	n := int64(h.numEntries) * int64(h.entrySize)
	if h.entriesLBA == 0 || h.entriesLBA > lastLBA || int64(h.entriesLBA)*ss+n > int64(lastLBA+1)*ss {
		return nil, nil, fmt.Errorf("GPT entry array at sector %d is outside the disk: %w", h.entriesLBA, ErrCorrupt)
	}
	entries := make([]byte, n)
	if _, err := blk.ReadAtFull(dev, entries, int64(h.entriesLBA)*ss); err != nil {
		return nil, nil, fmt.Errorf("reading GPT entries at sector %d: %w", h.entriesLBA, err)
	}
	if got := crc32.ChecksumIEEE(entries); got != h.entriesCRC {
		return nil, nil, fmt.Errorf("GPT entry array checksum %08x, want %08x: %w", got, h.entriesCRC, ErrCorrupt)
	}
	return h, entries, nil
}

// formatGUID prints a GUID in its mixed-endian text form, upper case.
func formatGUID(g [16]byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(g[0:4]),
		binary.LittleEndian.Uint16(g[4:6]),
		binary.LittleEndian.Uint16(g[6:8]),
		g[8:10], g[10:16])
}

// decodeName decodes a NUL-terminated UTF-16LE partition name.
func decodeName(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := binary.LittleEndian.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return string(utf16.Decode(u))
}
