package guestfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// ErrCrossMount is returned by Rename when the two names lie on different
// mounted filesystems.
var ErrCrossMount = errors.New("rename across mounted filesystems")

// Mounts presents several filesystems as one, the way the guest mounts
// them: a name belongs to the filesystem mounted at its longest mount-point
// prefix. Symlinks are resolved by Mounts itself, across mount points, with
// the union's root as "/" (so /etc/grub.conf -> ../boot/grub/grub.conf
// reaches the separate /boot filesystem).
//
//	m := guestfs.NewMounts(rootFS)
//	if err := m.Mount("boot", bootFS); err != nil { ... }
//	b, err := m.ReadFile("etc/grub.conf")
type Mounts struct {
	points []mount // sorted, longest dir first
}

type mount struct {
	dir  string // "." for the root
	fsys FS
}

var _ FS = (*Mounts)(nil)

// NewMounts returns a union with root mounted at "/".
func NewMounts(root FS) *Mounts {
	return &Mounts{points: []mount{{dir: ".", fsys: root}}}
}

// Mount mounts fsys at dir (an io/fs name such as "boot"). A later mount
// at the same dir replaces the earlier one.
func (m *Mounts) Mount(dir string, fsys FS) error {
	if !fs.ValidPath(dir) {
		return &fs.PathError{Op: "mount", Path: dir, Err: fs.ErrInvalid}
	}
	if fsys == nil {
		return &fs.PathError{Op: "mount", Path: dir, Err: errors.New("nil filesystem")}
	}
	for i := range m.points {
		if m.points[i].dir == dir {
			m.points[i].fsys = fsys
			return nil
		}
	}
	m.points = append(m.points, mount{dir: dir, fsys: fsys})
	sort.SliceStable(m.points, func(i, j int) bool { return depth(m.points[i].dir) > depth(m.points[j].dir) })
	return nil
}

// MountPoints lists the mount points, "." first.
func (m *Mounts) MountPoints() []string {
	var out []string
	for _, p := range m.points {
		out = append(out, p.dir)
	}
	slices.Sort(out)
	return out
}

func depth(dir string) int {
	if dir == "." {
		return 0
	}
	return strings.Count(dir, "/") + 1
}

// lookup returns the filesystem holding the symlink-free name p and p
// relative to its mount point.
func (m *Mounts) lookup(p string) (FS, string) {
	for _, mp := range m.points {
		if mp.dir == "." {
			return mp.fsys, p
		}
		if p == mp.dir {
			return mp.fsys, "."
		}
		if strings.HasPrefix(p, mp.dir+"/") {
			return mp.fsys, p[len(mp.dir)+1:]
		}
	}
	// Unreachable: the root is always mounted.
	return m.points[len(m.points)-1].fsys, p
}

func (m *Mounts) resolve(op, name string, follow bool) (FS, string, error) {
	if !fs.ValidPath(name) {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	p, err := resolvePath(name, follow, func(p string) (fs.FileInfo, error) {
		f, rel := m.lookup(p)
		return f.Lstat(rel)
	}, func(p string) (string, error) {
		f, rel := m.lookup(p)
		return f.ReadLink(rel)
	})
	if err != nil {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: unwrapPath(err)}
	}
	f, rel := m.lookup(p)
	return f, rel, nil
}

// rename gives an error from a mounted filesystem the union's name.
func rename(err error, op, name string) error {
	if err == nil {
		return nil
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return &fs.PathError{Op: pe.Op, Path: name, Err: pe.Err}
	}
	return &fs.PathError{Op: op, Path: name, Err: err}
}

func (m *Mounts) Open(name string) (fs.File, error) {
	f, rel, err := m.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	file, err := f.Open(rel)
	if err != nil {
		return nil, rename(err, "open", name)
	}
	return &mountFile{File: file, m: m, name: name}, nil
}

// mountFile is an open file of a Mounts: its Stat uses the union's name and
// its ReadDir lists what Mounts.ReadDir lists.
type mountFile struct {
	fs.File
	m       *Mounts
	name    string
	entries []fs.DirEntry
	read    bool
}

func (f *mountFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return renamedInfo{fi, path.Base(f.name)}, nil
}

func (f *mountFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if _, ok := f.File.(fs.ReadDirFile); !ok {
		return nil, &fs.PathError{Op: "readdir", Path: f.name, Err: syscall.ENOTDIR}
	}
	if !f.read {
		es, err := f.m.ReadDir(f.name)
		if err != nil {
			return nil, err
		}
		f.entries, f.read = es, true
	}
	if n <= 0 {
		es := f.entries
		f.entries = nil
		return es, nil
	}
	if len(f.entries) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(f.entries))
	es := f.entries[:n]
	f.entries = f.entries[n:]
	return es, nil
}

