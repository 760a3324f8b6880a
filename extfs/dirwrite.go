package extfs

import (
	"fmt"
	"sort"
	"syscall"
)

// putDirent writes an entry header and name at off.
func (f *FS) putDirent(b []byte, off int, ino uint32, recLen int, name string, ft uint8) {
	put32(b, off, ino)
	put16(b, off+4, f.encodeRecLen(recLen))
	b[off+6] = byte(len(name))
	if f.sb.incompat&incompatFiletype != 0 {
		b[off+7] = ft
	} else {
		b[off+7] = 0
	}
	copy(b[off+8:], name)
	// Zero the name padding.
	for i := off + 8 + len(name); i < off+direntSize(len(name)) && i < len(b); i++ {
		b[i] = 0
	}
}

// insertInBlock puts an entry into a directory block if it has room.
func (f *FS) insertInBlock(dirIno uint32, lb uint64, b []byte, name string, ino uint32, ft uint8) (bool, error) {
	need := direntSize(len(name))
	done := false
	err := f.parseDirBlock(dirIno, lb, b, func(d dirent) bool {
		if d.ino == 0 {
			if d.recLen >= need {
				f.putDirent(b, d.off, ino, d.recLen, name, ft)
				done = true
				return false
			}
			return true
		}
		used := direntSize(len(d.name))
		if d.recLen-used >= need {
			put16(b, d.off+4, f.encodeRecLen(used))
			f.putDirent(b, d.off+used, ino, d.recLen-used, name, ft)
			done = true
			return false
		}
		return true
	})
	return done, err
}

// growDir appends a block to a directory and returns its logical number
// and physical block.
func (f *FS) growDir(dir *inode) (uint64, uint64, error) {
	m, err := f.mapInode(dir)
	if err != nil {
		return 0, 0, err
	}
	lb := f.dirBlocks(dir)
	if lb != m.dataBlocks() {
		return 0, 0, fmt.Errorf("directory inode %d: size does not match its blocks: %w", dir.num, ErrCorrupt)
	}
	goal := f.inodeGroup(dir.num)
	if n := len(m.extents); n > 0 {
		last := m.extents[n-1]
		goal = uint32((last.phys + last.length - uint64(f.sb.firstDataBlock)) / uint64(f.sb.blocksPerGroup))
	}
	runs, err := f.allocBlocks(goal, 1)
	if err != nil {
		return 0, 0, err
	}
	if err := f.releaseMapping(m, false); err != nil {
		return 0, 0, err
	}
	exts := append(m.extents, extent{logical: lb, phys: runs[0].start, length: 1})
	if n := len(m.extents); n > 0 {
		last := &exts[n-1]
		if last.phys+last.length == runs[0].start && last.logical+last.length == lb && last.length < maxInitLen {
			last.length++
			exts = exts[:n]
		}
	}
	if err := f.setMapping(dir, exts, goal); err != nil {
		return 0, 0, err
	}
	dir.setSize(dir.size() + uint64(f.bs))
	return lb, runs[0].start, nil
}

// dirBlockPhys maps a directory's logical block.
func (f *FS) dirBlockPhys(dir *inode, lb uint64) (uint64, error) {
	m, err := f.mapInode(dir)
	if err != nil {
		return 0, err
	}
	e := m.lookup(lb)
	if e == nil {
		return 0, fmt.Errorf("directory inode %d: hole at block %d: %w", dir.num, lb, ErrCorrupt)
	}
	return e.phys + lb - e.logical, nil
}

// addEntry adds name -> ino to dir. The caller writes dir afterwards.
func (f *FS) addEntry(dir *inode, name string, ino uint32, ft uint8) error {
	if dir.flags()&flagIndex != 0 {
		if f.sb.compat&compatDirIndex != 0 {
			done, err := f.htreeAdd(dir, name, ino, ft)
			if err != nil || done {
				return err
			}
		}
		// Drop the index: every htree block is also a valid linear block.
		dir.setFlags(dir.flags() &^ flagIndex)
	}
	done, err := f.rewriteDirBlock(dir, func(lb uint64, b []byte) (bool, error) {
		return f.insertInBlock(dir.num, lb, b, name, ino, ft)
	})
	if err != nil || done {
		return err
	}
	_, phys, err := f.growDir(dir)
	if err != nil {
		return err
	}
	b := make([]byte, f.bs)
	f.putDirent(b, 0, ino, f.bs, name, ft)
	f.writeBlock(phys, b)
	return nil
}

