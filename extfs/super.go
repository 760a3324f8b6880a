package extfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

const (
	superOffset = 1024
	superSize   = 1024
	superMagic  = 0xEF53
)

// Feature bits, from the ext4 disk layout.
const (
	compatDirPrealloc  = 0x1
	compatImagicInodes = 0x2
	compatHasJournal   = 0x4
	compatExtAttr      = 0x8
	compatResizeInode  = 0x10
	compatDirIndex     = 0x20
	compatSparseSuper2 = 0x200
	compatFastCommit   = 0x400
	compatStableInodes = 0x800
	compatOrphanFile   = 0x1000

	incompatCompression = 0x1
	incompatFiletype    = 0x2
	incompatRecover     = 0x4
	incompatJournalDev  = 0x8
	incompatMetaBG      = 0x10
	incompatExtents     = 0x40
	incompat64bit       = 0x80
	incompatMMP         = 0x100
	incompatFlexBG      = 0x200
	incompatEAInode     = 0x400
	incompatDirData     = 0x1000
	incompatCsumSeed    = 0x2000
	incompatLargeDir    = 0x4000
	incompatInlineData  = 0x8000
	incompatEncrypt     = 0x10000
	incompatCasefold    = 0x20000

	roCompatSparseSuper   = 0x1
	roCompatLargeFile     = 0x2
	roCompatBtreeDir      = 0x4
	roCompatHugeFile      = 0x8
	roCompatGdtCsum       = 0x10
	roCompatDirNlink      = 0x20
	roCompatExtraIsize    = 0x40
	roCompatQuota         = 0x100
	roCompatBigalloc      = 0x200
	roCompatMetadataCsum  = 0x400
	roCompatReadonly      = 0x1000
	roCompatProject       = 0x2000
	roCompatVerity        = 0x8000
	roCompatOrphanPresent = 0x10000
)

var incompatNames = map[uint32]string{
	incompatCompression: "compression", incompatFiletype: "filetype", incompatRecover: "needs_recovery",
	incompatJournalDev: "journal_dev", incompatMetaBG: "meta_bg", incompatExtents: "extent",
	incompat64bit: "64bit", incompatMMP: "mmp", incompatFlexBG: "flex_bg", incompatEAInode: "ea_inode",
	incompatDirData: "dirdata", incompatCsumSeed: "metadata_csum_seed", incompatLargeDir: "large_dir",
	incompatInlineData: "inline_data", incompatEncrypt: "encrypt", incompatCasefold: "casefold",
}

var roCompatNames = map[uint32]string{
	roCompatSparseSuper: "sparse_super", roCompatLargeFile: "large_file", roCompatBtreeDir: "btree_dir",
	roCompatHugeFile: "huge_file", roCompatGdtCsum: "uninit_bg", roCompatDirNlink: "dir_nlink",
	roCompatExtraIsize: "extra_isize", roCompatQuota: "quota", roCompatBigalloc: "bigalloc",
	roCompatMetadataCsum: "metadata_csum", roCompatReadonly: "read-only", roCompatProject: "project",
	roCompatVerity: "verity", roCompatOrphanPresent: "orphan_present",
}

// Features this package reads, and the subset it writes.
const (
	readIncompat = incompatFiletype | incompatRecover | incompatMetaBG | incompatExtents |
		incompat64bit | incompatMMP | incompatFlexBG | incompatCsumSeed | incompatLargeDir
	writeIncompat = incompatFiletype | incompatRecover | incompatMetaBG | incompatExtents |
		incompat64bit | incompatFlexBG | incompatLargeDir
	readRoCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir | roCompatHugeFile |
		roCompatGdtCsum | roCompatDirNlink | roCompatExtraIsize | roCompatQuota | roCompatMetadataCsum |
		roCompatReadonly | roCompatProject | roCompatOrphanPresent | roCompatVerity
	writeRoCompat = roCompatSparseSuper | roCompatLargeFile | roCompatBtreeDir | roCompatHugeFile |
		roCompatGdtCsum | roCompatDirNlink | roCompatExtraIsize
)

