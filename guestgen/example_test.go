package guestgen_test

import (
	"context"
	"fmt"
	"log"

	"github.com/xen2kvm/xen2kvm/guestgen"
)

// Build the example guest (a second call returns the cached one), then
// hand its config and images to xen2kvm.
func ExampleBuild() {
	g, err := guestgen.Build(context.Background(), "/tmp/xen2kvm-guests", guestgen.CentOS5PV)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("xen2kvm migrate", g.Config, "-o /tmp/kvm",
		"--disk-map", g.XenImageDir+"="+g.Dir+"/images")
}

func ExamplePresetNames() {
	fmt.Println(guestgen.PresetNames())
	// Output: [centos5 centos5-2disks centos5-lvm centos5-xenonly rhel6 win2003]
}