// removeEntry removes name from dir.
func (f *FS) removeEntry(dir *inode, name string) error {
	return f.editEntry(dir, name, func(b []byte, d dirent, prev int) {
		if prev >= 0 {
			prl := f.decodeRecLen(le16(b, prev+4))
			put16(b, prev+4, f.encodeRecLen(prl+d.recLen))
		} else {
			put32(b, d.off, 0)
		}
	})
}

// setEntryInode points an existing entry of dir at another inode.
func (f *FS) setEntryInode(dir *inode, name string, ino uint32) error {
	return f.editEntry(dir, name, func(b []byte, d dirent, _ int) {
		put32(b, d.off, ino)
	})
}

// editEntry finds the live entry name in dir, lets edit change its block b
// (prev is the offset of the entry before it in b, or -1) and writes the
// block back. A missing entry is ErrCorrupt: callers looked it up first.
func (f *FS) editEntry(dir *inode, name string, edit func(b []byte, d dirent, prev int)) error {
	found, err := f.rewriteDirBlock(dir, func(lb uint64, b []byte) (bool, error) {
		prev := -1
		found := false
		err := f.parseDirBlock(dir.num, lb, b, func(d dirent) bool {
			if d.ino != 0 && d.name == name {
				edit(b, d, prev)
				found = true
				return false
			}
			prev = d.off
			return true
		})
		return found, err
	})
	if err != nil || found {
		return err
	}
	return fmt.Errorf("directory inode %d has no entry %q: %w", dir.num, name, ErrCorrupt)
}

// rewriteDirBlock calls change on each block of dir in turn (lb is its
// logical number) until change reports that it changed one, writes that
// block back and returns true; it returns false when no block changed.
func (f *FS) rewriteDirBlock(dir *inode, change func(lb uint64, b []byte) (bool, error)) (bool, error) {
	m, err := f.mapInode(dir)
	if err != nil {
		return false, err
	}
	for lb := range f.dirBlocks(dir) {
		b, err := f.readDirBlock(dir, m, lb)
		if err != nil {
			return false, err
		}
		changed, err := change(lb, b)
		if err != nil {
			return false, err
		}
		if changed {
			e := m.lookup(lb)
			f.writeBlock(e.phys+lb-e.logical, b)
			return true, nil
		}
	}
	return false, nil
}

// dxLevel is one step of an htree lookup: the index node and the entry taken.
type dxLevel struct {
	phys  uint64
	block []byte
	base  int // offset of the count/limit header
	count int
	limit int
	idx   int
}

// dxFind descends the htree index of dir to the leaf for hash. ok is
// false when the index is one this package does not walk (then the caller
// treats the directory as linear).
func (f *FS) dxFind(dir *inode, name string) (path []dxLevel, leaf uint64, hash uint32, hv uint8, ok bool, err error) {
	rootPhys, err := f.dirBlockPhys(dir, 0)
	if err != nil {
		return nil, 0, 0, 0, false, err
	}
	root, err := f.readBlock(rootPhys)
	if err != nil {
		return nil, 0, 0, 0, false, err
	}
	version, infoLen, levels := root[28], root[29], int(root[30])
	if infoLen != 8 || levels > 1 || root[31] != 0 {
		return nil, 0, 0, 0, false, nil
	}
	hv = f.hashVersion(version)
	hash, ok = dirHash([]byte(name), hv, f.sb.hashSeed)
	if !ok {
		return nil, 0, 0, 0, false, nil
	}
	node, phys, base := root, rootPhys, 24+int(infoLen)
	nblocks := f.dirBlocks(dir)
	for level := 0; ; level++ {
		limit, count := int(le16(node, base)), int(le16(node, base+2))
		if limit != (f.bs-base)/8 || count == 0 || count > limit {
			return nil, 0, 0, 0, false, fmt.Errorf("directory inode %d: bad htree node (count %d, limit %d): %w", dir.num, count, limit, ErrCorrupt)
		}
		// Last entry whose hash is <= hash (entry 0 has none).
		idx := sort.Search(count-1, func(i int) bool { return le32(node, base+8*(i+1)) > hash })
		path = append(path, dxLevel{phys: phys, block: node, base: base, count: count, limit: limit, idx: idx})
		child := uint64(le32(node, base+8*idx+4))
		if child >= nblocks || child == 0 {
			return nil, 0, 0, 0, false, fmt.Errorf("directory inode %d: htree points at block %d of %d: %w", dir.num, child, nblocks, ErrCorrupt)
		}
		if level == levels {
			return path, child, hash, hv, true, nil
		}
		if phys, err = f.dirBlockPhys(dir, child); err != nil {
			return nil, 0, 0, 0, false, err
		}
		if node, err = f.readBlock(phys); err != nil {
			return nil, 0, 0, 0, false, err
		}
		base = 8
	}
}

