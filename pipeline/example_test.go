package pipeline_test

import (
	"fmt"

	"github.com/xen2kvm/xen2kvm/pipeline"
)

func ExampleParseManifest() {
	m, err := pipeline.ParseManifest([]byte(`defaults:
  output: /srv/kvm
  disk_map:
    /var/lib/xen/images: /srv/import/images
guests:
  - config: etc-xen/web01
  - config: etc-xen/db02
    format: raw
    boot_check: false
`), "/srv/import/guests.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, g := range m.Guests {
		fmt.Println(g.Config, g.Output, g.Format, g.BootCheck, g.DiskMap[0].New)
	}
	_, err = pipeline.ParseManifest([]byte("guests:\n  - config: web01\n    ouput: /srv/kvm\n"), "/srv/import/guests.yaml")
	fmt.Println(err)
	// Output:
	// /srv/import/etc-xen/web01 /srv/kvm qcow2 true /srv/import/images
	// /srv/import/etc-xen/db02 /srv/kvm raw false /srv/import/images
	// /srv/import/guests.yaml:3: unknown key "ouput" (want config, kernel_rpm, output, format, disk_map, boot_check, to, pool, source_host, allow_drift, virtio_win or warm)
	// /srv/import/guests.yaml:2: guest /srv/import/web01 has no output (set it in defaults or on the guest)
}
