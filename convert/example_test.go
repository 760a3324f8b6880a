package convert_test

import (
	"fmt"
	"log"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/guestfs"
)

func ExampleMakePlan() {
	// A RHEL 4.8 PV guest's root filesystem (its /boot is part of it).
	root := guestfs.DirFS("testdata/rhel48-pv/root")
	g, err := convert.Inspect(root)
	if err != nil {
		log.Fatal(err)
	}
	d := &config.Domain{Name: "rhel48", Type: config.PV,
		Disks: []config.Disk{{Target: "xvda", Device: "disk", Mode: "w"}}}
	// The tree holds no initrd image, so leave that rule out.
	p, err := convert.MakePlan(g, root, d, convert.Options{Disable: []string{"initrd"}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(g.Product)
	fmt.Println("boots", p.Kernel.Release, "virtio:", p.Virtio, "xvda ->", p.DeviceMap["xvda"])
	for _, e := range p.Edits {
		fmt.Println(e.Kind, e.Path, "("+e.Rule+")")
	}
	// Output:
	// Red Hat Enterprise Linux AS release 4 (Nahant Update 8)
	// boots 2.6.9-89.EL virtio: true xvda -> vda
	// modify boot/grub/grub.conf (grub)
	// modify boot/grub/device.map (device-map)
	// modify etc/sysconfig/kernel (sysconfig-kernel)
	// modify etc/fstab (fstab)
	// remove etc/blkid.tab (blkid-cache)
	// modify etc/modprobe.conf (modprobe)
	// modify etc/inittab (console)
	// modify etc/securetty (console)
	// remove etc/rc.d/rc3.d/S05kudzu (kudzu)
	// remove etc/rc.d/rc5.d/S05kudzu (kudzu)
}
