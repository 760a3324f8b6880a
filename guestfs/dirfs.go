package guestfs

import (
	"errors"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// maxSymlinks bounds symlink resolution, as Linux's MAXSYMLINKS does.
const maxSymlinks = 40

// errLoop is returned when resolving a name meets too many symlinks.
var errLoop = errors.New("too many levels of symbolic links")

// DirFS returns a writable FS over the host directory root, as if root were
// the guest's "/". Symlinks inside the tree are resolved the way the guest
// would resolve them: an absolute target starts again at root, and ".."
// never climbs above it, so no name reaches a host file outside root.
//
//	fsys := guestfs.DirFS("testdata/rhel5")
//	b, err := fsys.ReadFile("etc/grub.conf") // follows ../boot/grub/grub.conf
func DirFS(root string) FS {
	return &dirFS{root: filepath.Clean(root)}
}

type dirFS struct {
	root string
}

// host turns a symlink-free guest path into a host path.
func (d *dirFS) host(p string) string {
	if p == "." {
		return d.root
	}
	return filepath.Join(d.root, filepath.FromSlash(p))
}

// resolve resolves name to a guest path without symlinks in any component,
// following a final symlink when follow is set. The final component need
// not exist.
func (d *dirFS) resolve(op, name string, follow bool) (string, error) {
	if !fs.ValidPath(name) {
		return "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	p, err := resolvePath(name, follow, func(p string) (fs.FileInfo, error) {
		return os.Lstat(d.host(p))
	}, func(p string) (string, error) {
		return os.Readlink(d.host(p))
	})
	if err != nil {
		return "", &fs.PathError{Op: op, Path: name, Err: unwrapPath(err)}
	}
	return p, nil
}

// resolvePath walks name one component at a time from the guest root,
// replacing each symlink by its target (absolute targets restart at the
// root, ".." stops at the root). lstat and readlink see only symlink-free
// paths. Only the final component may be missing.
func resolvePath(name string, follow bool, lstat func(string) (fs.FileInfo, error), readlink func(string) (string, error)) (string, error) {
	var cur []string // resolved components
	todo := splitPath(name)
	hops := 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(cur) > 0 {
				cur = cur[:len(cur)-1]
			}
			continue
		}
		next := append(slices.Clone(cur), c)
		p := strings.Join(next, "/")
		if len(todo) == 0 && !follow {
			cur = next
			continue
		}
		fi, err := lstat(p)
		if errors.Is(err, fs.ErrNotExist) && len(todo) == 0 {
			cur = next // the caller's operation may create it
			continue
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			if len(todo) > 0 && !fi.IsDir() {
				return "", syscall.ENOTDIR
			}
			cur = next
			continue
		}
		hops++
		if hops > maxSymlinks {
			return "", errLoop
		}
		target, err := readlink(p)
		if err != nil {
			return "", err
		}
		if strings.HasPrefix(target, "/") {
			cur = nil
		}
		todo = append(splitPath(target), todo...)
	}
	return joinPath(cur), nil
}

func splitPath(p string) []string {
	return strings.Split(strings.Trim(p, "/"), "/")
}

func joinPath(c []string) string {
	if len(c) == 0 {
		return "."
	}
	return strings.Join(c, "/")
}

// unwrapPath drops the host path of an *fs.PathError so that errors name
// guest paths only.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}

func (d *dirFS) fail(op, name string, err error) error {
	return &fs.PathError{Op: op, Path: name, Err: unwrapPath(err)}
}

func (d *dirFS) Open(name string) (fs.File, error) {
	p, err := d.resolve("open", name, true)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(d.host(p))
	if err != nil {
		return nil, d.fail("open", name, err)
	}
	return &dirFile{File: f, name: path.Base(name)}, nil
}

func (d *dirFS) ReadFile(name string) ([]byte, error) {
	p, err := d.resolve("read", name, true)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(d.host(p))
	if err != nil {
		return nil, d.fail("read", name, err)
	}
	return b, nil
}

func (d *dirFS) ReadDir(name string) ([]fs.DirEntry, error) {
	p, err := d.resolve("readdir", name, true)
	if err != nil {
		return nil, err
	}
	es, err := os.ReadDir(d.host(p))
	if err != nil {
		return nil, d.fail("readdir", name, err)
	}
	out := make([]fs.DirEntry, len(es))
	for i, e := range es {
		out[i] = dirEntry{e}
	}
	return out, nil
}

func (d *dirFS) Stat(name string) (fs.FileInfo, error) {
	p, err := d.resolve("stat", name, true)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(d.host(p))
	if err != nil {
		return nil, d.fail("stat", name, err)
	}
	return fileInfo{fi, path.Base(name)}, nil
}

