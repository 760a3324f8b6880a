package guestgen

import (
	"fmt"
	"strings"
)

// xmDisk is one entry of an xm config's disk list.
type xmDisk struct {
	Backend string // "tap:aio", "file"
	Path    string // as on the Xen host
	Target  string // xvda, hda, hdc:cdrom
	Mode    string // w, r
}

func (d xmDisk) String() string {
	if d.Path == "" {
		return fmt.Sprintf(",%s,%s", d.Target, d.Mode)
	}
	return fmt.Sprintf("%s:%s,%s,%s", d.Backend, d.Path, d.Target, d.Mode)
}

// xmConfig writes an /etc/xen domain config as virt-install on RHEL 5
// wrote them (Python syntax read by xm).
func xmConfig(s Spec, uuid, mac string, disks []xmDisk) string {
	var b strings.Builder
	q := func(k, v string) { fmt.Fprintf(&b, "%s = %q\n", k, v) }
	n := func(k string, v int) { fmt.Fprintf(&b, "%s = %d\n", k, v) }
	q("name", s.Name)
	q("uuid", uuid)
	n("maxmem", s.MemoryMiB)
	n("memory", s.MemoryMiB)
	n("vcpus", s.VCPUs)
	if s.HVM {
		q("builder", "hvm")
		q("kernel", "/usr/lib/xen/boot/hvmloader")
		q("boot", "c")
		n("pae", 1)
		n("acpi", 1)
		n("apic", 1)
		n("localtime", 1)
	} else {
		q("bootloader", "/usr/bin/pygrub")
	}
	q("on_poweroff", "destroy")
	q("on_reboot", "restart")
	q("on_crash", "restart")
	if s.HVM {
		q("device_model", "/usr/lib64/xen/bin/qemu-dm")
		q("usbdevice", "tablet")
		n("sdl", 0)
		n("vnc", 1)
		n("vncunused", 1)
	} else {
		b.WriteString("vfb = [ ]\n")
	}
	var ds []string
	for _, d := range disks {
		ds = append(ds, fmt.Sprintf("%q", d.String()))
	}
	fmt.Fprintf(&b, "disk = [ %s ]\n", strings.Join(ds, ", "))
	vif := "mac=" + mac + ",bridge=xenbr0,script=vif-bridge"
	if s.HVM {
		vif += ",type=ioemu"
	}
	fmt.Fprintf(&b, "vif = [ %q ]\n", vif)
	if s.HVM {
		q("serial", "pty")
	}
	return b.String()
}
