package extfs

import (
	"bytes"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

// Extended attributes live in two places: after i_extra_isize in a large
// inode (a 4-byte magic, then entries; value offsets count from the first
// entry) and in one block named by i_file_acl (a 32-byte header, then
// entries; value offsets count from the block start). Entries are 16 bytes
// plus the name padded to 4; values are padded to 4 and packed from the
// end of their area. Names are stored without their namespace prefix,
// which is an index instead.

const (
	// xattrRefMax is how many inodes may share one attribute block.
	xattrRefMax     = 1024
	xattrHeaderSize = 32
	xattrEntrySize  = 16
)

// xattrPrefixes maps name indexes to the namespace prefix they stand for.
// Index 2 and 3 are the POSIX ACLs, whose stored name is empty.
var xattrPrefixes = []struct {
	index  uint8
	prefix string
}{
	{2, "system.posix_acl_access"},
	{3, "system.posix_acl_default"},
	{1, "user."},
	{4, "trusted."},
	{6, "security."},
	{7, "system."},
}

// xattr is one extended attribute in its on-disk form.
type xattr struct {
	index uint8
	name  string // without the prefix
	value []byte
}

func (x xattr) fullName() string {
	for _, p := range xattrPrefixes {
		if p.index == x.index {
			return p.prefix + x.name
		}
	}
	return fmt.Sprintf("unknown%d.%s", x.index, x.name)
}

// splitXattrName turns "security.selinux" into index 6 and "selinux".
func splitXattrName(name string) (uint8, string, error) {
	for _, p := range xattrPrefixes {
		if p.index == 2 || p.index == 3 {
			if name == p.prefix {
				return p.index, "", nil
			}
			continue
		}
		if rest, ok := strings.CutPrefix(name, p.prefix); ok && rest != "" {
			if len(rest) > 255 {
				return 0, "", syscall.ERANGE
			}
			return p.index, rest, nil
		}
	}
	return 0, "", syscall.EOPNOTSUPP
}

func pad4(n int) int { return (n + 3) &^ 3 }

// xattrHash is ext4_xattr_hash_entry.
func xattrHash(name string, value []byte) uint32 {
	var h uint32
	for i := 0; i < len(name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(int32(int8(name[i])))
	}
	if len(value) > 0 {
		v := make([]byte, pad4(len(value)))
		copy(v, value)
		for i := 0; i < len(v); i += 4 {
			h = h<<16 ^ h>>16 ^ le32(v, i)
		}
	}
	return h
}

// parseXattrEntries reads the entries of one area. area is the whole
// region the value offsets count from; first is where the entries start.
func parseXattrEntries(area []byte, first int, where string) ([]xattr, error) {
	var out []xattr
	off := first
	for {
		if off+4 > len(area) {
			return nil, fmt.Errorf("%s: entry list runs off the end: %w", where, ErrCorrupt)
		}
		if le32(area, off) == 0 {
			return out, nil
		}
		if off+xattrEntrySize > len(area) {
			return nil, fmt.Errorf("%s: entry at %d runs off the end: %w", where, off, ErrCorrupt)
		}
		nameLen := int(area[off])
		index := area[off+1]
		valOff := int(le16(area, off+2))
		valInum := le32(area, off+4)
		valSize := int(le32(area, off+8))
		if off+xattrEntrySize+nameLen > len(area) {
			return nil, fmt.Errorf("%s: name of entry at %d runs off the end: %w", where, off, ErrCorrupt)
		}
		name := string(area[off+xattrEntrySize : off+xattrEntrySize+nameLen])
		if index == 0 {
			return nil, fmt.Errorf("%s: entry at %d has no name index: %w", where, off, ErrCorrupt)
		}
		if valInum != 0 {
			return nil, fmt.Errorf("%s: attribute %q is stored in inode %d (ea_inode): %w", where, name, valInum, ErrUnsupported)
		}
		if valSize < 0 || valOff+valSize > len(area) || valOff < first && valSize > 0 {
			return nil, fmt.Errorf("%s: value of %q (%d bytes at %d) outside the area: %w", where, name, valSize, valOff, ErrCorrupt)
		}
		out = append(out, xattr{index: index, name: name, value: bytes.Clone(area[valOff : valOff+valSize])})
		if len(out) > len(area)/4 {
			return nil, fmt.Errorf("%s: too many entries: %w", where, ErrCorrupt)
		}
		off += pad4(xattrEntrySize + nameLen)
	}
}

// inodeXattrArea returns the in-inode attribute area (starting with the
// magic), or nil when the inode has none.
func (in *inode) xattrArea() []byte {
	if len(in.raw) <= 128 {
		return nil
	}
	start := 128 + int(le16(in.raw, 0x80))
	if start+4 > len(in.raw) {
		return nil
	}
	return in.raw[start:]
}

// readXattrs returns all attributes of an inode, in-inode ones first.
func (f *FS) readXattrs(in *inode) ([]xattr, error) {
	var out []xattr
	if area := in.xattrArea(); area != nil && le32(area, 0) == xattrMagic {
		xs, err := parseXattrEntries(area[4:], 0, fmt.Sprintf("inode %d xattrs", in.num))
		if err != nil {
			return nil, err
		}
		out = append(out, xs...)
	}
	if acl := in.fileACL(); acl != 0 {
		b, err := f.readBlock(acl)
		if err != nil {
			return nil, fmt.Errorf("inode %d xattr block: %w", in.num, err)
		}
		if le32(b, 0) != xattrMagic {
			return nil, fmt.Errorf("inode %d: xattr block %d has a bad magic: %w", in.num, acl, ErrCorrupt)
		}
		if n := le32(b, 8); n != 1 {
			return nil, fmt.Errorf("inode %d: xattr block %d spans %d blocks: %w", in.num, acl, n, ErrCorrupt)
		}
		xs, err := parseXattrEntries(b, xattrHeaderSize, fmt.Sprintf("inode %d xattr block %d", in.num, acl))
		if err != nil {
			return nil, err
		}
		out = append(out, xs...)
	}
	return out, nil
}

// packXattrs lays out entries and values in area (zeroed first); value
// offsets count from the start of area and entries start at first. It
// returns how many of xs fit, in order.
func packXattrs(area []byte, first int, xs []xattr) int {
	clear(area)
	entryEnd := first     // end of the entries written so far
	valStart := len(area) // values grow down from the end
	n := 0
	for _, x := range xs {
		esize := pad4(xattrEntrySize + len(x.name))
		vsize := pad4(len(x.value))
		// Keep 4 bytes for the terminating zero word.
		if entryEnd+esize+4 > valStart-vsize {
			break
		}
		vo := valStart
		if len(x.value) > 0 {
			vo = valStart - vsize
			copy(area[vo:], x.value)
			valStart = vo
		} else {
			vo = 0
		}
		e := area[entryEnd:]
		e[0] = byte(len(x.name))
		e[1] = x.index
		put16(e, 2, uint16(vo))
		put32(e, 4, 0)
		put32(e, 8, uint32(len(x.value)))
		put32(e, 12, xattrHash(x.name, x.value))
		copy(e[xattrEntrySize:], x.name)
		entryEnd += esize
		n++
	}
	return n
}

// blockXattrHash is ext4_xattr_rehash over the entries of a block.
func blockXattrHash(b []byte) uint32 {
	var h uint32
	for off := xattrHeaderSize; off+4 <= len(b) && le32(b, off) != 0; off += pad4(xattrEntrySize + int(b[off])) {
		eh := le32(b, off+12)
		if eh == 0 {
			return 0
		}
		h = h<<16 ^ h>>16 ^ eh
	}
	return h
}

// storeXattrs rewrites all attributes of in: as many as fit in the inode,
// the rest in an attribute block (copied first when shared). The caller
// writes in.
func (f *FS) storeXattrs(in *inode, xs []xattr) error {
	// Block entries are kept sorted as the kernel keeps them.
	sort.SliceStable(xs, func(i, j int) bool {
		a, b := xs[i], xs[j]
		// security.selinux first so it stays in the inode, where it
		// is read at every lookup.
		if sa, sb := a.index == 6 && a.name == "selinux", b.index == 6 && b.name == "selinux"; sa != sb {
			return sa
		}
		if a.index != b.index {
			return a.index < b.index
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return a.name < b.name
	})
	n := 0
	if area := in.xattrArea(); area != nil {
		body := area[4:]
		n = packXattrs(body, 0, xs)
		if n > 0 {
			put32(area, 0, xattrMagic)
		} else {
			clear(area)
		}
	}
	rest := xs[n:]
	old := in.fileACL()
	if len(rest) == 0 {
		if old != 0 {
			if err := f.dropXattrBlock(in, old); err != nil {
				return err
			}
		}
		return nil
	}
	// Values count from the block start: pack into the whole block with
	// entries after the header.
	b := make([]byte, f.bs)
	if m := packXattrs(b, xattrHeaderSize, rest); m < len(rest) {
		return fmt.Errorf("inode %d: extended attributes do not fit in one block: %w", in.num, syscall.ENOSPC)
	}
	put32(b, 0, xattrMagic)
	put32(b, 4, 1)
	put32(b, 8, 1)
	put32(b, 12, blockXattrHash(b))
	// Share an identical block written earlier, as the kernel does
	// (its mbcache): most files of a guest carry the same label set.
	h := le32(b, 12)
	if h != 0 {
		for _, cand := range f.xattrBlocks[h] {
			if cand == old {
				continue
			}
			cb, err := f.readBlock(cand)
			if err != nil || le32(cb, 0) != xattrMagic || le32(cb, 4) >= xattrRefMax || !bytes.Equal(cb[8:], b[8:]) {
				continue
			}
			if old != 0 {
				if err := f.dropXattrBlock(in, old); err != nil {
					return err
				}
			}
			put32(cb, 4, le32(cb, 4)+1)
			f.writeBlock(cand, cb)
			put32(in.raw, 0x68, uint32(cand))
			put16(in.raw, 0x76, uint16(cand>>32))
			f.addInodeBlocks(in, 1)
			return nil
		}
	}
	blk := old
	if old != 0 {
		ob, err := f.readBlock(old)
		if err != nil {
			return err
		}
		if le32(ob, 0) != xattrMagic {
			return fmt.Errorf("inode %d: bad xattr block %d: %w", in.num, old, ErrCorrupt)
		}
		if le32(ob, 4) > 1 {
			if err := f.dropXattrBlock(in, old); err != nil {
				return err
			}
			blk = 0
		}
	}
	if blk == 0 {
		runs, err := f.allocBlocks(f.inodeGroup(in.num), 1)
		if err != nil {
			return err
		}
		blk = runs[0].start
		put32(in.raw, 0x68, uint32(blk))
		put16(in.raw, 0x76, uint16(blk>>32))
		f.addInodeBlocks(in, 1)
	}
	f.writeBlock(blk, b)
	if h != 0 {
		if f.xattrBlocks == nil {
			f.xattrBlocks = map[uint32][]uint64{}
		}
		if !slices.Contains(f.xattrBlocks[h], blk) {
			f.xattrBlocks[h] = append(f.xattrBlocks[h], blk)
		}
	}
	if f.sb.compat&compatExtAttr == 0 {
		f.sb.compat |= compatExtAttr
		f.sbDirty = true
	}
	return nil
}

// dropXattrBlock detaches in from its attribute block, freeing the block
// when in was its last user.
func (f *FS) dropXattrBlock(in *inode, blk uint64) error {
	b, err := f.readBlock(blk)
	if err != nil {
		return err
	}
	if le32(b, 0) != xattrMagic {
		return fmt.Errorf("inode %d: bad xattr block %d: %w", in.num, blk, ErrCorrupt)
	}
	if refs := le32(b, 4); refs > 1 {
		put32(b, 4, refs-1)
		f.writeBlock(blk, b)
	} else {
		if err := f.freeBlockRuns([]run{{blk, 1}}); err != nil {
			return err
		}
		h := le32(b, 12)
		f.xattrBlocks[h] = slices.DeleteFunc(f.xattrBlocks[h], func(x uint64) bool { return x == blk })
	}
	put32(in.raw, 0x68, 0)
	put16(in.raw, 0x76, 0)
	f.addInodeBlocks(in, -1)
	return nil
}

// addInodeBlocks changes i_blocks by delta filesystem blocks.
func (f *FS) addInodeBlocks(in *inode, delta int64) {
	per := int64(f.bs / 512)
	if in.flags()&flagHugeFile != 0 {
		per = 1
	}
	n := int64(le32(in.raw, 0x1C))
	if f.sb.roCompat&roCompatHugeFile != 0 {
		n |= int64(le16(in.raw, 0x74)) << 32
	}
	n += delta * per
	if n < 0 {
		n = 0
	}
	put32(in.raw, 0x1C, uint32(n))
	if f.sb.roCompat&roCompatHugeFile != 0 {
		put16(in.raw, 0x74, uint16(n>>32))
	}
}

// ListXattr returns the names of name's extended attributes
// ("security.selinux", "user.foo"), sorted. A final symlink is not
// followed: a symlink's own attributes are listed, as llistxattr does.
func (f *FS) ListXattr(name string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk("listxattr", name, false)
	if err != nil {
		return nil, err
	}
	xs, err := f.readXattrs(r.in)
	if err != nil {
		return nil, &fs.PathError{Op: "listxattr", Path: name, Err: err}
	}
	var out []string
	for _, x := range xs {
		out = append(out, x.fullName())
	}
	slices.Sort(out)
	return out, nil
}

// GetXattr returns the value of attribute attr of name (a final symlink
// is not followed). A missing attribute is guestfs.ErrNoXattr.
func (f *FS) GetXattr(name, attr string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk("getxattr", name, false)
	if err != nil {
		return nil, err
	}
	xs, err := f.readXattrs(r.in)
	if err != nil {
		return nil, &fs.PathError{Op: "getxattr", Path: name, Err: err}
	}
	for _, x := range xs {
		if x.fullName() == attr {
			return x.value, nil
		}
	}
	return nil, &fs.PathError{Op: "getxattr", Path: name, Err: fmt.Errorf("%s: %w", attr, guestfs.ErrNoXattr)}
}

// SetXattr creates or replaces attribute attr of name (a final symlink is
// not followed). Names outside the user., trusted., security. and system.
// namespaces are refused.
func (f *FS) SetXattr(name, attr string, value []byte) error {
	index, short, err := splitXattrName(attr)
	if err != nil {
		return &fs.PathError{Op: "setxattr", Path: name, Err: fmt.Errorf("%s: %w", attr, err)}
	}
	return f.changeXattrs("setxattr", name, func(xs []xattr) ([]xattr, error) {
		for i := range xs {
			if xs[i].index == index && xs[i].name == short {
				xs[i].value = bytes.Clone(value)
				return xs, nil
			}
		}
		return append(xs, xattr{index: index, name: short, value: bytes.Clone(value)}), nil
	})
}

// RemoveXattr removes attribute attr of name (a final symlink is not
// followed); a missing one is guestfs.ErrNoXattr.
func (f *FS) RemoveXattr(name, attr string) error {
	return f.changeXattrs("removexattr", name, func(xs []xattr) ([]xattr, error) {
		for i := range xs {
			if xs[i].fullName() == attr {
				return slices.Delete(xs, i, i+1), nil
			}
		}
		return nil, fmt.Errorf("%s: %w", attr, guestfs.ErrNoXattr)
	})
}

func (f *FS) changeXattrs(op, name string, change func([]xattr) ([]xattr, error)) error {
	return f.update(op, name, func() error {
		r, err := f.walk(op, name, false)
		if err != nil {
			return err
		}
		xs, err := f.readXattrs(r.in)
		if err != nil {
			return err
		}
		if xs, err = change(xs); err != nil {
			return err
		}
		if err := f.storeXattrs(r.in, xs); err != nil {
			return err
		}
		r.in.setCtime(f.now())
		return f.writeInode(r.in)
	})
}

var _ guestfs.XattrFS = (*FS)(nil)
