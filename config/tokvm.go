package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// ErrNoBoot is returned by ToKVM for a paravirtualised guest that names
// neither a boot loader nor a kernel: Xen could not have started it either.
var ErrNoBoot = errors.New("PV guest has neither a bootloader nor a kernel")

// ErrTooManyIDE is returned by ToKVM when a guest kept on IDE has more
// devices than the pc machine's two IDE channels take (hda to hdd).
var ErrTooManyIDE = errors.New("more than 4 IDE devices")

// Image is a converted disk image.
type Image struct {
	Path   string // where the image is
	Format string // qcow2 | raw
}

// KVMOptions says how a Xen guest is to be mapped onto KVM. They come
// from guest inspection and the chosen output, not from the Xen config.
type KVMOptions struct {
	// Virtio: the guest can use virtio (a Linux kernel with virtio
	// drivers after conversion). Disks become vda, vdb, ... on virtio in
	// the Xen disk order and the NICs virtio-net. Without it the guest
	// keeps what it was installed on: IDE disks and its emulated NIC.
	Virtio bool
	// OS is "linux", "windows" or "" when unknown.
	OS string
	// OSVersion is the Windows version inspection found ("5.2" Server
	// 2003, "6.0" Server 2008; "" when unknown). NT 5 has a driver for
	// the Cirrus card Xen's HVM guests had and only plain VGA modes on
	// QEMU's standard VGA, so it keeps Cirrus; NT 6 gets standard VGA.
	OSVersion string
	// RTCUTC: the guest keeps its hardware clock in UTC (a Windows
	// registry with RealTimeIsUniversal). A Windows guest without it
	// gets its RTC in local time, whatever the Xen config said.
	RTCUTC bool
	// Images maps a Xen disk target ("xvda", "hda") to its converted
	// image. Disks not in Images keep their source path as the config
	// gives it (CD-ROMs, empty drives, disks not copied); rewrite it with
	// MapPath before ToKVM when the files moved.
	Images map[string]Image
	// MACs are MAC addresses for NICs the config gives none, by NIC
	// index: the guest's own (ifcfg-ethN's HWADDR, from conversion). A
	// NIC with a MAC in neither gets one made from the guest's UUID.
	MACs map[int]string
}

