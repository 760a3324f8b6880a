package guestgen

import (
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/selinux"
)

// fileContexts is where the targeted policy keeps its file contexts.
const fileContexts = "etc/selinux/targeted/contexts/files/file_contexts"

// sectionDev is a filesystem inside an image file, at an offset.
type sectionDev struct {
	f         *os.File
	off, size int64
}

func (d *sectionDev) ReadAt(p []byte, off int64) (int, error) { return d.f.ReadAt(p, d.off+off) }
func (d *sectionDev) WriteAt(p []byte, off int64) (int, error) {
	return d.f.WriteAt(p, d.off+off)
}
func (d *sectionDev) Size() int64 { return d.size }

// labelFS gives every file of the ext3 filesystem at off in img the
// SELinux label file_contexts (a host file) gives its path, the
// filesystem being mounted at mnt. mke2fs -d copies no labels, and an
// installed RHEL guest has one on every file.
func labelFS(img string, off, size int64, mnt, contexts string) error {
	data, err := os.ReadFile(contexts)
	if err != nil {
		return err
	}
	fc, err := selinux.Parse(contexts, data)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fsys, err := extfs.Open(&sectionDev{f, off, size})
	if err != nil {
		return fmt.Errorf("labelling %s: %w", mnt, err)
	}
	defer fsys.Close()
	err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		label, ok := fc.Lookup(path.Join(mnt, p), d.Type())
		if !ok {
			return nil
		}
		return fsys.SetXattr(p, "security.selinux", append([]byte(label), 0))
	})
	if err != nil {
		return fmt.Errorf("labelling %s: %w", mnt, err)
	}
	return f.Sync()
}
