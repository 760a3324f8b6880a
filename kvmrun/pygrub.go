package kvmrun

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/grub"
)

// ErrNoGrubConfig: the boot filesystem has no grub legacy config.
var ErrNoGrubConfig = errors.New("no grub config")

// grubConfigs are where a grub legacy config lives, relative to the
// filesystem holding it: a separate /boot partition, or the root
// filesystem with /boot in it.
var grubConfigs = []string{"grub/grub.conf", "grub/menu.lst", "boot/grub/grub.conf", "boot/grub/menu.lst"}

// DirectBoot is the grub entry a BootFromDisk guest is booted with: what
// pygrub would have handed to Xen.
type DirectBoot struct {
	Config     string `json:"config"` // the grub config read, in the boot filesystem
	Title      string `json:"title"`
	KernelPath string `json:"kernel_path"` // in the boot filesystem
	InitrdPath string `json:"initrd_path,omitempty"`
	Append     string `json:"append"`
	// Kernel and Initrd are the host files they were copied to.
	Kernel string `json:"-"`
	Initrd string `json:"-"`
}

// BootFSOpener opens the filesystem holding the grub config of a guest
// disk (its /boot partition, or the root filesystem with /boot in it).
// The closer releases it.
type BootFSOpener func(ctx context.Context, disk config.KVMDisk) (fs.FS, io.Closer, error)

// PyGrub does what Xen's pygrub does for a PV guest: it reads the grub
// legacy config in fsys, picks the default entry and copies that entry's
// kernel and initrd into dir.
func PyGrub(fsys fs.FS, dir string) (*DirectBoot, error) {
	var conf []byte
	var confPath string
	for _, p := range grubConfigs {
		b, err := fs.ReadFile(fsys, p)
		if err == nil {
			conf, confPath = b, p
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("reading %s: %w", p, err)
		}
	}
	if confPath == "" {
		return nil, fmt.Errorf("%w: none of %s in the boot filesystem", ErrNoGrubConfig, strings.Join(grubConfigs, ", "))
	}
	c, err := grub.Parse(conf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", confPath, err)
	}
	e, err := c.DefaultEntry()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", confPath, err)
	}
	// A Xen dom0-style entry boots xen.gz with Linux as its modules:
	// LinuxKernel returns the Linux kernel either way.
	kernel, args, initrd := e.LinuxKernel()
	if kernel == "" {
		return nil, fmt.Errorf("%s: default entry %q has no kernel", confPath, e.Title)
	}
	db := &DirectBoot{Config: confPath, Title: e.Title, Append: args}
	// Paths in the config are relative to grub's root device, which is
	// the filesystem holding grub/ (a /boot partition) or boot/grub/.
	prefix := ""
	if strings.HasPrefix(confPath, "boot/") {
		prefix = "boot/"
	}
	if db.KernelPath, err = resolve(fsys, prefix, kernel); err != nil {
		return nil, fmt.Errorf("%s: entry %q: kernel: %w", confPath, e.Title, err)
	}
	db.Kernel = filepath.Join(dir, "vmlinuz")
	if err := copyOut(fsys, db.KernelPath, db.Kernel); err != nil {
		return nil, err
	}
	if initrd != "" {
		if db.InitrdPath, err = resolve(fsys, prefix, initrd); err != nil {
			return nil, fmt.Errorf("%s: entry %q: initrd: %w", confPath, e.Title, err)
		}
		db.Initrd = filepath.Join(dir, "initrd.img")
		if err := copyOut(fsys, db.InitrdPath, db.Initrd); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// resolve turns a grub path ("(hd0,0)/vmlinuz-2.6.18", "/boot/vmlinuz")
// into an fs.FS name, trying it relative to the grub root first and then
// with and without "boot/" (grub's root may name another partition than
// the one the config is on).
func resolve(fsys fs.FS, prefix, p string) (string, error) {
	_, p = grub.SplitDevice(p)
	p = strings.TrimPrefix(path.Clean("/"+p), "/")
	if p == "" || p == "." {
		return "", fmt.Errorf("empty path")
	}
	tries := []string{prefix + p, p, "boot/" + p, strings.TrimPrefix(p, "boot/")}
	for _, t := range tries {
		if !fs.ValidPath(t) {
			continue
		}
		if st, err := fs.Stat(fsys, t); err == nil && st.Mode().IsRegular() {
			return t, nil
		}
	}
	return "", fmt.Errorf("%s: %w", p, fs.ErrNotExist)
}

func copyOut(fsys fs.FS, name, dst string) error {
	b, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("reading %s from the guest: %w", name, err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", dst, err)
	}
	return nil
}

// PyGrubDisk runs PyGrub on the boot filesystem of the domain's first
// disk, opened with open (nil means OpenBootFS), copying the kernel and
// initrd into dir. Start and Boot do this for a BootFromDisk domain; a
// launch script can use it to get the files to boot once, ahead.
func PyGrubDisk(ctx context.Context, dom *config.KVMDomain, dir string, open BootFSOpener) (*DirectBoot, error) {
	if open == nil {
		open = OpenBootFS
	}
	var disk *config.KVMDisk
	for i := range dom.Disks {
		if dom.Disks[i].Device != "cdrom" && dom.Disks[i].Path != "" {
			disk = &dom.Disks[i]
			break
		}
	}
	if disk == nil {
		return nil, fmt.Errorf("boot from disk: %s has no disk", dom.Name)
	}
	fsys, closer, err := open(ctx, *disk)
	if err != nil {
		return nil, fmt.Errorf("opening the boot filesystem of %s: %w", disk.Path, err)
	}
	defer closer.Close()
	db, err := PyGrub(fsys, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", disk.Path, err)
	}
	return db, nil
}