func (m *Mounts) ReadFile(name string) ([]byte, error) {
	f, rel, err := m.resolve("read", name, true)
	if err != nil {
		return nil, err
	}
	b, err := f.ReadFile(rel)
	return b, rename(err, "read", name)
}

// ReadDir lists a directory; mount points directly below it are listed
// even where the parent filesystem has no directory for them.
func (m *Mounts) ReadDir(name string) ([]fs.DirEntry, error) {
	f, rel, err := m.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	es, err := f.ReadDir(rel)
	if err != nil {
		return nil, rename(err, "readdir", name)
	}
	// The resolved directory, to find mount points below it.
	dir, _ := resolvePath(name, true, func(p string) (fs.FileInfo, error) {
		f, rel := m.lookup(p)
		return f.Lstat(rel)
	}, func(p string) (string, error) {
		f, rel := m.lookup(p)
		return f.ReadLink(rel)
	})
	for _, mp := range m.points {
		if mp.dir == "." || path.Dir(mp.dir) != dir {
			continue
		}
		base := path.Base(mp.dir)
		i := slices.IndexFunc(es, func(e fs.DirEntry) bool { return e.Name() == base })
		fi, err := mp.fsys.Stat(".")
		if err != nil {
			continue
		}
		e := fs.FileInfoToDirEntry(renamedInfo{fi, base})
		if i >= 0 {
			es[i] = e
		} else {
			es = append(es, e)
		}
	}
	sort.Slice(es, func(i, j int) bool { return es[i].Name() < es[j].Name() })
	return es, nil
}

type renamedInfo struct {
	fs.FileInfo
	name string
}

func (r renamedInfo) Name() string { return r.name }

func (m *Mounts) Stat(name string) (fs.FileInfo, error) {
	f, rel, err := m.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat(rel)
	if err != nil {
		return nil, rename(err, "stat", name)
	}
	return renamedInfo{fi, path.Base(name)}, nil
}

func (m *Mounts) Lstat(name string) (fs.FileInfo, error) {
	f, rel, err := m.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	fi, err := f.Lstat(rel)
	if err != nil {
		return nil, rename(err, "lstat", name)
	}
	return renamedInfo{fi, path.Base(name)}, nil
}

func (m *Mounts) ReadLink(name string) (string, error) {
	f, rel, err := m.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	t, err := f.ReadLink(rel)
	return t, rename(err, "readlink", name)
}

func (m *Mounts) WriteFile(name string, data []byte, perm fs.FileMode) error {
	f, rel, err := m.resolve("write", name, true)
	if err != nil {
		return err
	}
	return rename(f.WriteFile(rel, data, perm), "write", name)
}

func (m *Mounts) Mkdir(name string, perm fs.FileMode) error {
	f, rel, err := m.resolve("mkdir", name, false)
	if err != nil {
		return err
	}
	return rename(f.Mkdir(rel, perm), "mkdir", name)
}

func (m *Mounts) Symlink(oldname, newname string) error {
	f, rel, err := m.resolve("symlink", newname, false)
	if err != nil {
		return err
	}
	return rename(f.Symlink(oldname, rel), "symlink", newname)
}

func (m *Mounts) Rename(oldname, newname string) error {
	fo, ro, err := m.resolve("rename", oldname, false)
	if err != nil {
		return err
	}
	fn, rn, err := m.resolve("rename", newname, false)
	if err != nil {
		return err
	}
	if fo != fn {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fmt.Errorf("to %s: %w", newname, ErrCrossMount)}
	}
	return rename(fo.Rename(ro, rn), "rename", oldname)
}

func (m *Mounts) Remove(name string) error {
	f, rel, err := m.resolve("remove", name, false)
	if err != nil {
		return err
	}
	if rel == "." {
		return &fs.PathError{Op: "remove", Path: name, Err: syscall.EBUSY}
	}
	return rename(f.Remove(rel), "remove", name)
}

func (m *Mounts) Chmod(name string, mode fs.FileMode) error {
	f, rel, err := m.resolve("chmod", name, true)
	if err != nil {
		return err
	}
	return rename(f.Chmod(rel, mode), "chmod", name)
}

func (m *Mounts) Chown(name string, uid, gid int) error {
	f, rel, err := m.resolve("chown", name, true)
	if err != nil {
		return err
	}
	return rename(f.Chown(rel, uid, gid), "chown", name)
}

func (m *Mounts) Chtimes(name string, atime, mtime time.Time) error {
	f, rel, err := m.resolve("chtimes", name, true)
	if err != nil {
		return err
	}
	return rename(f.Chtimes(rel, atime, mtime), "chtimes", name)
}
