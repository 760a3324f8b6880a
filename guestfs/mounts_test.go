package guestfs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/fstest"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

func TestMounts(t *testing.T) {
	root := tree(t, map[string]string{
		"etc/fstab":      "/dev/xvda1 /boot ext3 defaults 1 2\n",
		"boot/.keep":     "hidden by the mount\n",
		"boot/efi/.keep": "",
	}, map[string]string{
		"etc/grub.conf": "../boot/grub/grub.conf",
		"vmlinuz":       "/boot/vmlinuz-2.6.18-164.el5",
	})
	boot := tree(t, map[string]string{
		"grub/grub.conf":          "default=0\n",
		"vmlinuz-2.6.18-164.el5":  "kernel",
		"efi/should-be-shadowed":  "",
		"grub/menu.lst.placehold": "",
	}, map[string]string{
		"grub/menu.lst": "./grub.conf",
		"up":            "../etc/fstab", // leaves the mount, reaches the root fs
	})
	efi := tree(t, map[string]string{"EFI/redhat/grub.efi": "efi"}, nil)
	m := guestfs.NewMounts(guestfs.DirFS(root))
	if err := m.Mount("boot", guestfs.DirFS(boot)); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount("boot/efi", guestfs.DirFS(efi)); err != nil {
		t.Fatal(err)
	}
	if err := m.Mount("/boot", guestfs.DirFS(boot)); !errors.Is(err, fs.ErrInvalid) {
		t.Errorf("Mount(/boot) err = %v, want fs.ErrInvalid", err)
	}
	reads := []struct{ name, want string }{
		{"etc/grub.conf", "default=0\n"},
		{"boot/grub/menu.lst", "default=0\n"},
		{"vmlinuz", "kernel"},
		{"boot/up", "/dev/xvda1 /boot ext3 defaults 1 2\n"},
		{"boot/efi/EFI/redhat/grub.efi", "efi"},
	}
	for _, r := range reads {
		b, err := m.ReadFile(r.name)
		if err != nil || string(b) != r.want {
			t.Errorf("ReadFile(%q) = %q, %v; want %q", r.name, b, err, r.want)
		}
	}
	if _, err := m.ReadFile("boot/.keep"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("file under the mount point of the root fs is visible: %v", err)
	}
	if _, err := m.Stat("boot/efi/should-be-shadowed"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("nested mount does not shadow: %v", err)
	}
	var pe *fs.PathError
	if _, err := m.ReadFile("boot/grub/nothere"); !errors.As(err, &pe) || pe.Path != "boot/grub/nothere" {
		t.Errorf("error names %v, want the union's name", err)
	}

	// Writes land in the mounted filesystem.
	if err := m.WriteFile("etc/grub.conf", []byte("default=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(boot, "grub/grub.conf")); string(b) != "default=1\n" {
		t.Errorf("boot fs grub.conf = %q after write through the root's symlink", b)
	}
	if err := m.Rename("boot/grub/grub.conf", "etc/grub.conf.new"); !errors.Is(err, guestfs.ErrCrossMount) {
		t.Errorf("cross-mount rename err = %v", err)
	}
	if err := m.Rename("boot/grub/menu.lst.placehold", "boot/grub/x"); err != nil {
		t.Errorf("rename inside a mount: %v", err)
	}
	if err := m.Remove("boot"); err == nil {
		t.Error("Remove(mount point) succeeded")
	}

	es, err := m.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	if !slices.Equal(names, []string{"boot", "etc", "vmlinuz"}) {
		t.Errorf("ReadDir(.) = %v", names)
	}
	if got := m.MountPoints(); !slices.Equal(got, []string{".", "boot", "boot/efi"}) {
		t.Errorf("MountPoints = %v", got)
	}
	if err := fstest.TestFS(m, "etc/fstab", "boot/grub/grub.conf", "boot/efi/EFI/redhat/grub.efi"); err != nil {
		t.Fatal(err)
	}
}

// TestMountsMountPointOnly checks a mount point the parent filesystem has
// no directory for.
func TestMountsMountPointOnly(t *testing.T) {
	root := tree(t, map[string]string{"etc/fstab": ""}, nil)
	boot := tree(t, map[string]string{"vmlinuz": "k"}, nil)
	m := guestfs.NewMounts(guestfs.DirFS(root))
	if err := m.Mount("boot", guestfs.DirFS(boot)); err != nil {
		t.Fatal(err)
	}
	es, err := m.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 2 || es[0].Name() != "boot" || !es[0].IsDir() {
		t.Errorf("ReadDir(.) = %v, want boot listed as a directory", es)
	}
	if b, err := m.ReadFile("boot/vmlinuz"); err != nil || string(b) != "k" {
		t.Errorf("ReadFile = %q, %v", b, err)
	}
}
