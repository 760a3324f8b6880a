package config

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// QEMUOptions are the runtime knobs of one QEMU run of a KVMDomain: what
// the domain model does not say because it depends on the host and on why
// the guest is being started (a boot check, the launch script, a person).
// The zero value gives a usable command line: no accelerator option (QEMU
// picks TCG), user-mode networking, the serial console on stdio, no QMP.
type QEMUOptions struct {
	// Accel is "kvm", "tcg" or "" (let QEMU choose).
	Accel string
	// SerialLog is a file the guest's first serial port (ttyS0) writes
	// to. Empty puts the serial port on QEMU's stdio when the domain has
	// a serial console, and none otherwise.
	SerialLog string
	// QMPSocket is the path of a unix socket QEMU listens on for QMP.
	QMPSocket string
	// Net is how the NICs reach the network: "user" (the default,
	// QEMU's user-mode stack, no privileges needed), "bridge" (each NIC
	// joins its Bridge, or Options.Bridge, through qemu-bridge-helper),
	// "tap" (pre-created tap devices, named by TapNames) or "none".
	Net string
	// Bridge overrides the bridge of every NIC with Net "bridge".
	Bridge string
	// TapNames names the tap device of each NIC, in order, with Net
	// "tap"; a NIC without one gets a tap device QEMU creates.
	TapNames []string
	// Kernel, Initrd and Append override the domain's direct kernel boot
	// (a built-in pygrub fills them from the guest's grub config).
	Kernel, Initrd, Append string
	// Display: "" follows the domain (VNC when it has graphics, else
	// none), "none" disables graphics, anything else is passed as
	// -display VALUE (e.g. "gtk", "vnc=:3").
	Display string
	// VNCPasswordFile holds the domain's VNC password for QEMU to read
	// through a secret object, so the password never appears in the argv.
	// Empty with a password-protected display gives "password=on": VNC
	// then refuses every client until the password is set at runtime
	// over QMP (change-vnc-password).
	VNCPasswordFile string
	// Snapshot writes guest disk changes to temporary files that QEMU
	// throws away at exit, leaving the images untouched.
	Snapshot bool
	// NoReboot makes QEMU exit instead of rebooting the guest.
	NoReboot bool
	// UserNet holds extra options of each NIC's user-mode netdev, in NIC
	// order, with Net "user": "net=192.168.122.0/24,host=192.168.122.1",
	// "hostfwd=tcp:127.0.0.1:2222-:22". Empty strings add nothing.
	UserNet []string
	// Extra are arguments appended to the command line as they are
	// (a boot check's -object filter-dump, for one).
	Extra []string
	// Now is the host time used for a domain's RTCOffset (QEMU takes an
	// RTC start date, not an offset). The zero value means time.Now().
	Now time.Time
}

