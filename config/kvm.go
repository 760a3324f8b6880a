package config

// KVMDomain is the target KVM guest of a migration: what the libvirt
// domain XML (type kvm) and the QEMU command line describe. It is built
// from a Domain by ToKVM and read back from the written XML by
// ParseKVMXML, so the launcher can boot an OUTDIR without the Xen config.
type KVMDomain struct {
	Name         string `json:"name"`
	UUID         string `json:"uuid,omitempty"`
	MemoryMiB    int64  `json:"memory_mib"`
	MaxMemoryMiB int64  `json:"max_memory_mib"`
	VCPUs        int    `json:"vcpus"`
	MaxVCPUs     int    `json:"max_vcpus"`
	// Machine is the QEMU machine type: "pc" (i440fx) for RHEL 4/5 and
	// Windows 2003 era guests.
	Machine string `json:"machine"`
	// OS is "linux", "windows" or "" when unknown.
	OS string `json:"os,omitempty"`

	// Direct kernel boot, when the guest booted through pygrub or an
	// external kernel and has no boot loader of its own. Empty Kernel means
	// BIOS boot from the disks.
	Kernel  string `json:"kernel,omitempty"`
	Initrd  string `json:"initrd,omitempty"`
	Cmdline string `json:"cmdline,omitempty"`
	// BootFromDisk: the kernel, initrd and command line are to be read at
	// launch from the grub config on the first disk (built-in pygrub).
	BootFromDisk bool   `json:"boot_from_disk,omitempty"`
	BootOrder    string `json:"boot_order,omitempty"` // BIOS order, "cd" = disk then CD-ROM

	ACPI      bool   `json:"acpi"`
	APIC      bool   `json:"apic"`
	PAE       bool   `json:"pae"`
	Localtime bool   `json:"localtime,omitempty"`
	RTCOffset int64  `json:"rtc_offset,omitempty"` // seconds, with Localtime false: UTC+offset
	USBTablet bool   `json:"usb_tablet,omitempty"`
	USBMouse  bool   `json:"usb_mouse,omitempty"`
	SoundHW   string `json:"soundhw,omitempty"`
	// Video is the VGA model as libvirt names it (cirrus, vga); "" leaves
	// it to the OS default (cirrus for Windows, std VGA otherwise).
	Video string `json:"video,omitempty"`

	Disks    []KVMDisk `json:"disks"`
	NICs     []KVMNIC  `json:"nics"`
	Graphics *Graphics `json:"graphics,omitempty"` // VNC (or SDL) kept from Xen
	Serial   bool      `json:"serial"`             // a serial console on ttyS0 (always true for Linux)

	OnPoweroff string `json:"on_poweroff,omitempty"`
	OnReboot   string `json:"on_reboot,omitempty"`
	OnCrash    string `json:"on_crash,omitempty"`
}

// KVMDisk is a disk of the KVM guest.
type KVMDisk struct {
	Path     string `json:"path"`             // image path; empty for an empty CD-ROM drive
	Format   string `json:"format,omitempty"` // qcow2 | raw
	Target   string `json:"target"`           // vda, hda, hdc, ...
	Bus      string `json:"bus"`              // virtio | ide | sata | scsi
	Device   string `json:"device"`           // disk | cdrom
	ReadOnly bool   `json:"readonly,omitempty"`
	// Source is the Xen disk this one was converted from.
	Source *Disk `json:"source,omitempty"`
}

// KVMNIC is a network interface of the KVM guest.
type KVMNIC struct {
	MAC    string `json:"mac"`
	Model  string `json:"model"` // virtio | e1000 | rtl8139 | ...
	Bridge string `json:"bridge,omitempty"`
}
