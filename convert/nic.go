package convert

import (
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
)

// nicDrivers maps QEMU NIC models to the Linux driver that runs them.
var nicDrivers = map[string]string{
	"virtio":   "virtio_net",
	"e1000":    "e1000",
	"e1000e":   "e1000e",
	"rtl8139":  "8139too",
	"ne2k_pci": "ne2k-pci",
	"pcnet":    "pcnet32",
	"i82551":   "e100",
	"i82557b":  "e100",
	"i82559er": "e100",
}

// netDriver is the driver of interface iface ("eth0") on KVM: the one for
// the card config.NICModel gives the KVM guest, so modprobe.conf, the
// libvirt XML and the QEMU command line name the same card.
func (c *planner) netDriver(iface string) string {
	n, err := strconv.Atoi(strings.TrimPrefix(iface, "eth"))
	if err != nil || n >= len(c.d.NICs) {
		n = 0
	}
	model := config.NICModel(c.d, n, c.plan.Virtio)
	if d, ok := nicDrivers[model]; ok {
		return d
	}
	return model
}
