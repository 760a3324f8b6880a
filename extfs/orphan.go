package extfs

import "fmt"

// processOrphans finishes what the kernel does at mount for inodes on the
// orphan list (s_last_orphan, chained through i_dtime): an inode without
// links is freed, a linked one is truncated to its size.
func (f *FS) processOrphans() error {
	next := le32(f.sb.raw[:], 0xE8)
	seen := map[uint32]bool{}
	for next != 0 {
		if seen[next] || len(seen) > int(f.sb.inodesCount) {
			return &RecoveryError{Reason: fmt.Sprintf("orphan list loops at inode %d", next)}
		}
		seen[next] = true
		in, err := f.readInode(next)
		if err != nil {
			return &RecoveryError{Reason: fmt.Sprintf("orphan inode %d: %v", next, err)}
		}
		following := le32(in.raw, 0x14) // i_dtime holds the next orphan
		if in.links() == 0 {
			err = f.freeInode(in)
		} else {
			put32(in.raw, 0x14, 0)
			err = f.truncate(in)
		}
		if err != nil {
			return &RecoveryError{Reason: fmt.Sprintf("orphan inode %d: %v", next, err)}
		}
		next = following
	}
	put32(f.sb.raw[:], 0xE8, 0)
	f.sbDirty = true
	return nil
}

// truncate frees the blocks of in beyond its size.
func (f *FS) truncate(in *inode) error {
	if in.isSymlink() && f.isFastSymlink(in) {
		return f.writeInode(in)
	}
	m, err := f.mapInode(in)
	if err != nil {
		return err
	}
	keep := (in.size() + uint64(f.bs) - 1) / uint64(f.bs)
	var exts []extent
	var drop []run
	for _, e := range m.extents {
		switch {
		case e.logical >= keep:
			drop = append(drop, run{e.phys, e.length})
		case e.logical+e.length > keep:
			n := keep - e.logical
			drop = append(drop, run{e.phys + n, e.length - n})
			e.length = n
			exts = append(exts, e)
		default:
			exts = append(exts, e)
		}
	}
	if len(drop) == 0 {
		return f.writeInode(in)
	}
	if err := f.releaseMapping(m, false); err != nil {
		return err
	}
	if err := f.freeBlockRuns(drop); err != nil {
		return err
	}
	if err := f.setMapping(in, exts, f.inodeGroup(in.num)); err != nil {
		return err
	}
	return f.writeInode(in)
}