// QEMUArgs returns the arguments (without the program name) to run the
// domain with qemu-system-x86_64. It is a pure function: it runs nothing,
// checks no file and reads no clock unless RTCOffset needs it.
//
// Devices are created explicitly under -nodefaults: every disk is a
// -drive if=none plus a -device on the bus the domain names (virtio-blk,
// IDE on the machine's PIIX controller, SATA on an AHCI controller, SCSI
// on virtio-scsi), every NIC a -netdev plus a -device with its kept MAC.
//
// Not mapped: MaxMemoryMiB (no memory hotplug; the guest gets MemoryMiB),
// APIC and PAE (QEMU's default CPU has both, which RHEL 4/5 and Windows
// 2003 kernels without PAE still boot on), OnPoweroff and OnCrash (QEMU
// exits on power-off; a crash is the guest's to handle).
func QEMUArgs(k *KVMDomain, o QEMUOptions) []string {
	var a args
	a.add("-name", "guest="+optEscape(k.Name))
	if k.UUID != "" {
		a.add("-uuid", k.UUID)
	}
	a.add("-nodefaults", "-no-user-config")

	machine := k.Machine
	if machine == "" {
		machine = "pc"
	}
	if !k.ACPI {
		machine += ",acpi=off"
	}
	a.add("-machine", machine)
	if o.Accel != "" {
		a.add("-accel", o.Accel)
	}
	a.add("-m", memArg(k))
	a.add("-smp", smpArg(k))

	a.add("-rtc", rtcArg(k, o))

	kernel, initrd, cmdline := k.Kernel, k.Initrd, k.Cmdline
	if o.Kernel != "" {
		kernel, initrd, cmdline = o.Kernel, o.Initrd, o.Append
	}
	directBoot := kernel != ""
	if directBoot {
		a.add("-kernel", kernel)
		if initrd != "" {
			a.add("-initrd", initrd)
		}
		if cmdline != "" {
			a.add("-append", cmdline)
		}
	}

	boot := bootIndexes(k, directBoot)
	addDisks(&a, k.Disks, o.Snapshot, boot)
	addNICs(&a, k.NICs, o, boot)
	addDisplay(&a, k, o)
	if k.USBTablet || k.USBMouse {
		a.add("-usb")
		if k.USBTablet {
			a.add("-device", "usb-tablet")
		}
		if k.USBMouse {
			a.add("-device", "usb-mouse")
		}
	}
	if dev := soundDevice(k.SoundHW); dev != "" {
		a.add("-audiodev", "none,id=snd0", "-device", dev+",audiodev=snd0")
	}

	switch {
	case o.SerialLog != "":
		a.add("-chardev", "file,id=serial0,path="+optEscape(o.SerialLog))
		a.add("-device", "isa-serial,chardev=serial0")
	case k.Serial:
		a.add("-chardev", "stdio,id=serial0")
		a.add("-device", "isa-serial,chardev=serial0")
	}
	if o.QMPSocket != "" {
		a.add("-chardev", "socket,id=qmp,path="+optEscape(o.QMPSocket)+",server=on,wait=off")
		a.add("-mon", "chardev=qmp,mode=control")
	}
	if o.NoReboot || k.OnReboot == "destroy" {
		a.add("-no-reboot")
	}
	a.add(o.Extra...)
	return a
}

type args []string

func (a *args) add(s ...string) { *a = append(*a, s...) }

// optEscape escapes a value inside a QEMU option string, where a comma
// is written as two.
func optEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

func memArg(k *KVMDomain) string {
	mem := k.MemoryMiB
	if mem <= 0 {
		mem = 512
	}
	return strconv.FormatInt(mem, 10) + "M"
}

func smpArg(k *KVMDomain) string {
	n := k.VCPUs
	if n <= 0 {
		n = 1
	}
	s := strconv.Itoa(n)
	if k.MaxVCPUs > n {
		s += ",maxcpus=" + strconv.Itoa(k.MaxVCPUs)
	}
	return s
}

func rtcArg(k *KVMDomain, o QEMUOptions) string {
	base := "utc"
	switch {
	case k.Localtime:
		base = "localtime"
	case k.RTCOffset != 0:
		now := o.Now
		if now.IsZero() {
			now = time.Now()
		}
		base = now.UTC().Add(time.Duration(k.RTCOffset) * time.Second).Format("2006-01-02T15:04:05")
	}
	s := "base=" + base
	if k.OS == "windows" {
		// Windows counts timer ticks; re-inject the ones it missed.
		s += ",driftfix=slew"
	}
	return s
}

// bootIndexes gives the bootindex of the disks and NICs the BIOS should
// try, in the domain's BootOrder ("c" disk, "d" CD-ROM, "n" network).
// Keys are "disk:N" and "nic:N". A direct kernel boot needs none.
func bootIndexes(k *KVMDomain, directBoot bool) map[string]int {
	m := map[string]int{}
	if directBoot {
		return m
	}
	order := k.BootOrder
	if order == "" {
		order = "cd"
	}
	first := func(device string) int {
		for i, d := range k.Disks {
			if d.Device == device || (device == "disk" && d.Device == "") {
				return i
			}
		}
		return -1
	}
	idx := 1
	for _, c := range order {
		key := ""
		switch c {
		case 'c':
			if i := first("disk"); i >= 0 {
				key = fmt.Sprintf("disk:%d", i)
			}
		case 'd':
			if i := first("cdrom"); i >= 0 {
				key = fmt.Sprintf("disk:%d", i)
			}
		case 'n':
			if len(k.NICs) > 0 {
				key = "nic:0"
			}
		}
		if key == "" {
			continue
		}
		if _, dup := m[key]; dup {
			continue
		}
		m[key] = idx
		idx++
	}
	return m
}