// ToKVM maps a Xen guest onto its KVM target. It is a pure function: it
// decides device names, buses and models and touches nothing.
//
//	k, err := config.ToKVM(d, config.KVMOptions{Virtio: true, OS: "linux",
//		Images: map[string]config.Image{"xvda": {Path: "/srv/kvm/web01-vda.qcow2", Format: "qcow2"}}})
func ToKVM(d *Domain, o KVMOptions) (*KVMDomain, error) {
	k := &KVMDomain{
		Name:         d.Name,
		UUID:         d.UUID,
		MemoryMiB:    d.MemoryMiB,
		MaxMemoryMiB: max(d.MaxMemoryMiB, d.MemoryMiB),
		VCPUs:        max(d.VCPUs, 1),
		MaxVCPUs:     max(d.MaxVCPUs, d.VCPUs, 1),
		Machine:      "pc",
		OS:           o.OS,
		Serial:       true,
		OnPoweroff:   lifecycle(d.OnPoweroff, false),
		OnReboot:     lifecycle(d.OnReboot, false),
		OnCrash:      lifecycle(d.OnCrash, true),
	}

	disks, err := kvmDisks(d, o)
	if err != nil {
		return nil, fmt.Errorf("mapping the disks of %s: %w", d.Name, err)
	}
	k.Disks = disks
	remap := map[string]string{}
	for _, disk := range k.Disks {
		if disk.Source != nil {
			remap[disk.Source.Target] = disk.Target
		}
	}

	for i, n := range d.NICs {
		mac := n.MAC
		if mac == "" {
			mac = o.MACs[i]
		}
		mac, err := kvmMAC(d, i, mac)
		if err != nil {
			return nil, fmt.Errorf("%s: vif %d: %w", d.Name, i+1, err)
		}
		nic := KVMNIC{MAC: mac, Bridge: n.Bridge, Model: NICModel(d, i, o.Virtio)}
		k.NICs = append(k.NICs, nic)
	}
	if k.NICs == nil {
		k.NICs = []KVMNIC{}
	}

	for _, g := range d.Graphics {
		if g.Type == "vnc" || g.Type == "sdl" {
			gr := g
			// KVM knows a VNC port, not Xen's display number.
			if gr.Type == "vnc" && !gr.AutoPort && gr.Port == nil && gr.Display != nil {
				p := 5900 + *gr.Display
				gr.Port = &p
			}
			if gr.AutoPort || gr.Type != "vnc" {
				gr.Port = nil
			}
			gr.Display = nil
			k.Graphics = &gr
			break
		}
	}

	switch d.Type {
	case HVM:
		k.ACPI = boolOr(d.ACPI, true)
		k.APIC = boolOr(d.APIC, true)
		k.PAE = boolOr(d.PAE, true)
		k.Localtime = d.Localtime
		k.RTCOffset = d.RTCTimeOffset
		k.SoundHW = soundModel(d.SoundHW)
		for _, u := range d.USBDevices {
			switch u {
			case "tablet":
				k.USBTablet = true
			case "mouse":
				k.USBMouse = true
			}
		}
		k.BootOrder = hvmBootOrder(d.Boot)
		if o.OS == "windows" {
			k.Video = windowsVideo(o.OSVersion)
			if o.OSVersion != "" {
				// Inspection read the registry: it decides the RTC.
				k.Localtime = !o.RTCUTC
			}
		}
		if d.Kernel != "" {
			// HVM direct kernel boot (xl).
			k.Kernel, k.Initrd, k.Cmdline = d.Kernel, d.Ramdisk, d.Cmdline()
		}
	default:
		// A PV guest becomes a plain PC: the converted kernel runs on
		// ACPI, the local APIC and PAE like any other.
		k.ACPI, k.APIC, k.PAE = true, true, true
		k.Localtime = d.Localtime
		k.BootOrder = "c"
		switch {
		case d.Bootloader != "" || isKernelOnDisk(d.Kernel):
			// pygrub (or pv-grub) read the kernel from the guest's own
			// disk; at launch the built-in pygrub does the same.
			k.BootFromDisk = true
		case d.Kernel != "":
			k.Kernel, k.Initrd = d.Kernel, d.Ramdisk
			k.Cmdline = kvmCmdline(d.Cmdline(), remap)
		default:
			return nil, fmt.Errorf("%s: %w", d.Name, ErrNoBoot)
		}
	}
	return k, nil
}

// kvmDisks names and places the disks: vdX on virtio in Xen order, or
// IDE keeping the hdX a guest was installed with.
func kvmDisks(d *Domain, o KVMOptions) ([]KVMDisk, error) {
	out := make([]KVMDisk, len(d.Disks))
	var ide []int // indexes of the disks that go on IDE
	nextVirtio := 0
	for i, x := range d.Disks {
		src := x
		kd := KVMDisk{
			Path:     x.Source,
			Format:   imageFormat(x),
			Device:   x.Device,
			ReadOnly: x.ReadOnly(),
			Source:   &src,
		}
		if img, ok := o.Images[x.Target]; ok {
			kd.Path, kd.Format = img.Path, img.Format
		}
		if kd.Path == "" {
			kd.Format = ""
		}
		if o.Virtio && x.Device != "cdrom" {
			kd.Bus = "virtio"
			kd.Target = diskName("vd", nextVirtio)
			nextVirtio++
		} else {
			// CD-ROMs always, and every disk without virtio, go on IDE.
			kd.Bus = "ide"
			ide = append(ide, i)
		}
		out[i] = kd
	}
	// IDE: keep hda..hdd where the Xen target already is one, then fill
	// the free slots in Xen disk order.
	used := map[string]bool{}
	for _, i := range ide {
		t := d.Disks[i].Target
		if len(t) == 3 && strings.HasPrefix(t, "hd") && t[2] >= 'a' && t[2] <= 'd' && !used[t] {
			out[i].Target = t
			used[t] = true
		}
	}
	for _, i := range ide {
		if out[i].Target != "" {
			continue
		}
		for n := 0; n < 4; n++ {
			if t := diskName("hd", n); !used[t] {
				out[i].Target = t
				used[t] = true
				break
			}
		}
		if out[i].Target == "" {
			return nil, fmt.Errorf("%w: %d disks and CD-ROMs need IDE", ErrTooManyIDE, len(ide))
		}
	}
	return out, nil
}