// superblock is the parsed primary superblock. raw keeps every byte so
// fields this package does not know are written back unchanged.
type superblock struct {
	raw [superSize]byte

	inodesCount    uint32
	blocksCount    uint64
	freeBlocks     uint64
	freeInodes     uint32
	firstDataBlock uint32
	logBlockSize   uint32
	blocksPerGroup uint32
	inodesPerGroup uint32
	revLevel       uint32
	firstIno       uint32
	inodeSize      uint16
	compat         uint32
	incompat       uint32
	roCompat       uint32
	uuid           [16]byte
	volumeName     string
	journalInum    uint32
	journalDev     uint32
	hashSeed       [4]uint32
	defHashVersion uint8
	descSize       uint16
	firstMetaBG    uint32
	flags          uint32
	wantExtraIsize uint16
	reservedGDT    uint16
}

const (
	sbFlagSignedHash   = 0x1
	sbFlagUnsignedHash = 0x2
)

func le16(b []byte, off int) uint16     { return binary.LittleEndian.Uint16(b[off:]) }
func le32(b []byte, off int) uint32     { return binary.LittleEndian.Uint32(b[off:]) }
func put16(b []byte, off int, v uint16) { binary.LittleEndian.PutUint16(b[off:], v) }
func put32(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }

// parseSuperblock decodes and sanity-checks a superblock. The checks bound
// every size derived from it, so corrupt input gives an error, not a huge
// allocation.
func parseSuperblock(b []byte) (*superblock, error) {
	if len(b) < superSize {
		return nil, fmt.Errorf("superblock: short read: %w", ErrNotExt)
	}
	sb := &superblock{}
	copy(sb.raw[:], b)
	r := sb.raw[:]
	if le16(r, 0x38) != superMagic {
		return nil, fmt.Errorf("superblock: bad magic %#04x: %w", le16(r, 0x38), ErrNotExt)
	}
	sb.inodesCount = le32(r, 0x0)
	sb.blocksCount = uint64(le32(r, 0x4))
	sb.freeBlocks = uint64(le32(r, 0xC))
	sb.freeInodes = le32(r, 0x10)
	sb.firstDataBlock = le32(r, 0x14)
	sb.logBlockSize = le32(r, 0x18)
	sb.blocksPerGroup = le32(r, 0x20)
	sb.inodesPerGroup = le32(r, 0x28)
	sb.revLevel = le32(r, 0x4C)
	sb.firstIno = 11
	sb.inodeSize = 128
	if sb.revLevel >= 1 {
		sb.firstIno = le32(r, 0x54)
		sb.inodeSize = le16(r, 0x58)
		sb.compat = le32(r, 0x5C)
		sb.incompat = le32(r, 0x60)
		sb.roCompat = le32(r, 0x64)
	}
	copy(sb.uuid[:], r[0x68:0x78])
	sb.volumeName = strings.TrimRight(string(r[0x78:0x88]), "\x00")
	sb.reservedGDT = le16(r, 0xCE)
	sb.journalInum = le32(r, 0xE0)
	sb.journalDev = le32(r, 0xE4)
	for i := range 4 {
		sb.hashSeed[i] = le32(r, 0xEC+4*i)
	}
	sb.defHashVersion = r[0xFC]
	sb.descSize = 32
	if sb.incompat&incompat64bit != 0 {
		sb.descSize = le16(r, 0xFE)
		sb.blocksCount |= uint64(le32(r, 0x150)) << 32
		sb.freeBlocks |= uint64(le32(r, 0x158)) << 32
	}
	sb.firstMetaBG = le32(r, 0x104)
	sb.wantExtraIsize = le16(r, 0x15E)
	sb.flags = le32(r, 0x160)

	var errs []error
	if sb.logBlockSize > 6 {
		errs = append(errs, fmt.Errorf("block size 2^%d KiB is out of range", sb.logBlockSize))
	}
	bs := uint64(1024) << min(sb.logBlockSize, 6)
	if sb.blocksPerGroup == 0 || uint64(sb.blocksPerGroup) > 8*bs {
		errs = append(errs, fmt.Errorf("%d blocks per group is out of range", sb.blocksPerGroup))
	}
	if sb.inodesPerGroup == 0 || uint64(sb.inodesPerGroup) > 8*bs {
		errs = append(errs, fmt.Errorf("%d inodes per group is out of range", sb.inodesPerGroup))
	}
	if sb.inodeSize < 128 || uint64(sb.inodeSize) > bs || sb.inodeSize&(sb.inodeSize-1) != 0 {
		errs = append(errs, fmt.Errorf("inode size %d is invalid", sb.inodeSize))
	}
	if sb.incompat&incompat64bit != 0 && (sb.descSize < 64 || sb.descSize&(sb.descSize-1) != 0 || uint64(sb.descSize) > bs) {
		errs = append(errs, fmt.Errorf("group descriptor size %d is invalid", sb.descSize))
	}
	if sb.blocksCount <= uint64(sb.firstDataBlock) {
		errs = append(errs, fmt.Errorf("block count %d is too small", sb.blocksCount))
	}
	if (bs == 1024) != (sb.firstDataBlock == 1) {
		errs = append(errs, fmt.Errorf("first data block %d does not fit block size %d", sb.firstDataBlock, bs))
	}
	if sb.firstIno < 11 || sb.firstIno > sb.inodesCount {
		errs = append(errs, fmt.Errorf("first inode %d is invalid", sb.firstIno))
	}
	if len(errs) == 0 {
		groups := (sb.blocksCount - uint64(sb.firstDataBlock) + uint64(sb.blocksPerGroup) - 1) / uint64(sb.blocksPerGroup)
		if groups*uint64(sb.inodesPerGroup) != uint64(sb.inodesCount) {
			errs = append(errs, fmt.Errorf("inode count %d does not match %d groups of %d", sb.inodesCount, groups, sb.inodesPerGroup))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("superblock: %w: %w", ErrCorrupt, err)
	}
	return sb, nil
}

func (sb *superblock) blockSize() int { return 1024 << sb.logBlockSize }

func (sb *superblock) groupCount() uint32 {
	return uint32((sb.blocksCount - uint64(sb.firstDataBlock) + uint64(sb.blocksPerGroup) - 1) / uint64(sb.blocksPerGroup))
}

// serialize writes the counters this package changes back into raw.
func (sb *superblock) serialize() []byte {
	r := sb.raw[:]
	put32(r, 0xC, uint32(sb.freeBlocks))
	put32(r, 0x10, sb.freeInodes)
	put32(r, 0x60, sb.incompat)
	put32(r, 0x64, sb.roCompat)
	if sb.incompat&incompat64bit != 0 {
		put32(r, 0x158, uint32(sb.freeBlocks>>32))
	}
	return r
}

// featureNames lists the names of bits set in v, unknown ones as hex.
func featureNames(v uint32, names map[uint32]string) []string {
	var out []string
	for bit := uint32(1); bit != 0; bit <<= 1 {
		if v&bit == 0 {
			continue
		}
		if n, ok := names[bit]; ok {
			out = append(out, n)
		} else {
			out = append(out, fmt.Sprintf("%#x", bit))
		}
	}
	return out
}

// hasSuper tells whether group g holds a superblock backup.
func (sb *superblock) hasSuper(g uint32) bool {
	if g == 0 {
		return true
	}
	if sb.compat&compatSparseSuper2 != 0 {
		return g == le32(sb.raw[:], 0x24C) || g == le32(sb.raw[:], 0x250)
	}
	if sb.roCompat&roCompatSparseSuper == 0 {
		return true
	}
	if g == 1 {
		return true
	}
	for _, p := range []uint32{3, 5, 7} {
		n := p
		for n < g {
			n *= p
		}
		if n == g {
			return true
		}
	}
	return false
}

// groupFirstBlock is the first block of group g.
func (sb *superblock) groupFirstBlock(g uint32) uint64 {
	return uint64(sb.firstDataBlock) + uint64(g)*uint64(sb.blocksPerGroup)
}

// groupBlocks is the number of blocks in group g (the last may be short).
func (sb *superblock) groupBlocks(g uint32) uint32 {
	if g == sb.groupCount()-1 {
		return uint32(sb.blocksCount - sb.groupFirstBlock(g))
	}
	return sb.blocksPerGroup
}

func (sb *superblock) descPerBlock() uint32 { return uint32(sb.blockSize()) / uint32(sb.descSize) }

// gdtBlocks is the number of blocks of the classic group descriptor table.
func (sb *superblock) gdtBlocks() uint32 {
	dpb := sb.descPerBlock()
	return (sb.groupCount() + dpb - 1) / dpb
}

// descBlock is the block holding descriptor block i (of groupCount/descPerBlock).
func (sb *superblock) descBlock(i uint32) uint64 {
	first := uint64(sb.firstDataBlock) + 1
	if sb.incompat&incompatMetaBG == 0 || i < sb.firstMetaBG {
		return first + uint64(i)
	}
	g := i * sb.descPerBlock()
	b := sb.groupFirstBlock(g)
	if sb.hasSuper(g) {
		b++
	}
	return b
}

// groupMetaBlocks returns the number of blocks at the start of group g
// taken by the superblock backup, group descriptors and reserved GDT blocks.
func (sb *superblock) groupMetaBlocks(g uint32) uint32 {
	n := uint32(0)
	if sb.hasSuper(g) {
		n++
	}
	if sb.incompat&incompatMetaBG == 0 {
		if sb.hasSuper(g) {
			n += sb.gdtBlocks() + uint32(sb.reservedGDT)
		}
		return n
	}
	dpb := sb.descPerBlock()
	mg := g / dpb
	if mg < sb.firstMetaBG {
		if sb.hasSuper(g) {
			n += sb.firstMetaBG + uint32(sb.reservedGDT)
		}
		return n
	}
	r := g % dpb
	if r == 0 || r == 1 || r == dpb-1 {
		n++
	}
	return n
}

// groupDesc is a view of one group descriptor.
type groupDesc []byte

func (g groupDesc) is64() bool { return len(g) >= 64 }

func (g groupDesc) lohi32(lo, hi int) uint64 {
	v := uint64(le32(g, lo))
	if g.is64() {
		v |= uint64(le32(g, hi)) << 32
	}
	return v
}

func (g groupDesc) lohi16(lo, hi int) uint32 {
	v := uint32(le16(g, lo))
	if g.is64() {
		v |= uint32(le16(g, hi)) << 16
	}
	return v
}

func (g groupDesc) set16(lo, hi int, v uint32) {
	put16(g, lo, uint16(v))
	if g.is64() {
		put16(g, hi, uint16(v>>16))
	}
}

func (g groupDesc) blockBitmap() uint64  { return g.lohi32(0x0, 0x20) }
func (g groupDesc) inodeBitmap() uint64  { return g.lohi32(0x4, 0x24) }
func (g groupDesc) inodeTable() uint64   { return g.lohi32(0x8, 0x28) }
func (g groupDesc) freeBlocks() uint32   { return g.lohi16(0xC, 0x2C) }
func (g groupDesc) freeInodes() uint32   { return g.lohi16(0xE, 0x2E) }
func (g groupDesc) usedDirs() uint32     { return g.lohi16(0x10, 0x30) }
func (g groupDesc) flags() uint16        { return le16(g, 0x12) }
func (g groupDesc) itableUnused() uint32 { return g.lohi16(0x1C, 0x32) }

func (g groupDesc) setFreeBlocks(v uint32)   { g.set16(0xC, 0x2C, v) }
func (g groupDesc) setFreeInodes(v uint32)   { g.set16(0xE, 0x2E, v) }
func (g groupDesc) setUsedDirs(v uint32)     { g.set16(0x10, 0x30, v) }
func (g groupDesc) setFlags(v uint16)        { put16(g, 0x12, v) }
func (g groupDesc) setItableUnused(v uint32) { g.set16(0x1C, 0x32, v) }

const (
	bgInodeUninit = 0x1
	bgBlockUninit = 0x2
	bgInodeZeroed = 0x4
)

// descChecksum computes the uninit_bg (gdt_csum) checksum of descriptor g.
func (sb *superblock) descChecksum(group uint32, g groupDesc) uint16 {
	crc := crc16(0xFFFF, sb.uuid[:])
	var le [4]byte
	put32(le[:], 0, group)
	crc = crc16(crc, le[:])
	crc = crc16(crc, g[:0x1E])
	if len(g) > 0x20 {
		crc = crc16(crc, g[0x20:])
	}
	return crc
}

var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// crc16 is the reflected CRC-16 (polynomial 0x8005) the kernel's crc16 uses.
func crc16(crc uint16, b []byte) uint16 {
	for _, c := range b {
		crc = crc>>8 ^ crc16Table[byte(crc)^c]
	}
	return crc
}
