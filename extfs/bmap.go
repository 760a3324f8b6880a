package extfs

import (
	"fmt"
	"sort"
)

// extent maps length logical blocks starting at logical to physical
// blocks starting at phys. uninit extents read as zeros.
type extent struct {
	logical uint64
	phys    uint64
	length  uint64
	uninit  bool
}

// blockMap is the resolved mapping of an inode: its data extents sorted by
// logical block, and the metadata blocks (indirect blocks, extent tree
// nodes) that hold the mapping.
type blockMap struct {
	extents []extent
	meta    []uint64
}

// dataBlocks counts mapped data blocks.
func (m *blockMap) dataBlocks() uint64 {
	var n uint64
	for _, e := range m.extents {
		n += e.length
	}
	return n
}

// lookup finds the extent holding logical block lb, or nil for a hole.
func (m *blockMap) lookup(lb uint64) *extent {
	i := sort.Search(len(m.extents), func(i int) bool { return m.extents[i].logical+m.extents[i].length > lb })
	if i < len(m.extents) && m.extents[i].logical <= lb {
		return &m.extents[i]
	}
	return nil
}

const (
	extentMagic    = 0xF30A
	maxExtentDepth = 5
	maxInitLen     = 32768
)

// mapInode resolves the block mapping of an inode.
func (f *FS) mapInode(in *inode) (*blockMap, error) {
	m := &blockMap{}
	if in.isSymlink() && f.isFastSymlink(in) {
		return m, nil
	}
	if in.flags()&flagInlineData != 0 {
		return nil, fmt.Errorf("inode %d: inline data: %w", in.num, ErrUnsupported)
	}
	switch in.fileType() {
	case sIFCHR, sIFBLK, sIFIFO, sIFSOCK:
		return m, nil
	}
	var budget = f.sb.blocksCount // a mapping cannot hold more blocks than the filesystem
	var err error
	if in.flags()&flagExtents != 0 {
		err = f.walkExtents(in, in.iblock(), -1, m, &budget)
	} else {
		err = f.walkBlockMap(in, m, &budget)
	}
	if err != nil {
		return nil, err
	}
	sort.Slice(m.extents, func(i, j int) bool { return m.extents[i].logical < m.extents[j].logical })
	for i := 1; i < len(m.extents); i++ {
		if m.extents[i].logical < m.extents[i-1].logical+m.extents[i-1].length {
			return nil, fmt.Errorf("inode %d: overlapping extents at logical block %d: %w", in.num, m.extents[i].logical, ErrCorrupt)
		}
	}
	return m, nil
}

func (f *FS) checkBlock(in *inode, b uint64) error {
	if b < uint64(f.sb.firstDataBlock) || b >= f.sb.blocksCount {
		return fmt.Errorf("inode %d: block %d outside the filesystem: %w", in.num, b, ErrCorrupt)
	}
	return nil
}

func (f *FS) spend(in *inode, budget *uint64, n uint64) error {
	if n > *budget {
		return fmt.Errorf("inode %d: maps more blocks than the filesystem has: %w", in.num, ErrCorrupt)
	}
	*budget -= n
	return nil
}

// walkExtents walks an extent tree node. wantDepth is -1 at the root.
func (f *FS) walkExtents(in *inode, node []byte, wantDepth int, m *blockMap, budget *uint64) error {
	if len(node) < 12 || le16(node, 0) != extentMagic {
		return fmt.Errorf("inode %d: bad extent header: %w", in.num, ErrCorrupt)
	}
	entries, maxEntries, depth := int(le16(node, 2)), int(le16(node, 4)), int(le16(node, 6))
	if entries > maxEntries || 12+12*maxEntries > len(node) {
		return fmt.Errorf("inode %d: extent node with %d/%d entries: %w", in.num, entries, maxEntries, ErrCorrupt)
	}
	if depth > maxExtentDepth || (wantDepth >= 0 && depth != wantDepth) {
		return fmt.Errorf("inode %d: extent node depth %d: %w", in.num, depth, ErrCorrupt)
	}
	for i := range entries {
		e := node[12+12*i:]
		lblk := uint64(le32(e, 0))
		if depth == 0 {
			l := uint64(le16(e, 4))
			uninit := false
			if l > maxInitLen {
				l -= maxInitLen
				uninit = true
			}
			phys := uint64(le16(e, 6))<<32 | uint64(le32(e, 8))
			if l == 0 {
				continue
			}
			if err := f.checkBlock(in, phys); err != nil {
				return err
			}
			if err := f.checkBlock(in, phys+l-1); err != nil {
				return err
			}
			if err := f.spend(in, budget, l); err != nil {
				return err
			}
			m.extents = append(m.extents, extent{logical: lblk, phys: phys, length: l, uninit: uninit})
			continue
		}
		child := uint64(le16(e, 8))<<32 | uint64(le32(e, 4))
		if err := f.checkBlock(in, child); err != nil {
			return err
		}
		if err := f.spend(in, budget, 1); err != nil {
			return err
		}
		m.meta = append(m.meta, child)
		b, err := f.readBlock(child)
		if err != nil {
			return fmt.Errorf("inode %d: extent tree: %w", in.num, err)
		}
		if err := f.walkExtents(in, b, depth-1, m, budget); err != nil {
			return err
		}
	}
	return nil
}