// htreeAdd inserts into the leaf the index points at, splitting a full leaf
// when its index node has room. It returns false when the index should be
// dropped instead.
func (f *FS) htreeAdd(dir *inode, name string, ino uint32, ft uint8) (bool, error) {
	path, leaf, hash, hv, ok, err := f.dxFind(dir, name)
	if err != nil || !ok {
		return false, err
	}
	return f.htreeInsertLeaf(dir, path, leaf, name, ino, ft, hash, hv)
}

// htreeLookup finds name through the index. ok is false when the caller
// must fall back to a linear search.
func (f *FS) htreeLookup(dir *inode, name string) (d dirent, found, ok bool) {
	path, leaf, hash, _, ok, err := f.dxFind(dir, name)
	if err != nil || !ok {
		return dirent{}, false, false
	}
	m, err := f.mapInode(dir)
	if err != nil {
		return dirent{}, false, false
	}
	for {
		b, err := f.readDirBlock(dir, m, leaf)
		if err != nil {
			return dirent{}, false, false
		}
		err = f.parseDirBlock(dir.num, leaf, b, func(e dirent) bool {
			if e.ino != 0 && e.name == name {
				d, found = e, true
				return false
			}
			return true
		})
		if err != nil {
			return dirent{}, false, false
		}
		if found {
			return d, true, true
		}
		// A hash collision may continue in the next leaf (low bit set).
		last := path[len(path)-1]
		next := last.idx + 1
		if next >= last.count {
			return dirent{}, false, true
		}
		nh := le32(last.block, last.base+8*next)
		if nh&1 == 0 || nh&^1 != hash {
			return dirent{}, false, true
		}
		path[len(path)-1].idx = next
		leaf = uint64(le32(last.block, last.base+8*next+4))
	}
}

func (f *FS) htreeInsertLeaf(dir *inode, path []dxLevel, leaf uint64, name string, ino uint32, ft uint8, hash uint32, hv uint8) (bool, error) {
	leafPhys, err := f.dirBlockPhys(dir, leaf)
	if err != nil {
		return false, err
	}
	b, err := f.readBlock(leafPhys)
	if err != nil {
		return false, err
	}
	ok, err := f.insertInBlock(dir.num, leaf, b, name, ino, ft)
	if err != nil {
		return false, err
	}
	if ok {
		f.writeBlock(leafPhys, b)
		return true, nil
	}
	if path[len(path)-1].count >= path[len(path)-1].limit {
		var ok bool
		if path, ok, err = f.dxMakeRoom(dir, path); err != nil || !ok {
			return false, err
		}
	}
	parent := path[len(path)-1]
	// Split the leaf at a hash boundary near the middle.
	type named struct {
		d    dirent
		hash uint32
	}
	var ents []named
	err = f.parseDirBlock(dir.num, leaf, b, func(d dirent) bool {
		if d.ino != 0 {
			h, _ := dirHash([]byte(d.name), hv, f.sb.hashSeed)
			ents = append(ents, named{d, h})
		}
		return true
	})
	if err != nil {
		return false, err
	}
	sort.SliceStable(ents, func(i, j int) bool { return ents[i].hash < ents[j].hash })
	split := -1
	for delta := 0; delta < len(ents); delta++ {
		for _, m := range []int{len(ents)/2 + delta, len(ents)/2 - delta} {
			if m > 0 && m < len(ents) && ents[m].hash != ents[m-1].hash {
				split = m
				break
			}
		}
		if split >= 0 {
			break
		}
	}
	if split < 0 {
		return false, nil
	}
	splitHash := ents[split].hash
	pack := func(list []named) []byte {
		out := make([]byte, f.bs)
		off := 0
		for i, e := range list {
			rl := direntSize(len(e.d.name))
			if i == len(list)-1 {
				rl = f.bs - off
			}
			f.putDirent(out, off, e.d.ino, rl, e.d.name, e.d.ftype)
			off += rl
		}
		if len(list) == 0 {
			f.putDirent(out, 0, 0, f.bs, "", 0)
		}
		return out
	}
	low, high := pack(ents[:split]), pack(ents[split:])
	newLB, newPhys, err := f.growDir(dir)
	if err != nil {
		return false, err
	}
	// Insert the new index entry after the one we followed.
	node := parent.block
	at := parent.base + 8*(parent.idx+1)
	end := parent.base + 8*parent.count
	copy(node[at+8:end+8], node[at:end])
	put32(node, at, splitHash)
	put32(node, at+4, uint32(newLB))
	put16(node, parent.base+2, uint16(parent.count+1))
	f.writeBlock(parent.phys, node)
	target, targetPhys := low, leafPhys
	if hash >= splitHash {
		target, targetPhys = high, newPhys
	}
	ok, err = f.insertInBlock(dir.num, leaf, target, name, ino, ft)
	if err != nil {
		return false, err
	}
	f.writeBlock(leafPhys, low)
	f.writeBlock(newPhys, high)
	if !ok {
		return false, nil
	}
	f.writeBlock(targetPhys, target)
	return true, nil
}

