package guestgen

import "encoding/binary"

// ntfsBootSector is the first sector of an NTFS volume of the given size
// (in sectors) placed at hiddenSectors: enough of a boot sector (BPB and
// NTFS extended BPB) for tools to see an NTFS filesystem. There is no
// boot code and no file system behind it.
func ntfsBootSector(totalSectors, hiddenSectors uint64, serial uint64) []byte {
	b := make([]byte, sectorSize)
	le := binary.LittleEndian
	copy(b[0:], []byte{0xeb, 0x52, 0x90})
	copy(b[3:], "NTFS    ")
	le.PutUint16(b[0x0b:], sectorSize) // bytes per sector
	b[0x0d] = 8                        // sectors per cluster
	b[0x15] = 0xf8                     // media descriptor: fixed disk
	le.PutUint16(b[0x18:], sectors)
	le.PutUint16(b[0x1a:], heads)
	le.PutUint32(b[0x1c:], uint32(hiddenSectors))
	b[0x24] = 0x80 // BIOS drive number
	b[0x26] = 0x80 // extended boot signature, as Windows writes it
	le.PutUint64(b[0x28:], totalSectors-1)
	clusters := (totalSectors - 1) / 8
	le.PutUint64(b[0x30:], 4)          // $MFT cluster (the volume is too small for Windows' 0xc0000)
	le.PutUint64(b[0x38:], clusters/2) // $MFTMirr cluster
	b[0x40] = 0xf6                     // MFT record: 2^10 = 1024 bytes
	b[0x44] = 1                        // index record: 1 cluster
	le.PutUint64(b[0x48:], serial)
	b[510], b[511] = 0x55, 0xaa
	return b
}

// mftRecord is an empty, in-use MFT file record header ("FILE"), with the
// update sequence fixed up as NTFS stores it.
func mftRecord(number uint32) []byte {
	const size = 1024
	b := make([]byte, size)
	le := binary.LittleEndian
	copy(b[0:], "FILE")
	le.PutUint16(b[4:], 0x30) // update sequence array offset
	le.PutUint16(b[6:], 3)    // its size in words: 1 + one per sector
	le.PutUint16(b[0x10:], 1) // sequence number
	le.PutUint16(b[0x12:], 1) // hard links
	le.PutUint16(b[0x14:], 0x38)
	le.PutUint16(b[0x16:], 1) // in use
	le.PutUint32(b[0x18:], 0x38+8)
	le.PutUint32(b[0x1c:], size)
	le.PutUint32(b[0x2c:], number)
	le.PutUint32(b[0x38:], 0xffffffff) // end of attributes
	// Update sequence: number 1, saved words 0; every sector ends in it.
	le.PutUint16(b[0x30:], 1)
	le.PutUint16(b[sectorSize-2:], 1)
	le.PutUint16(b[size-2:], 1)
	return b
}
