// Package config reads Xen domain configurations into one domain model
// and maps a Xen guest onto its KVM target, as pure functions.
//
// Parse and ParseFile read xm files (/etc/xen/NAME: the Python-literal
// subset xm configs use in practice; real Python is a *SyntaxError naming
// file:line:col), xl.cfg, xend SXP ((domain ...) and (vm ...)) and libvirt
// XML of type xen; the format is detected from the content unless
// WithFormat forces one. Settings the model has no field for are kept in
// Domain.Unknown and reported in Domain.Warnings, never dropped.
//
//	d, err := config.ParseFile("/etc/xen/web01")
//	if err != nil { ... }
//	for _, w := range d.Warnings { log.Print(w) }
//
// ToKVM decides the KVM guest (virtio or IDE disks, NIC models, boot);
// KVMDomain.LibvirtXML writes it as libvirt XML of type kvm, ParseKVMXML
// reads that back, and QEMUArgs builds the qemu-system-x86_64 argv.
//
//	k, err := config.ToKVM(d, config.KVMOptions{Virtio: true, OS: "linux",
//		Images: map[string]config.Image{"xvda": {Path: "/srv/kvm/web01-vda.qcow2", Format: "qcow2"}}})
//	xml, err := k.LibvirtXML()
package config

// Kind says how a Xen guest is virtualised.
type Kind string

const (
	PV  Kind = "pv"  // paravirtualised
	HVM Kind = "hvm" // fully virtualised
)

// Format names a config file syntax.
type Format string

const (
	FormatXM      Format = "xm"      // /etc/xen/NAME, Python-literal syntax
	FormatXL      Format = "xl"      // xl.cfg
	FormatSXP     Format = "sxp"     // xend S-expressions
	FormatLibvirt Format = "libvirt" // libvirt domain XML, type xen
)

// Domain is one Xen guest as its config describes it.
type Domain struct {
	Name string `json:"name"`
	UUID string `json:"uuid"`
	Type Kind   `json:"type"`

	MemoryMiB    int64  `json:"memory_mib"`
	MaxMemoryMiB int64  `json:"max_memory_mib"`
	VCPUs        int    `json:"vcpus"`     // vcpus online at boot
	MaxVCPUs     int    `json:"max_vcpus"` // maxvcpus; equals VCPUs when unset
	CPUs         string `json:"cpus,omitempty"`

	// PV boot.
	Kernel         string `json:"kernel,omitempty"`
	Ramdisk        string `json:"ramdisk,omitempty"`
	Extra          string `json:"extra,omitempty"`
	Root           string `json:"root,omitempty"`
	Bootloader     string `json:"bootloader,omitempty"`
	BootloaderArgs string `json:"bootloader_args,omitempty"`

	// HVM.
	Loader        string   `json:"loader,omitempty"`
	DeviceModel   string   `json:"device_model,omitempty"`
	Boot          string   `json:"boot,omitempty"` // boot order, e.g. "cd"
	ACPI          *bool    `json:"acpi,omitempty"`
	APIC          *bool    `json:"apic,omitempty"`
	PAE           *bool    `json:"pae,omitempty"`
	HAP           *bool    `json:"hap,omitempty"`
	Viridian      *bool    `json:"viridian,omitempty"`
	HPET          *bool    `json:"hpet,omitempty"`
	Localtime     bool     `json:"localtime,omitempty"`
	RTCTimeOffset int64    `json:"rtc_timeoffset,omitempty"`
	USB           bool     `json:"usb,omitempty"`
	USBDevices    []string `json:"usb_devices,omitempty"` // "tablet", "mouse", ...
	SoundHW       string   `json:"soundhw,omitempty"`
	StdVGA        bool     `json:"stdvga,omitempty"`
	Serial        []Char   `json:"serial,omitempty"`
	Parallel      []Char   `json:"parallel,omitempty"`

	Disks    []Disk     `json:"disks"`
	NICs     []NIC      `json:"nics"`
	Graphics []Graphics `json:"graphics,omitempty"`
	PCI      []string   `json:"pci,omitempty"` // passthrough BDFs

	OnPoweroff string `json:"on_poweroff,omitempty"`
	OnReboot   string `json:"on_reboot,omitempty"`
	OnCrash    string `json:"on_crash,omitempty"`

	// Unknown holds settings this model has no field for, kept verbatim.
	Unknown []Setting `json:"unknown,omitempty"`
	// Warnings are non-fatal findings while parsing (duplicate keys,
	// unknown settings, values that were guessed).
	Warnings []string `json:"warnings,omitempty"`

	// Source tells where the config came from.
	Source Source `json:"source"`
}

// Source is the file a Domain was parsed from.
type Source struct {
	File   string `json:"file,omitempty"`
	Format Format `json:"format"`
	// NameLine is the line of the guest's name in File, 0 when unknown.
	NameLine int `json:"-"`
}

// Disk is one virtual block device of a guest.
type Disk struct {
	// Backend is how dom0 provides the disk: file, phy, tap:aio, tap:qcow,
	// tap:vhd, tap2:aio, ... For xl configs: backendtype and format.
	Backend string `json:"backend"`
	// Format is the image format when the config says it: raw, qcow,
	// qcow2, vhd. Empty means "detect from content".
	Format string `json:"format,omitempty"`
	Source string `json:"source"`           // path; empty for an empty CD-ROM drive
	Target string `json:"target"`           // guest device name without ioemu:/:cdrom, e.g. xvda, hda, hdc
	Device string `json:"device"`           // disk | cdrom
	Mode   string `json:"mode"`             // r | w | w!
	Bus    string `json:"bus,omitempty"`    // xen | ide | scsi, when known
	Exists *bool  `json:"exists,omitempty"` // filled by inspection
}

// ReadOnly tells whether the disk is attached read-only.
func (d Disk) ReadOnly() bool { return d.Mode == "r" }

// NIC is one virtual network interface.
type NIC struct {
	MAC     string `json:"mac"`    // empty: Xen made up a random one at each boot
	Bridge  string `json:"bridge"` // empty: the toolstack's default bridge
	Model   string `json:"model"`  // emulated NIC of an HVM guest; empty: rtl8139, or netfront for PV
	Script  string `json:"script"`
	Type    string `json:"type,omitempty"` // ioemu | netfront | vif
	VifName string `json:"vifname,omitempty"`
	IP      string `json:"ip,omitempty"`
	Rate    string `json:"rate,omitempty"`
}

// Graphics is a virtual framebuffer (vfb, or HVM vnc/sdl settings).
type Graphics struct {
	Type     string `json:"type"` // vnc | sdl
	Listen   string `json:"listen,omitempty"`
	Password string `json:"password,omitempty"`
	Display  *int   `json:"display,omitempty"` // VNC display; port is 5900+display
	Port     *int   `json:"port,omitempty"`    // explicit port
	AutoPort bool   `json:"autoport,omitempty"`
	Keymap   string `json:"keymap,omitempty"`
	XAuth    string `json:"xauthority,omitempty"`
	DisplayV string `json:"display_env,omitempty"` // SDL's DISPLAY
}

// Char is a serial or parallel port backend as Xen spells it:
// "pty", "null", "stdio", "file:/path", "tcp:host:port", "unix:/path", ...
type Char struct {
	Type string `json:"type"`           // pty | null | stdio | vc | file | pipe | tcp | telnet | udp | unix | dev
	Path string `json:"path,omitempty"` // the rest, as given
	Raw  string `json:"raw"`
}

// Setting is a key the parser did not map into the model.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	Line  int    `json:"line,omitempty"`
}
