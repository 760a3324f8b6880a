package extfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

var (
	errNotDir  = syscall.ENOTDIR
	errIsDir   = syscall.EISDIR
	errLoop    = syscall.ELOOP
	errInvalid = fs.ErrInvalid
)

const maxSymlinks = 40

// maxReadFile bounds ReadFile so a corrupt size cannot exhaust memory;
// larger files are read through Open.
const maxReadFile = 1 << 30

// resolved is the result of a path walk.
type resolved struct {
	in     *inode
	parent *inode // directory holding the final component (nil for the root)
	name   string // final component as found in parent
}

// walk resolves name. follow tells whether a final symlink is followed.
func (f *FS) walk(op, name string, follow bool) (*resolved, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: op, Path: name, Err: errInvalid}
	}
	root, err := f.readInode(rootIno)
	if err != nil {
		return nil, &fs.PathError{Op: op, Path: name, Err: err}
	}
	var comps []string
	if name != "." {
		comps = strings.Split(name, "/")
	}
	r := &resolved{in: root}
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		if c == "" || c == "." {
			continue
		}
		if !r.in.isDir() {
			return nil, &fs.PathError{Op: op, Path: name, Err: errNotDir}
		}
		d, ok, err := f.lookup(r.in, c)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if !ok {
			return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
		}
		child, err := f.readInode(d.ino)
		if err != nil {
			return nil, &fs.PathError{Op: op, Path: name, Err: err}
		}
		if child.isSymlink() && (len(comps) > 0 || follow) {
			links++
			if links > maxSymlinks {
				return nil, &fs.PathError{Op: op, Path: name, Err: errLoop}
			}
			target, err := f.readLink(child)
			if err != nil {
				return nil, &fs.PathError{Op: op, Path: name, Err: err}
			}
			comps = append(strings.Split(target, "/"), comps...)
			if strings.HasPrefix(target, "/") {
				r = &resolved{in: root}
			}
			continue
		}
		r = &resolved{in: child, parent: r.in, name: c}
	}
	return r, nil
}

// readLink returns the target of a symlink inode.
func (f *FS) readLink(in *inode) (string, error) {
	size := in.size()
	if size > uint64(f.bs) || size == 0 {
		return "", fmt.Errorf("symlink inode %d: size %d: %w", in.num, size, ErrCorrupt)
	}
	if f.isFastSymlink(in) {
		return string(in.iblock()[:size]), nil
	}
	m, err := f.mapInode(in)
	if err != nil {
		return "", err
	}
	buf := make([]byte, size)
	if _, err := f.readAt(in, m, buf, 0); err != nil {
		return "", err
	}
	return string(buf), nil
}

// Open opens a file or directory for reading. Directories implement
// fs.ReadDirFile.
func (f *FS) Open(name string) (fs.File, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk("open", name, true)
	if err != nil {
		return nil, err
	}
	info := f.fileInfo(path.Base(name), r.in)
	if r.in.isDir() {
		entries, err := f.readDir(r.in)
		if err != nil {
			return nil, &fs.PathError{Op: "open", Path: name, Err: err}
		}
		return &dirFile{info: info, entries: entries}, nil
	}
	m, err := f.mapInode(r.in)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &file{fs: f, name: name, in: r.in, m: m, info: info}, nil
}

// ReadFile reads a whole file, following symlinks.
func (f *FS) ReadFile(name string) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk("readfile", name, true)
	if err != nil {
		return nil, err
	}
	if r.in.isDir() {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: errIsDir}
	}
	data, err := f.readAll(r.in)
	if err != nil {
		return nil, &fs.PathError{Op: "readfile", Path: name, Err: err}
	}
	return data, nil
}

func (f *FS) readAll(in *inode) ([]byte, error) {
	if in.size() > maxReadFile {
		return nil, fmt.Errorf("inode %d: %d bytes is too large to read at once", in.num, in.size())
	}
	m, err := f.mapInode(in)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, in.size())
	n, err := f.readAt(in, m, buf, 0)
	return buf[:n], err
}

// ReadDir reads a directory, sorted by name, without "." and "..".
func (f *FS) ReadDir(name string) ([]fs.DirEntry, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk("readdir", name, true)
	if err != nil {
		return nil, err
	}
	if !r.in.isDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errNotDir}
	}
	entries, err := f.readDir(r.in)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: err}
	}
	return entries, nil
}

func (f *FS) readDir(dir *inode) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	var inner error
	err := f.forEachEntry(dir, func(d dirent) bool {
		if d.name == "." || d.name == ".." {
			return true
		}
		e := &dirEntry{fs: f, name: d.name, ino: d.ino, typ: ftMode(d.ftype)}
		if d.ftype == ftUnknown {
			// No file type in the entry (ext2 without filetype): ask the inode.
			in, err := f.readInode(d.ino)
			if err != nil {
				inner = err
				return false
			}
			e.typ = fsMode(in.mode()).Type()
		}
		out = append(out, e)
		return true
	})
	if err == nil {
		err = inner
	}
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// Stat returns a FileInfo for name, following symlinks.
func (f *FS) Stat(name string) (fs.FileInfo, error) { return f.stat("stat", name, true) }

