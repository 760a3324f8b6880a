package guestfs_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/xen2kvm/xen2kvm/guestfs"
)

func ExampleMounts() {
	dir, err := os.MkdirTemp("", "guest")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	// The root filesystem links /etc/grub.conf into the separate /boot.
	os.MkdirAll(filepath.Join(dir, "root/etc"), 0o755)
	os.MkdirAll(filepath.Join(dir, "boot/grub"), 0o755)
	os.Symlink("../boot/grub/grub.conf", filepath.Join(dir, "root/etc/grub.conf"))
	os.WriteFile(filepath.Join(dir, "boot/grub/grub.conf"), []byte("default=0\n"), 0o644)

	m := guestfs.NewMounts(guestfs.DirFS(filepath.Join(dir, "root")))
	if err := m.Mount("boot", guestfs.DirFS(filepath.Join(dir, "boot"))); err != nil {
		log.Fatal(err)
	}
	b, err := m.ReadFile("etc/grub.conf")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s", b)
	// Output: default=0
}
