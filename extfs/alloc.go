package extfs

import (
	"fmt"
	"syscall"
)

func (f *FS) hasGdtCsum() bool { return f.sb.roCompat&roCompatGdtCsum != 0 }

func setBit(b []byte, i uint32)       { b[i/8] |= 1 << (i % 8) }
func clearBit(b []byte, i uint32)     { b[i/8] &^= 1 << (i % 8) }
func testBit(b []byte, i uint32) bool { return b[i/8]&(1<<(i%8)) != 0 }
func markEnd(b []byte, from, to uint32) {
	to = min(to, uint32(len(b)*8))
	for i := from; i < to; i++ {
		setBit(b, i)
	}
}

// blockBitmap returns the block bitmap of group g, computing it for a group
// whose bitmap is still uninitialised (uninit_bg).
func (f *FS) blockBitmap(g uint32) ([]byte, error) {
	d := f.desc(g)
	if !f.hasGdtCsum() || d.flags()&bgBlockUninit == 0 {
		return f.readBlock(d.blockBitmap())
	}
	b := make([]byte, f.bs)
	first := f.sb.groupFirstBlock(g)
	n := f.sb.groupBlocks(g)
	markEnd(b, 0, f.sb.groupMetaBlocks(g))
	itBlocks := (uint64(f.sb.inodesPerGroup)*uint64(f.sb.inodeSize) + uint64(f.bs) - 1) / uint64(f.bs)
	mark := func(blk uint64) {
		if blk >= first && blk < first+uint64(n) {
			setBit(b, uint32(blk-first))
		}
	}
	for h := range f.ngroups {
		hd := f.desc(h)
		mark(hd.blockBitmap())
		mark(hd.inodeBitmap())
		for i := range itBlocks {
			mark(hd.inodeTable() + i)
		}
	}
	markEnd(b, n, uint32(f.bs*8))
	return b, nil
}

// putBlockBitmap stages the block bitmap of group g and marks it initialised.
func (f *FS) putBlockBitmap(g uint32, b []byte) {
	d := f.desc(g)
	f.writeBlock(d.blockBitmap(), b)
	if d.flags()&bgBlockUninit != 0 {
		d.setFlags(d.flags() &^ bgBlockUninit)
	}
	f.gdDirty = true
}

func (f *FS) inodeBitmap(g uint32) ([]byte, error) {
	d := f.desc(g)
	if !f.hasGdtCsum() || d.flags()&bgInodeUninit == 0 {
		return f.readBlock(d.inodeBitmap())
	}
	b := make([]byte, f.bs)
	markEnd(b, f.sb.inodesPerGroup, uint32(f.bs*8))
	return b, nil
}

// run is a range of physical blocks.
type run struct {
	start, length uint64
}

func errNoSpace(what string) error {
	return fmt.Errorf("no free %s: %w", what, syscall.ENOSPC)
}

// allocBlocks allocates n blocks, starting the search in group goal.
func (f *FS) allocBlocks(goal uint32, n uint64) ([]run, error) {
	if n == 0 {
		return nil, nil
	}
	if f.sb.freeBlocks < n {
		return nil, errNoSpace("blocks")
	}
	var runs []run
	need := n
	for i := range f.ngroups {
		g := (goal + i) % f.ngroups
		d := f.desc(g)
		if d.freeBlocks() == 0 {
			continue
		}
		bm, err := f.blockBitmap(g)
		if err != nil {
			return nil, err
		}
		first := f.sb.groupFirstBlock(g)
		cnt := f.sb.groupBlocks(g)
		took := uint32(0)
		for bit := uint32(0); bit < cnt && need > 0; bit++ {
			if bm[bit/8] == 0xFF && bit%8 == 0 {
				bit += 7
				continue
			}
			if testBit(bm, bit) {
				continue
			}
			setBit(bm, bit)
			took++
			need--
			blk := first + uint64(bit)
			if k := len(runs); k > 0 && runs[k-1].start+runs[k-1].length == blk {
				runs[k-1].length++
			} else {
				runs = append(runs, run{blk, 1})
			}
		}
		if took == 0 {
			continue
		}
		if took > d.freeBlocks() {
			return nil, fmt.Errorf("group %d: bitmap has more free blocks than its descriptor says: %w", g, ErrCorrupt)
		}
		d.setFreeBlocks(d.freeBlocks() - took)
		f.putBlockBitmap(g, bm)
		f.sb.freeBlocks -= uint64(took)
		f.sbDirty = true
		if need == 0 {
			return runs, nil
		}
	}
	return nil, errNoSpace("blocks")
}

