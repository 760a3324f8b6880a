package assemble

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/xen2kvm/xen2kvm/diskimg"
)

// identify reads the signatures of the filesystems and swap areas a
// RHEL-era guest may have. It returns "" for anything else and "ext" for
// ext2/3/4 (extfs tells which).
func identify(dev diskimg.Device) (typ, label, uuid string, err error) {
	const n = 8192
	b := make([]byte, min(n, dev.Size()))
	if _, err := dev.ReadAt(b, 0); err != nil && err != io.EOF {
		return "", "", "", fmt.Errorf("reading the first %d bytes: %w", len(b), err)
	}
	b = append(b, make([]byte, n-len(b))...)
	switch {
	case binary.LittleEndian.Uint16(b[1080:]) == 0xEF53:
		sb := b[1024:]
		return "ext", cstring(sb[120:136]), formatUUID(sb[104:120]), nil
	case isSwap(b, dev.Size()):
		return "swap", cstring(b[1024+28 : 1024+44]), formatUUID(b[1024+12 : 1024+28]), nil
	case string(b[:4]) == "XFSB":
		return "xfs", cstring(b[108:120]), formatUUID(b[32:48]), nil
	case string(b[3:11]) == "NTFS    ":
		return "ntfs", "", fmt.Sprintf("%016X", binary.LittleEndian.Uint64(b[72:])), nil
	case b[510] == 0x55 && b[511] == 0xAA && (string(b[54:62]) == "FAT12   " || string(b[54:62]) == "FAT16   "):
		return "vfat", strings.TrimRight(string(b[43:54]), " "), fmt.Sprintf("%04X-%04X", binary.LittleEndian.Uint16(b[41:]), binary.LittleEndian.Uint16(b[39:])), nil
	case b[510] == 0x55 && b[511] == 0xAA && string(b[82:90]) == "FAT32   ":
		return "vfat", strings.TrimRight(string(b[71:82]), " "), fmt.Sprintf("%04X-%04X", binary.LittleEndian.Uint16(b[69:]), binary.LittleEndian.Uint16(b[67:])), nil
	}
	return "", "", "", nil
}

// extType names an ext filesystem from its superblock features the way
// blkid does: ext4 when it uses a feature ext3 lacks, ext3 with a journal,
// else ext2.
func extType(dev diskimg.Device) string {
	sb := make([]byte, 1024)
	if _, err := dev.ReadAt(sb, 1024); err != nil && err != io.EOF {
		return "ext2"
	}
	compat := binary.LittleEndian.Uint32(sb[92:])
	incompat := binary.LittleEndian.Uint32(sb[96:])
	roCompat := binary.LittleEndian.Uint32(sb[100:])
	const (
		ext3Incompat = 0x2 | 0x4 | 0x8 | 0x10 // filetype, recover, journal_dev, meta_bg
		ext3RoCompat = 0x1 | 0x2 | 0x4        // sparse_super, large_file, btree_dir
		hasJournal   = 0x4
	)
	switch {
	case incompat&^ext3Incompat != 0 || roCompat&^ext3RoCompat != 0:
		return "ext4"
	case compat&hasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

// isSwap looks for a Linux swap signature at the end of the first page,
// for the page sizes a guest may have used (x86 uses 4096).
func isSwap(b []byte, size int64) bool {
	const page = 4096
	if size < page {
		return false
	}
	sig := string(b[page-10 : page])
	return sig == "SWAPSPACE2" || sig == "SWAP-SPACE"
}

// formatUUID prints 16 bytes as a lower-case 8-4-4-4-12 UUID, or "" for
// all zeros.
func formatUUID(u []byte) string {
	zero := true
	for _, c := range u {
		if c != 0 {
			zero = false
		}
	}
	if zero {
		return ""
	}
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

func cstring(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}