// dxMakeRoom makes room for one more entry in the full index node at the
// end of path: a full root moves its entries into a new node one level
// down (a two-level tree, as ext3 and ext4 both read); a full second-level
// node is split in two when the root has room. It returns the updated path,
// or false when the tree cannot grow (the caller then drops the index).
func (f *FS) dxMakeRoom(dir *inode, path []dxLevel) ([]dxLevel, bool, error) {
	root := &path[0]
	nodeLimit := (f.bs - 8) / 8
	switch {
	case len(path) == 1 && f.maxIndexLevels > 1:
		lb, phys, err := f.growDir(dir)
		if err != nil {
			return nil, false, err
		}
		node := make([]byte, f.bs)
		f.putDirent(node, 0, 0, f.bs, "", 0)
		copy(node[8:], root.block[root.base:root.base+8*root.count])
		put16(node, 8, uint16(nodeLimit))
		put16(node, 10, uint16(root.count))
		f.writeBlock(phys, node)
		root.block[30] = 1 // indirect levels
		put16(root.block, root.base+2, 1)
		put32(root.block, root.base+4, uint32(lb))
		clear(root.block[root.base+8:])
		f.writeBlock(root.phys, root.block)
		child := dxLevel{phys: phys, block: node, base: 8, count: root.count, limit: nodeLimit, idx: root.idx}
		root.count, root.idx = 1, 0
		return append(path, child), true, nil
	case len(path) == 2 && root.count < root.limit:
		full := &path[1]
		lb, phys, err := f.growDir(dir)
		if err != nil {
			return nil, false, err
		}
		half := full.count / 2
		moved := full.count - half
		node := make([]byte, f.bs)
		f.putDirent(node, 0, 0, f.bs, "", 0)
		copy(node[8:], full.block[full.base+8*half:full.base+8*full.count])
		splitHash := le32(node, 8)
		put16(node, 8, uint16(nodeLimit))
		put16(node, 10, uint16(moved))
		f.writeBlock(phys, node)
		clear(full.block[full.base+8*half : full.base+8*full.count])
		put16(full.block, full.base+2, uint16(half))
		f.writeBlock(full.phys, full.block)
		// New root entry after the one pointing at the full node.
		at := root.base + 8*(root.idx+1)
		end := root.base + 8*root.count
		copy(root.block[at+8:end+8], root.block[at:end])
		put32(root.block, at, splitHash)
		put32(root.block, at+4, uint32(lb))
		root.count++
		put16(root.block, root.base+2, uint16(root.count))
		f.writeBlock(root.phys, root.block)
		if full.idx >= half {
			root.idx++
			*full = dxLevel{phys: phys, block: node, base: 8, count: moved, limit: nodeLimit, idx: full.idx - half}
		} else {
			full.count = half
		}
		return path, true, nil
	}
	return nil, false, nil
}

// dirIsEmpty tells whether a directory holds only "." and "..".
func (f *FS) dirIsEmpty(dir *inode) (bool, error) {
	empty := true
	err := f.forEachEntry(dir, func(d dirent) bool {
		if d.name != "." && d.name != ".." {
			empty = false
			return false
		}
		return true
	})
	return empty, err
}

var errNotEmpty = syscall.ENOTEMPTY
