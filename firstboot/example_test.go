package firstboot_test

import (
	"fmt"
	"strings"
	"testing/fstest"

	"github.com/xen2kvm/xen2kvm/firstboot"
)

// Diff compares the guest's files before and after its first boot; Flag
// marks the changes that mean a broken conversion.
func ExampleDiff() {
	file := func(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s), Mode: 0o644} }
	before := fstest.MapFS{
		"etc/sysconfig/network-scripts/ifcfg-eth0": file("DEVICE=eth0\nBOOTPROTO=static\nIPADDR=192.168.122.50\n"),
	}
	after := fstest.MapFS{
		"etc/sysconfig/network-scripts/ifcfg-eth0":     file("DEVICE=eth0\nBOOTPROTO=dhcp\n"),
		"etc/sysconfig/network-scripts/ifcfg-eth0.bak": file("DEVICE=eth0\nBOOTPROTO=static\nIPADDR=192.168.122.50\n"),
		"etc/mtab": file("/dev/vda2 / ext3 rw 0 0\n"),
	}
	files, _ := firstboot.Diff(before, after)
	for _, f := range files {
		fmt.Println(strings.TrimSpace(f.Change + " /" + f.Path + " " + f.Flag))
	}
	fmt.Print(files[1].Diff)
	// Output:
	// created /etc/mtab
	// changed /etc/sysconfig/network-scripts/ifcfg-eth0 interface config ifcfg-eth0 rewritten during the first boot
	// created /etc/sysconfig/network-scripts/ifcfg-eth0.bak interface config moved to ifcfg-eth0.bak: the guest's first boot (kudzu) replaced the interface's configuration
	// --- a/etc/sysconfig/network-scripts/ifcfg-eth0
	// +++ b/etc/sysconfig/network-scripts/ifcfg-eth0
	// @@ -1,3 +1,2 @@
	//  DEVICE=eth0
	// -BOOTPROTO=static
	// -IPADDR=192.168.122.50
	// +BOOTPROTO=dhcp
}

// ReadNetConfig reads the address the guest gives its NIC, which the
// boot check's user network is shaped to.
func ExampleReadNetConfig() {
	root := fstest.MapFS{
		"etc/sysconfig/network-scripts/ifcfg-eth0": {Data: []byte("DEVICE=eth0\nBOOTPROTO=none\nHWADDR=00:16:3E:12:34:56\nIPADDR=10.1.2.3\nNETMASK=255.255.0.0\n")},
		"etc/sysconfig/network":                    {Data: []byte("NETWORKING=yes\nGATEWAY=10.1.0.1\n")},
	}
	fmt.Println(firstboot.ReadNetConfig(root, "00:16:3e:12:34:56"))
	// Output: static 10.1.2.3/16 gateway 10.1.0.1 from /etc/sysconfig/network-scripts/ifcfg-eth0
}
