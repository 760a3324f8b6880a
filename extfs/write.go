package extfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"syscall"
	"time"
)

const linkMax = 65000

// update runs one write operation: changes are staged, then written on
// success or dropped on error.
func (f *FS) update(op, name string, fn func() error) error {
	if f.readOnly {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrPermission}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dirty == nil {
		return &fs.PathError{Op: op, Path: name, Err: fs.ErrClosed}
	}
	err := fn()
	if err == nil {
		err = f.commit()
	}
	if err != nil {
		f.rollback()
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return err
		}
		return &fs.PathError{Op: op, Path: name, Err: err}
	}
	return nil
}

// parentOf resolves the directory that holds name and returns it with the
// final component.
func (f *FS) parentOf(op, name string) (*inode, string, error) {
	if !fs.ValidPath(name) || name == "." {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errInvalid}
	}
	dirName, base := path.Split(name)
	dirName = strings.TrimSuffix(dirName, "/")
	if dirName == "" {
		dirName = "."
	}
	if len(base) > 255 {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: syscall.ENAMETOOLONG}
	}
	r, err := f.walk(op, dirName, true)
	if err != nil {
		return nil, "", err
	}
	if !r.in.isDir() {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: errNotDir}
	}
	return r.in, base, nil
}

// newInode allocates and initialises an inode near the parent's group.
func (f *FS) newInode(parent *inode, mode uint16) (*inode, error) {
	dir := mode&sIFMT == sIFDIR
	num, err := f.allocInode(f.inodeGroup(parent.num), dir)
	if err != nil {
		return nil, err
	}
	in := &inode{num: num, raw: make([]byte, f.sb.inodeSize)}
	in.setMode(mode)
	if len(in.raw) > 128 {
		extra := f.sb.wantExtraIsize
		if extra == 0 || int(extra) > len(in.raw)-128 {
			extra = 32
		}
		put16(in.raw, 0x80, extra)
	}
	now := f.now()
	in.setAtime(now)
	in.setCtime(now)
	in.setMtime(now)
	in.setCrtime(now)
	put32(in.raw, 0x64, uint32(now.UnixNano())^num*2654435761) // i_generation
	if f.sb.incompat&incompatExtents != 0 && mode&sIFMT != sIFLNK {
		in.setFlags(flagExtents)
		putExtentHeader(in.iblock(), 0, 4, 0)
	}
	return in, nil
}

// writeData allocates blocks for data near goal and maps them into in,
// replacing whatever in mapped before.
func (f *FS) writeData(in *inode, data []byte, goal uint32) error {
	old, err := f.mapInode(in)
	if err != nil {
		return err
	}
	if err := f.releaseMapping(old, true); err != nil {
		return err
	}
	nblocks := (uint64(len(data)) + uint64(f.bs) - 1) / uint64(f.bs)
	runs, err := f.allocBlocks(goal, nblocks)
	if err != nil {
		return err
	}
	off := 0
	for _, r := range runs {
		for i := range r.length {
			end := min(off+f.bs, len(data))
			f.writeBlock(r.start+i, data[off:end])
			off = end
		}
	}
	if err := f.setMapping(in, runsToExtents(runs), goal); err != nil {
		return err
	}
	in.setSize(uint64(len(data)))
	if len(data) > 1<<31-1 && f.sb.roCompat&roCompatLargeFile == 0 {
		f.sb.roCompat |= roCompatLargeFile
		f.sbDirty = true
	}
	return nil
}

