package kvmrun_test

import (
	"fmt"
	"os"
	"testing/fstest"

	"github.com/xen2kvm/xen2kvm/kvmrun"
)

// A guest that stopped after its initrd ran: nash printed, init did not.
func ExampleGuessStage() {
	serial := []string{
		"Linux version 2.6.18-419.el5 (mockbuild@builder) #1 SMP",
		"Red Hat nash version 5.1.19.6 starting",
		"mount: could not find filesystem '/dev/root'",
		"Kernel panic - not syncing: Attempted to kill init!",
	}
	fmt.Println(kvmrun.GuessStage(serial, true))
	// Output: initrd
}

// The built-in pygrub on a PV guest's /boot partition.
func ExamplePyGrub() {
	boot := fstest.MapFS{
		"grub/grub.conf": {Data: []byte(`default=0
timeout=5
title Red Hat Enterprise Linux Server (2.6.18-419.el5)
	root (hd0,0)
	kernel /vmlinuz-2.6.18-419.el5 ro root=/dev/VolGroup00/LogVol00 console=ttyS0
	initrd /initrd-2.6.18-419.el5.img
`)},
		"vmlinuz-2.6.18-419.el5":    {Data: []byte("kernel")},
		"initrd-2.6.18-419.el5.img": {Data: []byte("initrd")},
	}
	dir, _ := os.MkdirTemp("", "pygrub-")
	defer os.RemoveAll(dir)
	db, err := kvmrun.PyGrub(boot, dir)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(db.Title)
	fmt.Println(db.KernelPath, db.InitrdPath)
	fmt.Println(db.Append)
	// Output:
	// Red Hat Enterprise Linux Server (2.6.18-419.el5)
	// vmlinuz-2.6.18-419.el5 initrd-2.6.18-419.el5.img
	// ro root=/dev/VolGroup00/LogVol00 console=ttyS0
}
