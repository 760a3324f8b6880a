package config_test

import (
	"fmt"
	"log"

	"github.com/xen2kvm/xen2kvm/config"
)

func ExampleParse() {
	src := []byte(`name = "web01"
memory = 512
bootloader = "/usr/bin/pygrub"
disk = [ "tap:aio:/var/lib/xen/images/web01.img,xvda,w" ]
vif = [ "mac=00:16:3e:12:34:56,bridge=xenbr0" ]
cpu_weight = 256
`)
	d, err := config.Parse(src, "/etc/xen/web01")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(d.Name, d.Type, d.Source.Format, d.MemoryMiB, d.VCPUs)
	fmt.Println(d.Disks[0].Backend, d.Disks[0].Source, d.Disks[0].Target)
	for _, w := range d.Warnings {
		fmt.Println("warning:", w)
	}
	// Output:
	// web01 pv xm 512 1
	// tap:aio /var/lib/xen/images/web01.img xvda
	// warning: /etc/xen/web01:6: unknown setting cpu_weight = 256 kept but not used
}

func ExampleToKVM() {
	d, err := config.Parse([]byte(`name = "web01"
memory = 512
bootloader = "/usr/bin/pygrub"
disk = [ "tap:aio:/var/lib/xen/images/web01.img,xvda,w", "file:/srv/iso/rhel5.iso,hdc:cdrom,r" ]
vif = [ "mac=00:16:3e:12:34:56,bridge=xenbr0" ]
`), "web01")
	if err != nil {
		log.Fatal(err)
	}
	k, err := config.ToKVM(d, config.KVMOptions{Virtio: true, OS: "linux",
		Images: map[string]config.Image{"xvda": {Path: "/srv/kvm/web01-vda.qcow2", Format: "qcow2"}}})
	if err != nil {
		log.Fatal(err)
	}
	for _, disk := range k.Disks {
		fmt.Println(disk.Source.Target, "->", disk.Target, disk.Bus, disk.Device, disk.Path)
	}
	fmt.Println(k.NICs[0].MAC, k.NICs[0].Model, "boot from disk:", k.BootFromDisk)
	// Output:
	// xvda -> vda virtio disk /srv/kvm/web01-vda.qcow2
	// hdc -> hdc ide cdrom /srv/iso/rhel5.iso
	// 00:16:3e:12:34:56 virtio boot from disk: true
}

func ExampleMapPath() {
	maps := []config.PathMap{{Old: "/var/lib/xen/images", New: "/srv/import"}}
	fmt.Println(config.MapPath("/var/lib/xen/images/web01.img", maps))
	fmt.Println(config.MapPath("/var/lib/xen/images2/web01.img", maps))
	// Output:
	// /srv/import/web01.img
	// /var/lib/xen/images2/web01.img
}