func (d *dirFS) Lstat(name string) (fs.FileInfo, error) {
	p, err := d.resolve("lstat", name, false)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(d.host(p))
	if err != nil {
		return nil, d.fail("lstat", name, err)
	}
	return fileInfo{fi, path.Base(name)}, nil
}

func (d *dirFS) ReadLink(name string) (string, error) {
	p, err := d.resolve("readlink", name, false)
	if err != nil {
		return "", err
	}
	t, err := os.Readlink(d.host(p))
	if err != nil {
		return "", d.fail("readlink", name, err)
	}
	return t, nil
}

func (d *dirFS) WriteFile(name string, data []byte, perm fs.FileMode) error {
	p, err := d.resolve("write", name, true)
	if err != nil {
		return err
	}
	if p == "." {
		return d.fail("write", name, syscall.EISDIR)
	}
	f, err := os.OpenFile(d.host(p), os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm.Perm())
	if err != nil {
		return d.fail("write", name, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return d.fail("write", name, err)
	}
	return nil
}

func (d *dirFS) Mkdir(name string, perm fs.FileMode) error {
	p, err := d.resolve("mkdir", name, false)
	if err != nil {
		return err
	}
	if err := os.Mkdir(d.host(p), perm.Perm()); err != nil {
		return d.fail("mkdir", name, err)
	}
	return nil
}

func (d *dirFS) Symlink(oldname, newname string) error {
	p, err := d.resolve("symlink", newname, false)
	if err != nil {
		return err
	}
	// The target is stored verbatim; it is only ever resolved inside the
	// guest tree.
	if err := os.Symlink(oldname, d.host(p)); err != nil {
		return d.fail("symlink", newname, err)
	}
	return nil
}

func (d *dirFS) Rename(oldname, newname string) error {
	po, err := d.resolve("rename", oldname, false)
	if err != nil {
		return err
	}
	pn, err := d.resolve("rename", newname, false)
	if err != nil {
		return err
	}
	if po == "." || pn == "." {
		return d.fail("rename", oldname, fs.ErrInvalid)
	}
	if err := os.Rename(d.host(po), d.host(pn)); err != nil {
		return d.fail("rename", oldname, err)
	}
	return nil
}

func (d *dirFS) Remove(name string) error {
	p, err := d.resolve("remove", name, false)
	if err != nil {
		return err
	}
	if p == "." {
		return d.fail("remove", name, fs.ErrInvalid)
	}
	if err := os.Remove(d.host(p)); err != nil {
		return d.fail("remove", name, err)
	}
	return nil
}

func (d *dirFS) Chmod(name string, mode fs.FileMode) error {
	p, err := d.resolve("chmod", name, true)
	if err != nil {
		return err
	}
	if err := os.Chmod(d.host(p), mode); err != nil {
		return d.fail("chmod", name, err)
	}
	return nil
}

func (d *dirFS) Chown(name string, uid, gid int) error {
	p, err := d.resolve("chown", name, true)
	if err != nil {
		return err
	}
	if err := os.Chown(d.host(p), uid, gid); err != nil {
		return d.fail("chown", name, err)
	}
	return nil
}

func (d *dirFS) Chtimes(name string, atime, mtime time.Time) error {
	p, err := d.resolve("chtimes", name, true)
	if err != nil {
		return err
	}
	if err := os.Chtimes(d.host(p), atime, mtime); err != nil {
		return d.fail("chtimes", name, err)
	}
	return nil
}

// dirFile is an open host file; its ReadDir and Stat report guest data.
type dirFile struct {
	*os.File
	name string
}

func (f *dirFile) Stat() (fs.FileInfo, error) {
	fi, err := f.File.Stat()
	if err != nil {
		return nil, err
	}
	return fileInfo{fi, f.name}, nil
}

func (f *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	es, err := f.File.ReadDir(n)
	out := make([]fs.DirEntry, len(es))
	for i, e := range es {
		out[i] = dirEntry{e}
	}
	return out, err
}

// fileInfo renames a host FileInfo to the guest name and reports Sys as a
// *Stat.
type fileInfo struct {
	fs.FileInfo
	name string
}

func (fi fileInfo) Name() string { return fi.name }

func (fi fileInfo) Sys() any {
	st, ok := fi.FileInfo.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	return &Stat{
		Ino:   st.Ino,
		Nlink: uint32(st.Nlink),
		UID:   st.Uid,
		GID:   st.Gid,
		Rdev:  uint64(st.Rdev),
	}
}

type dirEntry struct{ fs.DirEntry }

func (e dirEntry) Info() (fs.FileInfo, error) {
	fi, err := e.DirEntry.Info()
	if err != nil {
		return nil, err
	}
	return fileInfo{fi, fi.Name()}, nil
}