// WriteFile creates name or replaces its whole content. A final symlink is
// followed. An existing file keeps its inode, mode, owner, extended
// attributes and hard links; a new one gets perm and owner 0:0.
func (f *FS) WriteFile(name string, data []byte, perm fs.FileMode) error {
	return f.update("writefile", name, func() error {
		r, err := f.walk("writefile", name, true)
		if err == nil {
			if r.in.isDir() {
				return &fs.PathError{Op: "writefile", Path: name, Err: errIsDir}
			}
			if !r.in.isReg() {
				return &fs.PathError{Op: "writefile", Path: name, Err: errInvalid}
			}
			if err := f.writeData(r.in, data, f.inodeGroup(r.in.num)); err != nil {
				return err
			}
			now := f.now()
			r.in.setMtime(now)
			r.in.setCtime(now)
			return f.writeInode(r.in)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		parent, base, err := f.parentOf("writefile", name)
		if err != nil {
			return err
		}
		if _, ok, err := f.lookup(parent, base); err != nil || ok {
			if ok { // a dangling symlink
				return &fs.PathError{Op: "writefile", Path: name, Err: fs.ErrNotExist}
			}
			return err
		}
		in, err := f.newInode(parent, sIFREG|permBits(perm))
		if err != nil {
			return err
		}
		in.setLinks(1)
		if err := f.writeData(in, data, f.inodeGroup(in.num)); err != nil {
			return err
		}
		if err := f.writeInode(in); err != nil {
			return err
		}
		return f.link(parent, base, in)
	})
}

// link adds an entry for in to parent and updates the parent's times.
func (f *FS) link(parent *inode, base string, in *inode) error {
	if err := f.addEntry(parent, base, in.num, dirFileType(in.mode())); err != nil {
		return err
	}
	now := f.now()
	parent.setMtime(now)
	parent.setCtime(now)
	return f.writeInode(parent)
}

// Mkdir creates a directory.
func (f *FS) Mkdir(name string, perm fs.FileMode) error {
	return f.update("mkdir", name, func() error {
		parent, base, err := f.parentOf("mkdir", name)
		if err != nil {
			return err
		}
		if _, ok, err := f.lookup(parent, base); err != nil || ok {
			if ok {
				return &fs.PathError{Op: "mkdir", Path: name, Err: fs.ErrExist}
			}
			return err
		}
		if err := f.incLinks(parent); err != nil {
			return err
		}
		in, err := f.newInode(parent, sIFDIR|permBits(perm))
		if err != nil {
			return err
		}
		in.setLinks(2)
		b := make([]byte, f.bs)
		f.putDirent(b, 0, in.num, 12, ".", ftDir)
		f.putDirent(b, 12, parent.num, f.bs-12, "..", ftDir)
		if err := f.writeData(in, b, f.inodeGroup(in.num)); err != nil {
			return err
		}
		if err := f.writeInode(in); err != nil {
			return err
		}
		return f.link(parent, base, in)
	})
}

// incLinks counts one more subdirectory in dir.
func (f *FS) incLinks(dir *inode) error {
	n := dir.links()
	switch {
	case n == 1 && dir.isDir():
		return nil // dir_nlink: the count is no longer kept
	case n+1 >= linkMax:
		if !dir.isDir() || f.sb.roCompat&roCompatDirNlink == 0 {
			return syscall.EMLINK
		}
		dir.setLinks(1)
	default:
		dir.setLinks(n + 1)
	}
	return nil
}

func decLinks(dir *inode) {
	if n := dir.links(); n > 2 || (!dir.isDir() && n > 0) {
		dir.setLinks(n - 1)
	}
}

// Symlink creates newname as a symbolic link to oldname.
func (f *FS) Symlink(oldname, newname string) error {
	return f.update("symlink", newname, func() error {
		if oldname == "" || len(oldname) >= f.bs {
			return &fs.PathError{Op: "symlink", Path: newname, Err: syscall.ENAMETOOLONG}
		}
		parent, base, err := f.parentOf("symlink", newname)
		if err != nil {
			return err
		}
		if _, ok, err := f.lookup(parent, base); err != nil || ok {
			if ok {
				return &fs.PathError{Op: "symlink", Path: newname, Err: fs.ErrExist}
			}
			return err
		}
		in, err := f.newInode(parent, sIFLNK|0o777)
		if err != nil {
			return err
		}
		in.setLinks(1)
		if len(oldname) < 60 {
			copy(in.iblock(), oldname)
			in.setSize(uint64(len(oldname)))
		} else {
			if f.sb.incompat&incompatExtents != 0 {
				in.setFlags(in.flags() | flagExtents)
				putExtentHeader(in.iblock(), 0, 4, 0)
			}
			if err := f.writeData(in, []byte(oldname), f.inodeGroup(in.num)); err != nil {
				return err
			}
		}
		if err := f.writeInode(in); err != nil {
			return err
		}
		return f.link(parent, base, in)
	})
}

// Rename renames oldname to newname, replacing a file or empty directory
// at newname as rename(2) does.
func (f *FS) Rename(oldname, newname string) error {
	return f.update("rename", oldname, func() error {
		oldParent, oldBase, err := f.parentOf("rename", oldname)
		if err != nil {
			return err
		}
		src, ok, err := f.lookup(oldParent, oldBase)
		if err != nil {
			return err
		}
		if !ok {
			return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
		}
		newParent, newBase, err := f.parentOf("rename", newname)
		if err != nil {
			return err
		}
		srcIn, err := f.readInode(src.ino)
		if err != nil {
			return err
		}
		if srcIn.isDir() {
			// A directory cannot move below itself.
			for p := newParent; p.num != rootIno; {
				if p.num == srcIn.num {
					return &fs.PathError{Op: "rename", Path: newname, Err: errInvalid}
				}
				up, ok, err := f.lookup(p, "..")
				if err != nil || !ok {
					return fmt.Errorf("directory inode %d has no parent entry: %w", p.num, ErrCorrupt)
				}
				if p, err = f.readInode(up.ino); err != nil {
					return err
				}
			}
		}
		dst, exists, err := f.lookup(newParent, newBase)
		if err != nil {
			return err
		}
		if exists {
			if dst.ino == src.ino {
				return nil
			}
			dstIn, err := f.readInode(dst.ino)
			if err != nil {
				return err
			}
			switch {
			case srcIn.isDir() && !dstIn.isDir():
				return &fs.PathError{Op: "rename", Path: newname, Err: errNotDir}
			case !srcIn.isDir() && dstIn.isDir():
				return &fs.PathError{Op: "rename", Path: newname, Err: errIsDir}
			}
			if err := f.unlink(newParent, newBase, dstIn); err != nil {
				return err
			}
			if newParent.num == oldParent.num {
				oldParent = newParent
			}
		}
		if err := f.addEntry(newParent, newBase, srcIn.num, dirFileType(srcIn.mode())); err != nil {
			return err
		}
		if newParent.num == oldParent.num {
			oldParent = newParent
		}
		if err := f.removeEntry(oldParent, oldBase); err != nil {
			return err
		}
		now := f.now()
		if srcIn.isDir() && newParent.num != oldParent.num {
			if err := f.setEntryInode(srcIn, "..", newParent.num); err != nil {
				return err
			}
			decLinks(oldParent)
			if err := f.incLinks(newParent); err != nil {
				return err
			}
		}
		srcIn.setCtime(now)
		if err := f.writeInode(srcIn); err != nil {
			return err
		}
		for _, p := range []*inode{oldParent, newParent} {
			p.setMtime(now)
			p.setCtime(now)
			if err := f.writeInode(p); err != nil {
				return err
			}
		}
		return nil
	})
}

// Remove removes a file, a symlink or an empty directory.
func (f *FS) Remove(name string) error {
	return f.update("remove", name, func() error {
		parent, base, err := f.parentOf("remove", name)
		if err != nil {
			return err
		}
		d, ok, err := f.lookup(parent, base)
		if err != nil {
			return err
		}
		if !ok {
			return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
		}
		in, err := f.readInode(d.ino)
		if err != nil {
			return err
		}
		if err := f.unlink(parent, base, in); err != nil {
			return err
		}
		now := f.now()
		parent.setMtime(now)
		parent.setCtime(now)
		return f.writeInode(parent)
	})
}

// unlink removes the entry base of parent for in, freeing in when it was
// the last link. The caller writes parent.
func (f *FS) unlink(parent *inode, base string, in *inode) error {
	if in.isDir() {
		empty, err := f.dirIsEmpty(in)
		if err != nil {
			return err
		}
		if !empty {
			return errNotEmpty
		}
	}
	if err := f.removeEntry(parent, base); err != nil {
		return err
	}
	if in.isDir() {
		decLinks(parent)
		return f.freeInode(in)
	}
	if in.links() > 1 {
		in.setLinks(in.links() - 1)
		in.setCtime(f.now())
		return f.writeInode(in)
	}
	return f.freeInode(in)
}

const xattrMagic = 0xEA020000

// freeInode releases an inode and its blocks.
func (f *FS) freeInode(in *inode) error {
	m, err := f.mapInode(in)
	if err != nil {
		return err
	}
	if err := f.releaseMapping(m, true); err != nil {
		return err
	}
	if acl := in.fileACL(); acl != 0 {
		if err := f.dropXattrBlock(in, acl); err != nil {
			return err
		}
	}
	if err := f.freeInodeNum(in.num, in.isDir()); err != nil {
		return err
	}
	in.setLinks(0)
	in.setDtime(uint32(f.now().Unix()))
	in.setSize(0)
	clear(in.iblock())
	in.setFlags(in.flags() &^ (flagExtents | flagIndex | flagHugeFile))
	put32(in.raw, 0x1C, 0)
	put16(in.raw, 0x74, 0)
	return f.writeInode(in)
}

// Chmod sets the permission bits of name (following symlinks).
func (f *FS) Chmod(name string, mode fs.FileMode) error {
	return f.setAttr("chmod", name, func(in *inode) {
		in.setMode(in.mode()&sIFMT | permBits(mode))
	})
}

// Chown sets the owner of name (following symlinks). A negative id keeps
// the current one.
func (f *FS) Chown(name string, uid, gid int) error {
	return f.setAttr("chown", name, func(in *inode) {
		u, g := in.uid(), in.gid()
		if uid >= 0 {
			u = uint32(uid)
		}
		if gid >= 0 {
			g = uint32(gid)
		}
		in.setOwner(u, g)
	})
}

// Chtimes sets the access and modification times of name (following
// symlinks). A zero time keeps the current value.
func (f *FS) Chtimes(name string, atime, mtime time.Time) error {
	return f.setAttr("chtimes", name, func(in *inode) {
		if !atime.IsZero() {
			in.setAtime(atime)
		}
		if !mtime.IsZero() {
			in.setMtime(mtime)
		}
	})
}

func (f *FS) setAttr(op, name string, change func(*inode)) error {
	return f.update(op, name, func() error {
		r, err := f.walk(op, name, true)
		if err != nil {
			return err
		}
		change(r.in)
		r.in.setCtime(f.now())
		return f.writeInode(r.in)
	})
}
