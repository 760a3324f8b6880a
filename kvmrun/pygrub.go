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
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
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
	e, err := defaultEntry(conf)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", confPath, err)
	}
	db := &DirectBoot{Config: confPath, Title: e.title, Append: e.args}
	// Paths in the config are relative to grub's root device, which is
	// the filesystem holding grub/ (a /boot partition) or boot/grub/.
	prefix := ""
	if strings.HasPrefix(confPath, "boot/") {
		prefix = "boot/"
	}
	if db.KernelPath, err = resolve(fsys, prefix, e.kernel); err != nil {
		return nil, fmt.Errorf("%s: entry %q: kernel: %w", confPath, e.title, err)
	}
	db.Kernel = filepath.Join(dir, "vmlinuz")
	if err := copyOut(fsys, db.KernelPath, db.Kernel); err != nil {
		return nil, err
	}
	if e.initrd != "" {
		if db.InitrdPath, err = resolve(fsys, prefix, e.initrd); err != nil {
			return nil, fmt.Errorf("%s: entry %q: initrd: %w", confPath, e.title, err)
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
	if strings.HasPrefix(p, "(") {
		if i := strings.IndexByte(p, ')'); i >= 0 {
			p = p[i+1:]
		}
	}
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

// grubEntry is one title of a grub legacy config.
type grubEntry struct {
	title, kernel, args, initrd string
	modules                     []string
}

// defaultEntry parses a grub legacy config (grub.conf / menu.lst) and
// returns its default entry: "default N" counts titles from 0; "default
// saved" and a missing or out-of-range default mean the first.
func defaultEntry(conf []byte) (grubEntry, error) {
	def := 0
	var entries []grubEntry
	for _, line := range strings.Split(string(conf), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		key, val := splitDirective(line)
		if key == "title" {
			entries = append(entries, grubEntry{title: val})
			continue
		}
		if len(entries) == 0 {
			if key == "default" {
				if n, err := strconv.Atoi(val); err == nil && n >= 0 {
					def = n
				}
			}
			continue
		}
		e := &entries[len(entries)-1]
		switch key {
		case "kernel":
			k, args, _ := strings.Cut(val, " ")
			e.kernel, e.args = k, strings.TrimSpace(args)
		case "initrd":
			e.initrd, _, _ = strings.Cut(val, " ")
		case "module":
			e.modules = append(e.modules, val)
		}
	}
	if len(entries) == 0 {
		return grubEntry{}, errors.New("no boot entries (title lines)")
	}
	if def >= len(entries) {
		def = 0
	}
	e := entries[def]
	// A Xen dom0-style entry boots xen.gz with the Linux kernel and
	// initrd as modules: boot those directly.
	if strings.Contains(path.Base(e.kernel), "xen") && strings.HasSuffix(e.kernel, ".gz") && len(e.modules) > 0 {
		k, args, _ := strings.Cut(e.modules[0], " ")
		e.kernel, e.args, e.initrd = k, strings.TrimSpace(args), ""
		if len(e.modules) > 1 {
			e.initrd, _, _ = strings.Cut(e.modules[1], " ")
		}
	}
	if e.kernel == "" {
		return grubEntry{}, fmt.Errorf("default entry %d (%q) has no kernel line", def, e.title)
	}
	return e, nil
}

// splitDirective splits "key value", "key=value" or "key = value".
func splitDirective(line string) (string, string) {
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return line, ""
	}
	key := line[:i]
	val := strings.TrimLeft(line[i:], " \t")
	if key != "title" {
		val = strings.TrimLeft(strings.TrimPrefix(val, "="), " \t")
	}
	return key, strings.Join(strings.Fields(val), " ")
}

// bootFromDisk runs PyGrub on the boot filesystem of the domain's first
// disk.
func bootFromDisk(ctx context.Context, dom *config.KVMDomain, open BootFSOpener, dir string) (*DirectBoot, error) {
	var disk *config.KVMDisk
	for i := range dom.Disks {
		if dom.Disks[i].Device != "cdrom" && dom.Disks[i].Path != "" {
			disk = &dom.Disks[i]
			break
		}
	}
	if disk == nil {
		return nil, errors.New("boot from disk: the domain has no disk")
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
