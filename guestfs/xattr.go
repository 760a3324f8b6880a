package guestfs

import (
	"errors"
	"fmt"
	"io/fs"
)

// ErrNotSupported is returned for an optional capability (extended
// attributes) the filesystem holding a name does not have.
var ErrNotSupported = errors.New("not supported by this filesystem")

var _ XattrFS = (*Mounts)(nil)

// xattrFS resolves name (not following a final symlink) to the mounted
// filesystem that holds it, which must keep extended attributes.
func (m *Mounts) xattrFS(op, name string) (XattrFS, string, error) {
	f, rel, err := m.resolve(op, name, false)
	if err != nil {
		return nil, "", err
	}
	x, ok := f.(XattrFS)
	if !ok {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("extended attributes: %w", ErrNotSupported)}
	}
	return x, rel, nil
}

// ListXattr lists name's extended attributes on the filesystem that holds it.
func (m *Mounts) ListXattr(name string) ([]string, error) {
	x, rel, err := m.xattrFS("listxattr", name)
	if err != nil {
		return nil, err
	}
	out, err := x.ListXattr(rel)
	return out, rename(err, "listxattr", name)
}

// GetXattr reads one extended attribute of name.
func (m *Mounts) GetXattr(name, attr string) ([]byte, error) {
	x, rel, err := m.xattrFS("getxattr", name)
	if err != nil {
		return nil, err
	}
	out, err := x.GetXattr(rel, attr)
	return out, rename(err, "getxattr", name)
}

// SetXattr sets one extended attribute of name.
func (m *Mounts) SetXattr(name, attr string, value []byte) error {
	x, rel, err := m.xattrFS("setxattr", name)
	if err != nil {
		return err
	}
	return rename(x.SetXattr(rel, attr, value), "setxattr", name)
}

// RemoveXattr removes one extended attribute of name.
func (m *Mounts) RemoveXattr(name, attr string) error {
	x, rel, err := m.xattrFS("removexattr", name)
	if err != nil {
		return err
	}
	return rename(x.RemoveXattr(rel, attr), "removexattr", name)
}