func addDisks(a *args, disks []KVMDisk, snapshot bool, boot map[string]int) {
	var ahci, scsi bool
	for i, d := range disks {
		id := d.Target
		if id == "" {
			id = fmt.Sprintf("disk%d", i)
		}
		cdrom := d.Device == "cdrom"
		drive := []string{}
		if d.Path != "" {
			drive = append(drive, "file="+optEscape(d.Path), "format="+diskFormat(d))
		}
		drive = append(drive, "if=none", "id=drive-"+id)
		if cdrom {
			drive = append(drive, "media=cdrom")
		}
		if d.ReadOnly || (cdrom && d.Path != "") {
			drive = append(drive, "readonly=on")
		} else if snapshot && d.Path != "" {
			drive = append(drive, "snapshot=on")
		}
		a.add("-drive", strings.Join(drive, ","))

		var dev []string
		switch d.Bus {
		case "virtio":
			dev = []string{"virtio-blk-pci"}
		case "sata":
			if !ahci {
				a.add("-device", "ahci,id=ahci0")
				ahci = true
			}
			dev = []string{ideKind(cdrom), fmt.Sprintf("bus=ahci0.%d", targetIndex(d.Target))}
		case "scsi":
			if !scsi {
				a.add("-device", "virtio-scsi-pci,id=scsi0")
				scsi = true
			}
			kind := "scsi-hd"
			if cdrom {
				kind = "scsi-cd"
			}
			dev = []string{kind, "bus=scsi0.0", fmt.Sprintf("scsi-id=%d", targetIndex(d.Target))}
		default: // ide: hda/hdb on the primary channel, hdc/hdd on the secondary
			n := targetIndex(d.Target)
			dev = []string{ideKind(cdrom), fmt.Sprintf("bus=ide.%d", n/2%2), fmt.Sprintf("unit=%d", n%2)}
		}
		dev = append(dev, "drive=drive-"+id, "id="+id)
		if b, ok := boot[fmt.Sprintf("disk:%d", i)]; ok {
			dev = append(dev, "bootindex="+strconv.Itoa(b))
		}
		a.add("-device", strings.Join(dev, ","))
	}
}

func ideKind(cdrom bool) string {
	if cdrom {
		return "ide-cd"
	}
	return "ide-hd"
}

// diskFormat is the disk's format, or one guessed from the file name
// (".qcow2" is qcow2, anything else raw): QEMU's own probing of a raw
// image is unsafe and it says so.
func diskFormat(d KVMDisk) string {
	if d.Format != "" {
		return d.Format
	}
	if strings.EqualFold(filepath.Ext(d.Path), ".qcow2") {
		return "qcow2"
	}
	return "raw"
}

// targetIndex is the position a target device name gives: hda 0, hdb 1,
// hdc 2, vdb 1, sdc 2, xvdd 3, vdaa 26. Unknown names are 0.
func targetIndex(target string) int {
	letters := target
	for _, p := range []string{"xvd", "hd", "vd", "sd"} {
		if strings.HasPrefix(target, p) {
			letters = target[len(p):]
			break
		}
	}
	n := 0
	for _, c := range letters {
		if c < 'a' || c > 'z' {
			return 0
		}
		n = n*26 + int(c-'a') + 1
	}
	if n == 0 {
		return 0
	}
	return n - 1
}

