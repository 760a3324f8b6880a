package extfs

import (
	"fmt"
	"syscall"
)

// runsToExtents lays runs of physical blocks end to end from logical 0.
func runsToExtents(runs []run) []extent {
	var out []extent
	var lb uint64
	for _, r := range runs {
		out = append(out, extent{logical: lb, phys: r.start, length: r.length})
		lb += r.length
	}
	return out
}

// setMapping replaces the block mapping of in with exts (sorted, no
// overlap), allocating the metadata blocks it needs near goal. The old
// mapping's metadata blocks must have been freed by the caller. It sets
// i_blocks from the data, the new metadata and the xattr block.
func (f *FS) setMapping(in *inode, exts []extent, goal uint32) error {
	var meta uint64
	var err error
	clear(in.iblock())
	if f.sb.incompat&incompatExtents != 0 && (in.flags()&flagExtents != 0 || len(exts) == 0) {
		in.setFlags(in.flags() | flagExtents)
		meta, err = f.buildExtentTree(in, exts, goal)
	} else {
		meta, err = f.buildBlockMap(in, exts, goal)
	}
	if err != nil {
		return err
	}
	var data uint64
	for _, e := range exts {
		data += e.length
	}
	total := data + meta
	if in.fileACL() != 0 {
		total++
	}
	in.setBlocks(f.sb, total)
	return nil
}

// splitExtents cuts extents to the maximum extent length (32768 blocks,
// 32767 for uninitialised ones).
func splitExtents(exts []extent) []extent {
	var out []extent
	for _, e := range exts {
		for e.length > 0 {
			limit := uint64(maxInitLen)
			if e.uninit {
				limit--
			}
			l := min(e.length, limit)
			out = append(out, extent{logical: e.logical, phys: e.phys, length: l, uninit: e.uninit})
			e.logical += l
			e.phys += l
			e.length -= l
		}
	}
	return out
}

func putExtentHeader(b []byte, entries, maxEntries, depth int) {
	put16(b, 0, extentMagic)
	put16(b, 2, uint16(entries))
	put16(b, 4, uint16(maxEntries))
	put16(b, 6, uint16(depth))
	put32(b, 8, 0)
}

// buildExtentTree writes an extent tree for exts and returns how many
// blocks its nodes take.
func (f *FS) buildExtentTree(in *inode, exts []extent, goal uint32) (uint64, error) {
	exts = splitExtents(exts)
	if len(exts) > 0 && exts[len(exts)-1].logical+exts[len(exts)-1].length > 1<<32 {
		return 0, fmt.Errorf("file too large for extents: %w", syscall.EFBIG)
	}
	perBlock := (f.bs - 12) / 12
	// Leaf level entries, then index levels until they fit in the inode.
	type entry struct {
		logical uint64
		phys    uint64 // extent start or child block
		length  uint64
	}
	level := make([]entry, len(exts))
	for i, e := range exts {
		level[i] = entry{e.logical, e.phys, e.length}
		if e.uninit {
			level[i].length += maxInitLen // the on-disk encoding of an uninitialised extent
		}
	}
	depth := 0
	var meta uint64
	for len(level) > 4 {
		nodes := (len(level) + perBlock - 1) / perBlock
		runs, err := f.allocBlocks(goal, uint64(nodes))
		if err != nil {
			return 0, err
		}
		meta += uint64(nodes)
		var blocks []uint64
		for _, r := range runs {
			for i := range r.length {
				blocks = append(blocks, r.start+i)
			}
		}
		var next []entry
		for n := range nodes {
			chunk := level[n*perBlock : min(len(level), (n+1)*perBlock)]
			b := make([]byte, f.bs)
			putExtentHeader(b, len(chunk), perBlock, depth)
			for i, e := range chunk {
				f.putExtentEntry(b[12+12*i:], depth, e.logical, e.phys, e.length)
			}
			f.writeBlock(blocks[n], b)
			next = append(next, entry{logical: chunk[0].logical, phys: blocks[n]})
		}
		level = next
		depth++
	}
	ib := in.iblock()
	putExtentHeader(ib, len(level), 4, depth)
	for i, e := range level {
		f.putExtentEntry(ib[12+12*i:], depth, e.logical, e.phys, e.length)
	}
	return meta, nil
}