// kvmMAC keeps a NIC's MAC. A vif without one got a random MAC from Xen
// at every boot; the KVM guest gets a stable one in QEMU's 52:54:00
// range, derived from the guest's UUID (or name) and the NIC's position,
// so that the libvirt XML and the launch script agree and a re-run gives
// the same address.
func kvmMAC(d *Domain, i int, mac string) (string, error) {
	if mac != "" {
		hw, err := net.ParseMAC(mac)
		if err != nil || len(hw) != 6 {
			return "", fmt.Errorf("MAC address %q is not of the form 00:16:3e:12:34:56", mac)
		}
		return hw.String(), nil
	}
	id := d.UUID
	if id == "" {
		id = d.Name
	}
	sum := sha256.Sum256([]byte(fmt.Sprintf("xen2kvm-mac\x00%s\x00%d", id, i)))
	return fmt.Sprintf("52:54:00:%02x:%02x:%02x", sum[0], sum[1], sum[2]), nil
}

// diskName is the Linux-style name of the n-th disk: vda, ..., vdz, vdaa.
func diskName(prefix string, n int) string {
	s := ""
	for n >= 0 {
		s = string(rune('a'+n%26)) + s
		n = n/26 - 1
	}
	return prefix + s
}

// imageFormat is the QEMU format name of a Xen disk's image.
func imageFormat(x Disk) string {
	switch x.Format {
	case "", "raw", "aio":
		return "raw"
	case "vhd":
		return "vpc"
	}
	return x.Format
}

// windowsVideo is the VGA model for a Windows version: Cirrus for NT 5
// (2003) and unknown versions, standard VGA for NT 6 (2008).
func windowsVideo(version string) string {
	major, _, _ := strings.Cut(version, ".")
	if n, err := strconv.Atoi(major); err == nil && n >= 6 {
		return "vga"
	}
	return "cirrus"
}

// NICModel is the model the i-th NIC of d gets on KVM: virtio-net for a
// guest with virtio drivers; for a PV guest without them (its netfront
// has no emulated twin) an e1000, the card RHEL 4 and 5 carry a driver
// for; for an HVM guest the model it was installed with. The guest's
// driver configuration (modprobe.conf aliases) must name the same card.
func NICModel(d *Domain, i int, virtio bool) string {
	if virtio {
		return "virtio"
	}
	m := ""
	if i >= 0 && i < len(d.NICs) {
		m = d.NICs[i].Model
	}
	if d.Type == PV && (m == "" || strings.Contains(strings.ToLower(m), "netfront")) {
		return "e1000"
	}
	return nicModel(m)
}

// nicModel keeps the emulated NIC model a guest was installed with;
// Xen's qemu-dm gave HVM guests an rtl8139 when the config named none.
func nicModel(m string) string {
	switch strings.ToLower(m) {
	case "":
		return "rtl8139"
	case "ne2k_pci", "ne2k":
		return "ne2k_pci"
	}
	return strings.ToLower(m)
}

