// Package guestfs defines the interface through which xen2kvm reads and
// edits files inside a guest, whatever holds them: an ext2/3/4 filesystem
// on a block device (package extfs), a host directory (DirFS, for tests and
// fixtures), or several of those mounted together the way the guest's
// fstab mounts them.
//
// Names follow io/fs: slash-separated, unrooted ("etc/fstab", "." for the
// root), validated with fs.ValidPath.
package guestfs

import (
	"errors"
	"io/fs"
	"time"
)

// FS is a guest filesystem that can be read like an io/fs.FS and edited
// through explicit write methods. Write methods fail with fs.ErrPermission
// on a read-only FS.
type FS interface {
	fs.FS
	fs.ReadFileFS
	fs.ReadDirFS
	fs.StatFS

	// Lstat is Stat without following a final symlink.
	Lstat(name string) (fs.FileInfo, error)
	// ReadLink returns a symlink's target.
	ReadLink(name string) (string, error)

	// WriteFile creates name or replaces its whole content. An existing
	// file keeps its mode, owner and other inodes' hard links; a new file
	// gets perm and owner 0:0.
	WriteFile(name string, data []byte, perm fs.FileMode) error
	Mkdir(name string, perm fs.FileMode) error
	// Symlink creates newname as a symbolic link to oldname.
	Symlink(oldname, newname string) error
	Rename(oldname, newname string) error
	// Remove removes a file, a symlink or an empty directory.
	Remove(name string) error
	Chmod(name string, mode fs.FileMode) error
	Chown(name string, uid, gid int) error
	Chtimes(name string, atime, mtime time.Time) error
}

// Stat is what FileInfo.Sys returns for files of a guest filesystem, where
// the implementation knows it.
type Stat struct {
	Ino   uint64
	Nlink uint32
	UID   uint32
	GID   uint32
	Rdev  uint64 // device number of character and block devices
}

// ErrNoXattr means a file has no extended attribute of the name asked for
// (ENODATA).
var ErrNoXattr = errors.New("no such extended attribute")

// XattrFS is implemented by filesystems that keep extended attributes
// (security.selinux labels, ACLs). Names do not follow a final symlink:
// a symlink's own attributes are read and written, as lgetxattr does.
type XattrFS interface {
	// ListXattr returns the attribute names, sorted.
	ListXattr(name string) ([]string, error)
	// GetXattr returns one attribute's value; a missing one is an error
	// wrapping ErrNoXattr.
	GetXattr(name, attr string) ([]byte, error)
	// SetXattr creates or replaces one attribute.
	SetXattr(name, attr string, value []byte) error
	// RemoveXattr removes one attribute.
	RemoveXattr(name, attr string) error
}