// Lstat returns a FileInfo for name without following a final symlink.
func (f *FS) Lstat(name string) (fs.FileInfo, error) { return f.stat("lstat", name, false) }

func (f *FS) stat(op, name string, follow bool) (fs.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk(op, name, follow)
	if err != nil {
		return nil, err
	}
	return f.fileInfo(path.Base(name), r.in), nil
}

// ReadLink returns the target of the symlink name.
func (f *FS) ReadLink(name string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.walk("readlink", name, false)
	if err != nil {
		return "", err
	}
	if !r.in.isSymlink() {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: errInvalid}
	}
	t, err := f.readLink(r.in)
	if err != nil {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: err}
	}
	return t, nil
}

func (f *FS) fileInfo(name string, in *inode) *fileInfo {
	if name == "." || name == "/" {
		name = "."
	}
	return &fileInfo{
		name:  name,
		size:  int64(in.size()),
		mode:  fsMode(in.mode()),
		mtime: in.mtime(),
		sys: &guestfs.Stat{
			Ino:   uint64(in.num),
			Nlink: uint32(in.links()),
			UID:   in.uid(),
			GID:   in.gid(),
			Rdev:  f.rdevOf(in),
		},
	}
}

func (f *FS) rdevOf(in *inode) uint64 {
	switch in.fileType() {
	case sIFCHR, sIFBLK:
		return in.rdev()
	}
	return 0
}

type fileInfo struct {
	name  string
	size  int64
	mode  fs.FileMode
	mtime time.Time
	sys   *guestfs.Stat
}

func (i *fileInfo) Name() string       { return i.name }
func (i *fileInfo) Size() int64        { return i.size }
func (i *fileInfo) Mode() fs.FileMode  { return i.mode }
func (i *fileInfo) ModTime() time.Time { return i.mtime }
func (i *fileInfo) IsDir() bool        { return i.mode.IsDir() }
func (i *fileInfo) Sys() any           { return i.sys }

type dirEntry struct {
	fs   *FS
	name string
	ino  uint32
	typ  fs.FileMode
}

func (e *dirEntry) Name() string      { return e.name }
func (e *dirEntry) IsDir() bool       { return e.typ.IsDir() }
func (e *dirEntry) Type() fs.FileMode { return e.typ }
func (e *dirEntry) Info() (fs.FileInfo, error) {
	e.fs.mu.Lock()
	defer e.fs.mu.Unlock()
	in, err := e.fs.readInode(e.ino)
	if err != nil {
		return nil, err
	}
	return e.fs.fileInfo(e.name, in), nil
}

// file is an open regular file (or other non-directory).
type file struct {
	fs     *FS
	name   string
	in     *inode
	m      *blockMap
	info   *fileInfo
	off    int64
	closed bool
}

func (fl *file) Stat() (fs.FileInfo, error) { return fl.info, nil }
func (fl *file) Close() error {
	if fl.closed {
		return fs.ErrClosed
	}
	fl.closed = true
	return nil
}

func (fl *file) Read(p []byte) (int, error) {
	n, err := fl.ReadAt(p, fl.off)
	fl.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// ReadAt implements io.ReaderAt.
func (fl *file) ReadAt(p []byte, off int64) (int, error) {
	if fl.closed {
		return 0, fs.ErrClosed
	}
	if off < 0 {
		return 0, &fs.PathError{Op: "read", Path: fl.name, Err: errInvalid}
	}
	fl.fs.mu.Lock()
	n, err := fl.fs.readAt(fl.in, fl.m, p, off)
	fl.fs.mu.Unlock()
	if err != nil {
		return n, &fs.PathError{Op: "read", Path: fl.name, Err: err}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Seek implements io.Seeker.
func (fl *file) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += fl.off
	case io.SeekEnd:
		offset += fl.info.size
	default:
		return 0, errors.New("seek: invalid whence")
	}
	if offset < 0 {
		return 0, errors.New("seek: negative position")
	}
	fl.off = offset
	return offset, nil
}

// dirFile is an open directory.
type dirFile struct {
	info    *fileInfo
	entries []fs.DirEntry
	pos     int
}

func (d *dirFile) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *dirFile) Close() error               { return nil }
func (d *dirFile) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: errIsDir}
}

func (d *dirFile) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.pos:]
	if n <= 0 {
		d.pos = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	n = min(n, len(rest))
	d.pos += n
	return rest[:n], nil
}