// soundModel picks the sound card of the KVM guest from Xen's soundhw
// list: the first one libvirt and QEMU still emulate ("all" meant
// sb16, es1370 and adlib in Xen's qemu-dm).
func soundModel(hw string) string {
	for _, m := range strings.Split(strings.ToLower(hw), ",") {
		m = strings.TrimSpace(m)
		if m == "all" {
			return "es1370"
		}
		if libvirtSoundModels[m] && m != "pcspk" {
			return m
		}
	}
	return ""
}

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// hvmBootOrder keeps the BIOS boot devices KVM has: a floppy, c disk,
// d CD-ROM, n network. Xen's default is the disk.
func hvmBootOrder(b string) string {
	var out []byte
	for _, c := range []byte(b) {
		if strings.IndexByte("acdn", c) >= 0 && !strings.Contains(string(out), string(c)) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return "c"
	}
	return string(out)
}

// isKernelOnDisk tells whether a PV kernel is a boot loader that reads the
// real kernel from the guest's disk (pv-grub).
func isKernelOnDisk(kernel string) bool {
	return kernel != "" && strings.Contains(path.Base(kernel), "pv-grub")
}

// lifecycle maps Xen's on_poweroff/on_reboot/on_crash action onto one
// libvirt accepts, or "" for its default.
func lifecycle(a string, crash bool) string {
	switch a {
	case "destroy", "restart", "preserve", "rename-restart":
		return a
	case "coredump-destroy", "coredump-restart":
		if crash {
			return a
		}
		return strings.TrimPrefix(a, "coredump-")
	}
	return ""
}

var (
	xenConsoleRE = regexp.MustCompile(`\bconsole=(xvc|hvc)(\d*)\b`)
	xenRootRE    = regexp.MustCompile(`(^|\s)root=/dev/(xvd[a-z]+|sd[a-z]+|hd[a-z]+)(\d*)`)
)

// kvmCmdline adapts a Xen PV kernel command line to the KVM guest: the
// Xen console becomes ttyS0 and a root= device follows its disk's new name.
func kvmCmdline(c string, remap map[string]string) string {
	c = xenConsoleRE.ReplaceAllString(c, "console=ttyS0")
	c = xenRootRE.ReplaceAllStringFunc(c, func(m string) string {
		sub := xenRootRE.FindStringSubmatch(m)
		if to, ok := remap[sub[2]]; ok {
			return sub[1] + "root=/dev/" + to + sub[3]
		}
		return m
	})
	return c
}

// PathMap rewrites disk paths that start with Old to start with New
// instead (--disk-map OLD=NEW).
type PathMap struct{ Old, New string }

// ParsePathMap reads "OLD=NEW".
func ParsePathMap(s string) (PathMap, error) {
	old, new, ok := strings.Cut(s, "=")
	if !ok || old == "" || new == "" {
		return PathMap{}, fmt.Errorf("disk map %q: want OLD=NEW", s)
	}
	if !strings.HasPrefix(old, "/") {
		return PathMap{}, fmt.Errorf("disk map %q: OLD must be an absolute path", s)
	}
	return PathMap{Old: filepath.Clean(old), New: filepath.Clean(new)}, nil
}

// MapPath rewrites p with the longest PathMap whose Old is a prefix of p
// on whole path components: /var/lib/xen/images=/srv/import maps
// /var/lib/xen/images/a.img but not /var/lib/xen/images2/a.img. A path no
// map matches is returned unchanged.
func MapPath(p string, maps []PathMap) string {
	best, bestLen := -1, -1
	for i, m := range maps {
		old := filepath.Clean(m.Old)
		if old == "" || old == "." {
			continue
		}
		var ok bool
		switch {
		case old == "/":
			ok = strings.HasPrefix(p, "/")
		default:
			ok = p == old || strings.HasPrefix(p, old+"/")
		}
		if ok && len(old) > bestLen {
			best, bestLen = i, len(old)
		}
	}
	if best < 0 {
		return p
	}
	old := filepath.Clean(maps[best].Old)
	rest := strings.TrimPrefix(p, old)
	if old == "/" {
		rest = p
	}
	if rest == "" {
		return maps[best].New
	}
	return strings.TrimSuffix(maps[best].New, "/") + "/" + strings.TrimPrefix(rest, "/")
}