func (f *FS) putExtentEntry(b []byte, depth int, logical, phys, length uint64) {
	put32(b, 0, uint32(logical))
	if depth == 0 {
		put16(b, 4, uint16(length))
		put16(b, 6, uint16(phys>>32))
		put32(b, 8, uint32(phys))
		return
	}
	put32(b, 4, uint32(phys))
	put16(b, 8, uint16(phys>>32))
	put16(b, 10, 0)
}

// buildBlockMap writes a direct/indirect block map and returns how many
// indirect blocks it takes.
func (f *FS) buildBlockMap(in *inode, exts []extent, goal uint32) (uint64, error) {
	ppb := uint64(f.bs / 4)
	limit := 12 + ppb + ppb*ppb + ppb*ppb*ppb
	ib := in.iblock()
	// Indirect blocks by (level, index within the level's span), created on demand.
	type key struct {
		level int
		idx   uint64
	}
	nodes := map[key][]byte{}
	nodeBlock := map[key]uint64{}
	var order []key
	get := func(k key) []byte {
		if b, ok := nodes[k]; ok {
			return b
		}
		b := make([]byte, f.bs)
		nodes[k] = b
		order = append(order, k)
		return b
	}
	// Record pointer slots first; physical blocks of indirect nodes are
	// allocated afterwards, in one go.
	type slot struct {
		parent key // level 0 means the inode
		pos    int
		value  uint64
	}
	var slots []slot
	for _, e := range exts {
		for i := range e.length {
			lb := e.logical + i
			pb := e.phys + i
			if lb >= limit {
				return 0, fmt.Errorf("file too large for a block map: %w", syscall.EFBIG)
			}
			switch {
			case lb < 12:
				slots = append(slots, slot{parent: key{0, 0}, pos: int(lb), value: pb})
			case lb < 12+ppb:
				x := lb - 12
				top := key{1, 0}
				get(top)
				slots = append(slots, slot{parent: top, pos: int(x), value: pb})
			case lb < 12+ppb+ppb*ppb:
				x := lb - 12 - ppb
				top := key{2, 0}
				mid := key{12, x / ppb}
				get(top)
				get(mid)
				slots = append(slots, slot{parent: mid, pos: int(x % ppb), value: pb})
			default:
				x := lb - 12 - ppb - ppb*ppb
				top := key{3, 0}
				mid := key{23, x / (ppb * ppb)}
				low := key{13, x / ppb}
				get(top)
				get(mid)
				get(low)
				slots = append(slots, slot{parent: low, pos: int(x % ppb), value: pb})
			}
		}
	}
	if len(order) > 0 {
		runs, err := f.allocBlocks(goal, uint64(len(order)))
		if err != nil {
			return 0, err
		}
		i := 0
		for _, r := range runs {
			for j := range r.length {
				nodeBlock[order[i]] = r.start + j
				i++
			}
		}
	}
	// Data pointers.
	for _, s := range slots {
		if s.parent.level == 0 {
			put32(ib, 4*s.pos, uint32(s.value))
		} else {
			put32(nodes[s.parent], 4*s.pos, uint32(s.value))
		}
	}
	// Links between indirect nodes.
	for _, k := range order {
		blk := uint32(nodeBlock[k])
		switch k.level {
		case 1, 2, 3:
			put32(ib, 4*(11+k.level), blk)
		case 12: // child of the double indirect block
			put32(nodes[key{2, 0}], int(4*k.idx), blk)
		case 23: // child of the triple indirect block
			put32(nodes[key{3, 0}], int(4*k.idx), blk)
		case 13: // grandchild of the triple indirect block
			put32(nodes[key{23, k.idx / ppb}], int(4*(k.idx%ppb)), blk)
		}
	}
	for _, k := range order {
		f.writeBlock(nodeBlock[k], nodes[k])
	}
	return uint64(len(order)), nil
}

// releaseMapping frees the metadata blocks of m, and its data blocks too
// when data is true.
func (f *FS) releaseMapping(m *blockMap, data bool) error {
	var runs []run
	for _, b := range m.meta {
		runs = append(runs, run{b, 1})
	}
	if data {
		for _, e := range m.extents {
			runs = append(runs, run{e.phys, e.length})
		}
	}
	return f.freeBlockRuns(runs)
}