func addNICs(a *args, nics []KVMNIC, o QEMUOptions, boot map[string]int) {
	if o.Net == "none" {
		return
	}
	for i, n := range nics {
		id := fmt.Sprintf("net%d", i)
		switch o.Net {
		case "bridge":
			br := o.Bridge
			if br == "" {
				br = n.Bridge
			}
			if br == "" {
				br = "br0"
			}
			a.add("-netdev", "bridge,id="+id+",br="+optEscape(br))
		case "tap":
			nd := "tap,id=" + id
			if i < len(o.TapNames) && o.TapNames[i] != "" {
				nd += ",ifname=" + optEscape(o.TapNames[i])
			}
			a.add("-netdev", nd+",script=no,downscript=no")
		default:
			nd := "user,id=" + id
			if i < len(o.UserNet) && o.UserNet[i] != "" {
				nd += "," + o.UserNet[i]
			}
			a.add("-netdev", nd)
		}
		dev := []string{nicDevice(n.Model), "netdev=" + id}
		if n.MAC != "" {
			dev = append(dev, "mac="+n.MAC)
		}
		if b, ok := boot[fmt.Sprintf("nic:%d", i)]; ok {
			dev = append(dev, "bootindex="+strconv.Itoa(b))
		}
		a.add("-device", strings.Join(dev, ","))
	}
}

// nicDevice maps a libvirt NIC model to QEMU's device name.
func nicDevice(model string) string {
	switch strings.ToLower(model) {
	case "", "virtio", "virtio-net":
		return "virtio-net-pci"
	case "ne2k_pci", "ne2k-pci":
		return "ne2k_pci"
	case "pcnet":
		return "pcnet"
	default:
		return model // e1000, rtl8139, e1000e, ... are QEMU's names too
	}
}

func soundDevice(hw string) string {
	switch strings.ToLower(hw) {
	case "es1370":
		return "ES1370"
	case "ac97":
		return "AC97"
	case "sb16":
		return "sb16"
	case "ich6", "hda":
		return "intel-hda"
	default:
		return ""
	}
}

func addDisplay(a *args, k *KVMDomain, o QEMUOptions) {
	// Windows of the RHEL 5 era has a driver for the Cirrus card Xen's
	// HVM guests had, and only plain VGA modes on std VGA.
	vga := "std"
	switch {
	case k.Video == "cirrus":
		vga = "cirrus"
	case k.Video == "vga":
		vga = "std"
	case k.OS == "windows":
		vga = "cirrus"
	}
	g := k.Graphics
	switch {
	case o.Display == "none" || (o.Display == "" && g == nil):
		if g == nil && k.OS != "windows" {
			vga = "none"
		}
		a.add("-vga", vga, "-display", "none")
	case o.Display != "":
		a.add("-vga", vga, "-display", o.Display)
	default:
		a.add("-vga", vga)
		a.add(vncArgs(g, o)...)
	}
}

// vncArgs is the -vnc option for the domain's framebuffer. Xen's SDL
// window has no server-side equivalent; it becomes a local VNC display.
func vncArgs(g *Graphics, o QEMUOptions) []string {
	listen := g.Listen
	if listen == "" || g.Type != "vnc" {
		listen = "127.0.0.1"
	}
	if strings.Contains(listen, ":") && !strings.HasPrefix(listen, "[") {
		listen = "[" + listen + "]" // IPv6
	}
	display := 0
	auto := g.AutoPort || g.Type != "vnc"
	switch {
	case g.Display != nil:
		display = *g.Display
	case g.Port != nil && *g.Port >= 5900:
		display = *g.Port - 5900
	default:
		auto = true
	}
	v := listen + ":" + strconv.Itoa(display)
	if auto {
		v += ",to=99" // the first free display from this one on
	}
	var out []string
	if g.Password != "" {
		if o.VNCPasswordFile != "" {
			out = append(out, "-object", "secret,id=vncpass,format=raw,file="+optEscape(o.VNCPasswordFile))
			v += ",password-secret=vncpass"
		} else {
			v += ",password=on"
		}
	}
	out = append(out, "-vnc", v)
	if g.Keymap != "" {
		out = append(out, "-k", g.Keymap)
	}
	return out
}

// ShellJoin quotes an argv for a POSIX shell, so a logged command line
// can be pasted to rerun it.
func ShellJoin(argv []string) string {
	var b strings.Builder
	for i, s := range argv {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shellQuote(s))
	}
	return b.String()
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("-_./=:,+@%", c)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
