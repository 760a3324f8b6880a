package extfs

import (
	"fmt"
)

// dirent is one directory entry as found in a directory block.
type dirent struct {
	ino    uint32
	name   string
	ftype  uint8
	lblk   uint64 // logical block of the directory
	off    int    // offset in the block
	recLen int
}

// recLen decodes a rec_len field (65536-byte blocks encode 65536 as 0 or 65535).
func (f *FS) decodeRecLen(v uint16) int {
	if f.bs >= 65536 && (v == 0 || v == 65535) {
		return 65536
	}
	return int(v)
}

func (f *FS) encodeRecLen(n int) uint16 {
	if n >= 65536 {
		return 65535
	}
	return uint16(n)
}

func direntSize(nameLen int) int { return (8 + nameLen + 3) &^ 3 }

// parseDirBlock calls fn for every entry (used or not) of a directory block.
// It stops early when fn returns false.
func (f *FS) parseDirBlock(dirIno uint32, lblk uint64, b []byte, fn func(d dirent) bool) error {
	hasFT := f.sb.incompat&incompatFiletype != 0
	for off := 0; off < len(b); {
		if off+8 > len(b) {
			return fmt.Errorf("directory inode %d block %d: entry at %d crosses the block end: %w", dirIno, lblk, off, ErrCorrupt)
		}
		ino := le32(b, off)
		rl := f.decodeRecLen(le16(b, off+4))
		nameLen := int(b[off+6])
		var ft uint8
		if hasFT {
			ft = b[off+7]
		} else {
			nameLen |= int(b[off+7]) << 8
		}
		if rl < 8 || rl%4 != 0 || off+rl > len(b) || (ino != 0 && 8+nameLen > rl) {
			return fmt.Errorf("directory inode %d block %d: bad entry at %d (rec_len %d, name_len %d): %w",
				dirIno, lblk, off, rl, nameLen, ErrCorrupt)
		}
		if ino > f.sb.inodesCount {
			return fmt.Errorf("directory inode %d block %d: entry at %d names inode %d: %w", dirIno, lblk, off, ino, ErrCorrupt)
		}
		name := ""
		if ino != 0 {
			name = string(b[off+8 : off+8+nameLen])
		}
		if !fn(dirent{ino: ino, name: name, ftype: ft, lblk: lblk, off: off, recLen: rl}) {
			return nil
		}
		off += rl
	}
	return nil
}

// dirBlocks returns the number of blocks of a directory.
func (f *FS) dirBlocks(dir *inode) uint64 {
	return (dir.size() + uint64(f.bs) - 1) / uint64(f.bs)
}

// readDirBlock reads logical block lb of a directory.
func (f *FS) readDirBlock(dir *inode, m *blockMap, lb uint64) ([]byte, error) {
	e := m.lookup(lb)
	if e == nil || e.uninit {
		return nil, fmt.Errorf("directory inode %d: hole at block %d: %w", dir.num, lb, ErrCorrupt)
	}
	return f.readBlock(e.phys + lb - e.logical)
}

// forEachEntry calls fn for every used entry of a directory. Index blocks
// of htree directories parse as empty entries, so a linear walk sees every
// name.
func (f *FS) forEachEntry(dir *inode, fn func(d dirent) bool) error {
	if !dir.isDir() {
		return fmt.Errorf("inode %d is not a directory: %w", dir.num, errNotDir)
	}
	m, err := f.mapInode(dir)
	if err != nil {
		return err
	}
	stop := false
	for lb := range f.dirBlocks(dir) {
		b, err := f.readDirBlock(dir, m, lb)
		if err != nil {
			return err
		}
		err = f.parseDirBlock(dir.num, lb, b, func(d dirent) bool {
			if d.ino == 0 {
				return true
			}
			if !fn(d) {
				stop = true
				return false
			}
			return true
		})
		if err != nil || stop {
			return err
		}
	}
	return nil
}

// lookup finds name in a directory.
func (f *FS) lookup(dir *inode, name string) (dirent, bool, error) {
	if dir.isDir() && dir.flags()&flagIndex != 0 && f.sb.compat&compatDirIndex != 0 && name != "." && name != ".." {
		if d, found, ok := f.htreeLookup(dir, name); ok {
			return d, found, nil
		}
	}
	var found dirent
	ok := false
	err := f.forEachEntry(dir, func(d dirent) bool {
		if d.name == name {
			found, ok = d, true
			return false
		}
		return true
	})
	return found, ok, err
}