// walkBlockMap walks the classic direct/indirect block map.
func (f *FS) walkBlockMap(in *inode, m *blockMap, budget *uint64) error {
	ib := in.iblock()
	add := func(lb, pb uint64) error {
		if err := f.checkBlock(in, pb); err != nil {
			return err
		}
		if err := f.spend(in, budget, 1); err != nil {
			return err
		}
		if n := len(m.extents); n > 0 {
			last := &m.extents[n-1]
			if last.logical+last.length == lb && last.phys+last.length == pb {
				last.length++
				return nil
			}
		}
		m.extents = append(m.extents, extent{logical: lb, phys: pb, length: 1})
		return nil
	}
	for i := range 12 {
		if pb := uint64(le32(ib, 4*i)); pb != 0 {
			if err := add(uint64(i), pb); err != nil {
				return err
			}
		}
	}
	ppb := uint64(f.bs / 4)
	var walk func(blk uint64, level int, base uint64) error
	walk = func(blk uint64, level int, base uint64) error {
		if err := f.checkBlock(in, blk); err != nil {
			return err
		}
		if err := f.spend(in, budget, 1); err != nil {
			return err
		}
		m.meta = append(m.meta, blk)
		b, err := f.readBlock(blk)
		if err != nil {
			return fmt.Errorf("inode %d: indirect block: %w", in.num, err)
		}
		span := uint64(1)
		for range level - 1 {
			span *= ppb
		}
		for i := range ppb {
			pb := uint64(le32(b, int(4*i)))
			if pb == 0 {
				continue
			}
			lb := base + i*span
			if level == 1 {
				if err := add(lb, pb); err != nil {
					return err
				}
			} else if err := walk(pb, level-1, lb); err != nil {
				return err
			}
		}
		return nil
	}
	base := uint64(12)
	span := ppb
	for level := 1; level <= 3; level++ {
		if pb := uint64(le32(ib, 4*(11+level))); pb != 0 {
			if err := walk(pb, level, base); err != nil {
				return err
			}
		}
		base += span
		span *= ppb
	}
	return nil
}

// isFastSymlink tells whether a symlink keeps its target in i_block.
func (f *FS) isFastSymlink(in *inode) bool {
	if in.flags()&(flagExtents|flagInlineData) != 0 {
		return false
	}
	// A symlink with no data blocks (other than an xattr block) is fast.
	n := in.blocks512(f.sb)
	if in.fileACL() != 0 {
		n -= uint64(f.bs / 512)
	}
	return n == 0 && in.size() < 60
}

// readAt reads file data at byte offset off into p, returning the count
// read (short only at end of file).
func (f *FS) readAt(in *inode, m *blockMap, p []byte, off int64) (int, error) {
	size := int64(in.size())
	if off >= size {
		return 0, nil
	}
	if int64(len(p)) > size-off {
		p = p[:size-off]
	}
	bs := int64(f.bs)
	n := 0
	for n < len(p) {
		pos := off + int64(n)
		lb := uint64(pos / bs)
		inBlock := pos % bs
		e := m.lookup(lb)
		if e == nil || e.uninit {
			// Hole: zeros up to the next extent or the end.
			end := int64(len(p))
			if e == nil {
				i := sort.Search(len(m.extents), func(i int) bool { return m.extents[i].logical > lb })
				if i < len(m.extents) {
					end = min(end, int64(m.extents[i].logical)*bs-off)
				}
			} else {
				end = min(end, int64(e.logical+e.length)*bs-off)
			}
			clear(p[n:end])
			n = int(end)
			continue
		}
		// Read as much of this extent as fits, in one device read.
		runBlocks := e.logical + e.length - lb
		want := min(int64(len(p)-n), int64(runBlocks)*bs-inBlock, 1<<20)
		phys := e.phys + (lb - e.logical)
		nb := (inBlock + want + bs - 1) / bs
		buf := make([]byte, nb*bs)
		if err := f.readBlocks(buf, phys); err != nil {
			return n, fmt.Errorf("inode %d: %w", in.num, err)
		}
		copy(p[n:n+int(want)], buf[inBlock:])
		n += int(want)
	}
	return n, nil
}
