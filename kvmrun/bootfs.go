package kvmrun

import (
	"context"
	"errors"
	"io"
	"io/fs"

	"github.com/xen2kvm/xen2kvm/config"
)

// OpenBootFS is the default BootFSOpener: it opens the disk image
// read-only and returns the first filesystem on it that holds a grub
// config.
func OpenBootFS(ctx context.Context, disk config.KVMDisk) (fs.FS, io.Closer, error) {
	return nil, nil, errors.New("reading a disk image's boot filesystem is not wired yet")
}