// freeBlockRuns releases blocks.
func (f *FS) freeBlockRuns(runs []run) error {
	for _, r := range runs {
		for r.length > 0 {
			if r.start < uint64(f.sb.firstDataBlock) || r.start >= f.sb.blocksCount {
				return fmt.Errorf("freeing block %d outside the filesystem: %w", r.start, ErrCorrupt)
			}
			g := uint32((r.start - uint64(f.sb.firstDataBlock)) / uint64(f.sb.blocksPerGroup))
			first := f.sb.groupFirstBlock(g)
			bit := uint32(r.start - first)
			cnt := min(uint64(f.sb.groupBlocks(g)-bit), r.length)
			bm, err := f.blockBitmap(g)
			if err != nil {
				return err
			}
			freed := uint32(0)
			for i := range uint32(cnt) {
				if testBit(bm, bit+i) {
					clearBit(bm, bit+i)
					freed++
				}
			}
			d := f.desc(g)
			d.setFreeBlocks(d.freeBlocks() + freed)
			f.putBlockBitmap(g, bm)
			f.sb.freeBlocks += uint64(freed)
			f.sbDirty = true
			r.start += cnt
			r.length -= cnt
		}
	}
	return nil
}

// allocInode allocates an inode, starting the search in group goal.
func (f *FS) allocInode(goal uint32, dir bool) (uint32, error) {
	if f.sb.freeInodes == 0 {
		return 0, errNoSpace("inodes")
	}
	ipg := f.sb.inodesPerGroup
	for i := range f.ngroups {
		g := (goal + i) % f.ngroups
		d := f.desc(g)
		if d.freeInodes() == 0 {
			continue
		}
		bm, err := f.inodeBitmap(g)
		if err != nil {
			return 0, err
		}
		start := uint32(0)
		if g == 0 {
			start = f.sb.firstIno - 1
		}
		for bit := start; bit < ipg; bit++ {
			if testBit(bm, bit) {
				continue
			}
			setBit(bm, bit)
			f.writeBlock(d.inodeBitmap(), bm)
			flags := d.flags() &^ bgInodeUninit
			d.setFlags(flags)
			d.setFreeInodes(d.freeInodes() - 1)
			if dir {
				d.setUsedDirs(d.usedDirs() + 1)
			}
			if f.hasGdtCsum() {
				if used := ipg - d.itableUnused(); bit >= used {
					d.setItableUnused(ipg - bit - 1)
				}
			}
			f.gdDirty = true
			f.sb.freeInodes--
			f.sbDirty = true
			return g*ipg + bit + 1, nil
		}
	}
	return 0, errNoSpace("inodes")
}

func (f *FS) freeInodeNum(n uint32, dir bool) error {
	g := (n - 1) / f.sb.inodesPerGroup
	bit := (n - 1) % f.sb.inodesPerGroup
	bm, err := f.inodeBitmap(g)
	if err != nil {
		return err
	}
	if !testBit(bm, bit) {
		return fmt.Errorf("inode %d is already free: %w", n, ErrCorrupt)
	}
	clearBit(bm, bit)
	d := f.desc(g)
	f.writeBlock(d.inodeBitmap(), bm)
	d.setFreeInodes(d.freeInodes() + 1)
	if dir && d.usedDirs() > 0 {
		d.setUsedDirs(d.usedDirs() - 1)
	}
	f.gdDirty = true
	f.sb.freeInodes++
	f.sbDirty = true
	return nil
}

func (f *FS) inodeGroup(n uint32) uint32 { return (n - 1) / f.sb.inodesPerGroup }

// updateChecksums recomputes the group descriptor checksums.
func (f *FS) updateChecksums() {
	if !f.hasGdtCsum() {
		return
	}
	for g := range f.ngroups {
		d := f.desc(g)
		put16(d, 0x1E, f.sb.descChecksum(g, d))
	}
}
