package extfs

import (
	"io/fs"
	"time"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

// Inode mode types.
const (
	sIFMT   = 0xF000
	sIFSOCK = 0xC000
	sIFLNK  = 0xA000
	sIFREG  = 0x8000
	sIFBLK  = 0x6000
	sIFDIR  = 0x4000
	sIFCHR  = 0x2000
	sIFIFO  = 0x1000
)

// Inode flags.
const (
	flagIndex      = 0x1000
	flagHugeFile   = 0x40000
	flagExtents    = 0x80000
	flagEAInode    = 0x200000
	flagInlineData = 0x10000000
)

const rootIno = 2

// inode is one on-disk inode. raw is the whole inode record, so bytes this
// package does not interpret (in-inode extended attributes, checksums,
// project id) are written back unchanged.
type inode struct {
	num uint32
	raw []byte
}

func (in *inode) mode() uint16      { return le16(in.raw, 0x0) }
func (in *inode) setMode(m uint16)  { put16(in.raw, 0x0, m) }
func (in *inode) fileType() uint16  { return in.mode() & sIFMT }
func (in *inode) isDir() bool       { return in.fileType() == sIFDIR }
func (in *inode) isReg() bool       { return in.fileType() == sIFREG }
func (in *inode) isSymlink() bool   { return in.fileType() == sIFLNK }
func (in *inode) flags() uint32     { return le32(in.raw, 0x20) }
func (in *inode) setFlags(f uint32) { put32(in.raw, 0x20, f) }
func (in *inode) links() uint16     { return le16(in.raw, 0x1A) }
func (in *inode) setLinks(n uint16) { put16(in.raw, 0x1A, n) }
func (in *inode) iblock() []byte    { return in.raw[0x28:0x64] }
func (in *inode) fileACL() uint64   { return uint64(le32(in.raw, 0x68)) | uint64(le16(in.raw, 0x76))<<32 }
func (in *inode) setDtime(t uint32) { put32(in.raw, 0x14, t) }

func (in *inode) size() uint64 {
	return uint64(le32(in.raw, 0x4)) | uint64(le32(in.raw, 0x6C))<<32
}

func (in *inode) setSize(n uint64) {
	put32(in.raw, 0x4, uint32(n))
	put32(in.raw, 0x6C, uint32(n>>32))
}

func (in *inode) uid() uint32 { return uint32(le16(in.raw, 0x2)) | uint32(le16(in.raw, 0x78))<<16 }
func (in *inode) gid() uint32 { return uint32(le16(in.raw, 0x18)) | uint32(le16(in.raw, 0x7A))<<16 }

func (in *inode) setOwner(uid, gid uint32) {
	put16(in.raw, 0x2, uint16(uid))
	put16(in.raw, 0x78, uint16(uid>>16))
	put16(in.raw, 0x18, uint16(gid))
	put16(in.raw, 0x7A, uint16(gid>>16))
}

// blocks512 is i_blocks in 512-byte units.
func (in *inode) blocks512(sb *superblock) uint64 {
	n := uint64(le32(in.raw, 0x1C))
	if sb.roCompat&roCompatHugeFile != 0 {
		n |= uint64(le16(in.raw, 0x74)) << 32
		if in.flags()&flagHugeFile != 0 {
			n *= uint64(sb.blockSize() / 512)
		}
	}
	return n
}

// setBlocks sets i_blocks from a count of filesystem blocks.
func (in *inode) setBlocks(sb *superblock, fsBlocks uint64) {
	n := fsBlocks * uint64(sb.blockSize()/512)
	f := in.flags() &^ flagHugeFile
	if n>>32 != 0 && sb.roCompat&roCompatHugeFile != 0 && n>>48 != 0 {
		n = fsBlocks
		f |= flagHugeFile
	}
	in.setFlags(f)
	put32(in.raw, 0x1C, uint32(n))
	put16(in.raw, 0x74, uint16(n>>32))
}

// extraIsize is i_extra_isize, 0 for 128-byte inodes.
func (in *inode) extraIsize() int {
	if len(in.raw) <= 128 {
		return 0
	}
	n := int(le16(in.raw, 0x80))
	if 128+n > len(in.raw) {
		return 0
	}
	return n
}

// hasExtra tells whether the extra field ending at raw offset end exists.
func (in *inode) hasExtra(end int) bool { return 128+in.extraIsize() >= end }

func (in *inode) timeAt(secOff, extraOff int) time.Time {
	sec := int64(int32(le32(in.raw, secOff)))
	var nsec int64
	if in.hasExtra(extraOff + 4) {
		extra := le32(in.raw, extraOff)
		sec += int64(extra&3) << 32
		nsec = int64(extra >> 2)
		if nsec > 999999999 {
			nsec = 0
		}
	}
	return time.Unix(sec, nsec)
}

func (in *inode) setTimeAt(secOff, extraOff int, t time.Time) {
	sec := t.Unix()
	put32(in.raw, secOff, uint32(sec))
	if in.hasExtra(extraOff + 4) {
		epoch := uint32((sec-int64(int32(sec)))>>32) & 3
		put32(in.raw, extraOff, uint32(t.Nanosecond())<<2|epoch)
	}
}

func (in *inode) mtime() time.Time     { return in.timeAt(0x10, 0x88) }
func (in *inode) setAtime(t time.Time) { in.setTimeAt(0x8, 0x8C, t) }
func (in *inode) setMtime(t time.Time) { in.setTimeAt(0x10, 0x88, t) }
func (in *inode) setCtime(t time.Time) { in.setTimeAt(0xC, 0x84, t) }
func (in *inode) setCrtime(t time.Time) {
	if in.hasExtra(0x94) {
		in.setTimeAt(0x90, 0x94, t)
	}
}

// rdev decodes the device number of a character or block device inode.
func (in *inode) rdev() uint64 {
	b := in.iblock()
	if old := le32(b, 0); old != 0 {
		return uint64(old>>8&0xFF)<<8 | uint64(old&0xFF)
	}
	n := le32(b, 4)
	major := n >> 8 & 0xFFF
	minor := n&0xFF | n>>12&0xFFF00
	return uint64(major)<<8 | uint64(minor&0xFF) | uint64(minor>>8)<<20
}

// fsMode converts an inode mode to an fs.FileMode.
func fsMode(m uint16) fs.FileMode { return guestfs.FileMode(uint32(m)) }

// permBits converts the permission part of an fs.FileMode to inode bits.
func permBits(mode fs.FileMode) uint16 {
	m := uint16(mode.Perm())
	if mode&fs.ModeSetuid != 0 {
		m |= 0o4000
	}
	if mode&fs.ModeSetgid != 0 {
		m |= 0o2000
	}
	if mode&fs.ModeSticky != 0 {
		m |= 0o1000
	}
	return m
}

// Directory entry file types.
const (
	ftUnknown = 0
	ftReg     = 1
	ftDir     = 2
	ftChr     = 3
	ftBlk     = 4
	ftFifo    = 5
	ftSock    = 6
	ftSymlink = 7
)

func dirFileType(mode uint16) uint8 {
	switch mode & sIFMT {
	case sIFREG:
		return ftReg
	case sIFDIR:
		return ftDir
	case sIFCHR:
		return ftChr
	case sIFBLK:
		return ftBlk
	case sIFIFO:
		return ftFifo
	case sIFSOCK:
		return ftSock
	case sIFLNK:
		return ftSymlink
	}
	return ftUnknown
}

func ftMode(ft uint8) fs.FileMode {
	switch ft {
	case ftDir:
		return fs.ModeDir
	case ftSymlink:
		return fs.ModeSymlink
	case ftChr:
		return fs.ModeDevice | fs.ModeCharDevice
	case ftBlk:
		return fs.ModeDevice
	case ftFifo:
		return fs.ModeNamedPipe
	case ftSock:
		return fs.ModeSocket
	}
	return 0
}
