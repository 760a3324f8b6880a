package config

import (
	"encoding/xml"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// MetadataNamespace is the XML namespace of the <metadata> element
// xen2kvm writes into a KVM domain: what libvirt's own elements cannot
// say (boot the kernel found on the disk, the guest OS, the Xen disk each
// KVM disk came from).
const MetadataNamespace = "https://github.com/xen2kvm/xen2kvm/xmlns/migration/1"

// kvmMetadata is xen2kvm's element inside <metadata>.
type kvmMetadata struct {
	XMLName      xml.Name       `xml:"https://github.com/xen2kvm/xen2kvm/xmlns/migration/1 migration"`
	OS           string         `xml:"os,omitempty"`
	BootFromDisk bool           `xml:"boot-from-disk,omitempty"`
	Disks        []metadataDisk `xml:"disk"`
}

// metadataDisk records the Xen disk a KVM disk was converted from.
type metadataDisk struct {
	Target     string `xml:"target,attr"`
	XenBackend string `xml:"xen-backend,attr,omitempty"`
	XenFormat  string `xml:"xen-format,attr,omitempty"`
	XenSource  string `xml:"xen-source,attr,omitempty"`
	XenTarget  string `xml:"xen-target,attr"`
	XenDevice  string `xml:"xen-device,attr,omitempty"`
	XenMode    string `xml:"xen-mode,attr,omitempty"`
	XenBus     string `xml:"xen-bus,attr,omitempty"`
}

// libvirtSoundModels are the sound models libvirt's schema accepts, of
// those Xen's soundhw could name.
var libvirtSoundModels = map[string]bool{"sb16": true, "es1370": true, "pcspk": true, "ac97": true, "ich6": true, "ich9": true}

// LibvirtXML writes the domain as libvirt domain XML of type kvm.
func (k *KVMDomain) LibvirtXML() ([]byte, error) {
	x := libvirtxml.Domain{
		Type: "kvm",
		Name: k.Name,
		UUID: k.UUID,
		Memory: &libvirtxml.DomainMemory{
			Value: uint(max(k.MaxMemoryMiB, k.MemoryMiB) * 1024), Unit: "KiB",
		},
		CurrentMemory: &libvirtxml.DomainCurrentMemory{Value: uint(k.MemoryMiB * 1024), Unit: "KiB"},
		VCPU:          &libvirtxml.DomainVCPU{Placement: "static", Value: uint(max(k.MaxVCPUs, k.VCPUs, 1))},
		OS: &libvirtxml.DomainOS{
			Type: &libvirtxml.DomainOSType{Type: "hvm", Arch: "x86_64", Machine: k.Machine},
		},
		OnPoweroff: k.OnPoweroff,
		OnReboot:   k.OnReboot,
		OnCrash:    k.OnCrash,
		Devices:    &libvirtxml.DomainDeviceList{},
	}
	if k.Name == "" {
		return nil, errors.New("writing libvirt XML: the domain has no name")
	}
	if k.MemoryMiB <= 0 {
		return nil, fmt.Errorf("writing libvirt XML of %s: memory %d MiB", k.Name, k.MemoryMiB)
	}
	if k.VCPUs > 0 && uint(k.VCPUs) < x.VCPU.Value {
		x.VCPU.Current = uint(k.VCPUs)
	}
	if x.OS.Type.Machine == "" {
		x.OS.Type.Machine = "pc"
	}

	meta := kvmMetadata{OS: k.OS, BootFromDisk: k.BootFromDisk}
	for _, d := range k.Disks {
		if d.Source != nil {
			s := d.Source
			meta.Disks = append(meta.Disks, metadataDisk{Target: d.Target, XenBackend: s.Backend, XenFormat: s.Format,
				XenSource: s.Source, XenTarget: s.Target, XenDevice: s.Device, XenMode: s.Mode, XenBus: s.Bus})
		}
	}
	mx, err := xml.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("writing metadata of %s: %w", k.Name, err)
	}
	x.Metadata = &libvirtxml.DomainMetadata{XML: string(mx)}

	if k.Kernel != "" {
		x.OS.Kernel, x.OS.Initrd, x.OS.Cmdline = k.Kernel, k.Initrd, k.Cmdline
	}
	for _, c := range k.BootOrder {
		dev := map[rune]string{'a': "fd", 'c': "hd", 'd': "cdrom", 'n': "network"}[c]
		if dev != "" {
			x.OS.BootDevices = append(x.OS.BootDevices, libvirtxml.DomainBootDevice{Dev: dev})
		}
	}

	if k.ACPI || k.APIC || k.PAE {
		x.Features = &libvirtxml.DomainFeatureList{}
		if k.ACPI {
			x.Features.ACPI = &libvirtxml.DomainFeature{}
		}
		if k.APIC {
			x.Features.APIC = &libvirtxml.DomainFeatureAPIC{}
		}
		if k.PAE {
			x.Features.PAE = &libvirtxml.DomainFeature{}
		}
	}
	x.Clock = &libvirtxml.DomainClock{Offset: "utc"}
	switch {
	case k.RTCOffset != 0:
		basis := "utc"
		if k.Localtime {
			basis = "localtime"
		}
		x.Clock = &libvirtxml.DomainClock{Offset: "variable", Adjustment: strconv.FormatInt(k.RTCOffset, 10), Basis: basis}
	case k.Localtime:
		x.Clock.Offset = "localtime"
	}
	if k.OS == "windows" {
		// Windows counts timer ticks; re-inject the ones it missed
		// (QEMU's -rtc driftfix=slew).
		x.Clock.Timer = append(x.Clock.Timer, libvirtxml.DomainTimer{Name: "rtc", TickPolicy: "catchup"})
	}

	dev := x.Devices
	for _, d := range k.Disks {
		disk := libvirtxml.DomainDisk{
			Device: d.Device,
			Target: &libvirtxml.DomainDiskTarget{Dev: d.Target, Bus: d.Bus},
		}
		if disk.Device == "" {
			disk.Device = "disk"
		}
		format := d.Format
		if format == "" {
			format = "raw"
		}
		disk.Driver = &libvirtxml.DomainDiskDriver{Name: "qemu", Type: format}
		switch {
		case d.Path == "":
			// An empty CD-ROM drive.
			disk.Source = nil
		case strings.HasPrefix(d.Path, "/dev/"):
			disk.Source = &libvirtxml.DomainDiskSource{Block: &libvirtxml.DomainDiskSourceBlock{Dev: d.Path}}
		default:
			disk.Source = &libvirtxml.DomainDiskSource{File: &libvirtxml.DomainDiskSourceFile{File: d.Path}}
		}
		if d.ReadOnly {
			disk.ReadOnly = &libvirtxml.DomainDiskReadOnly{}
		}
		dev.Disks = append(dev.Disks, disk)
	}
	for _, n := range k.NICs {
		iface := libvirtxml.DomainInterface{Model: &libvirtxml.DomainInterfaceModel{Type: n.Model}}
		if n.MAC != "" {
			iface.MAC = &libvirtxml.DomainInterfaceMAC{Address: n.MAC}
		}
		if n.Bridge != "" {
			iface.Source = &libvirtxml.DomainInterfaceSource{Bridge: &libvirtxml.DomainInterfaceSourceBridge{Bridge: n.Bridge}}
		} else {
			iface.Source = &libvirtxml.DomainInterfaceSource{Network: &libvirtxml.DomainInterfaceSourceNetwork{Network: "default"}}
		}
		dev.Interfaces = append(dev.Interfaces, iface)
	}
	if k.Serial {
		port := uint(0)
		dev.Serials = append(dev.Serials, libvirtxml.DomainSerial{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainSerialTarget{Port: &port},
		})
		cport := uint(0)
		dev.Consoles = append(dev.Consoles, libvirtxml.DomainConsole{
			Source: &libvirtxml.DomainChardevSource{Pty: &libvirtxml.DomainChardevSourcePty{}},
			Target: &libvirtxml.DomainConsoleTarget{Type: "serial", Port: &cport},
		})
	}
	if k.Video != "" {
		dev.Videos = append(dev.Videos, libvirtxml.DomainVideo{Model: libvirtxml.DomainVideoModel{Type: k.Video}})
	}
	if k.USBTablet {
		dev.Inputs = append(dev.Inputs, libvirtxml.DomainInput{Type: "tablet", Bus: "usb"})
	}
	if k.USBMouse {
		dev.Inputs = append(dev.Inputs, libvirtxml.DomainInput{Type: "mouse", Bus: "usb"})
	}
	if g := k.Graphics; g != nil {
		switch g.Type {
		case "vnc":
			vnc := &libvirtxml.DomainGraphicVNC{Listen: g.Listen, Passwd: g.Password, Keymap: g.Keymap}
			switch {
			case g.Port != nil && !g.AutoPort:
				vnc.Port, vnc.AutoPort = *g.Port, "no"
			case g.Display != nil && !g.AutoPort:
				vnc.Port, vnc.AutoPort = 5900+*g.Display, "no"
			default:
				vnc.Port, vnc.AutoPort = -1, "yes"
			}
			dev.Graphics = append(dev.Graphics, libvirtxml.DomainGraphic{VNC: vnc})
		case "sdl":
			dev.Graphics = append(dev.Graphics, libvirtxml.DomainGraphic{SDL: &libvirtxml.DomainGraphicSDL{Display: g.DisplayV, XAuth: g.XAuth}})
		}
	}
	for _, m := range strings.Split(k.SoundHW, ",") {
		if m = strings.TrimSpace(m); libvirtSoundModels[m] {
			dev.Sounds = append(dev.Sounds, libvirtxml.DomainSound{Model: m})
		}
	}

	s, err := x.Marshal()
	if err != nil {
		return nil, fmt.Errorf("writing libvirt XML of %s: %w", k.Name, err)
	}
	return []byte(s + "\n"), nil
}

// ParseKVMXML reads back a libvirt domain XML of type kvm, as LibvirtXML
// writes it, so a written guest can be booted without its Xen config.
func ParseKVMXML(data []byte) (*KVMDomain, error) {
	var x libvirtxml.Domain
	if err := x.Unmarshal(string(data)); err != nil {
		return nil, fmt.Errorf("reading KVM domain XML: %w", err)
	}
	if x.Type != "kvm" && x.Type != "qemu" {
		return nil, fmt.Errorf("reading KVM domain XML: domain type %q, want kvm", x.Type)
	}
	k := &KVMDomain{Name: x.Name, UUID: x.UUID, Machine: "pc", Disks: []KVMDisk{}, NICs: []KVMNIC{}}
	var errs []error
	if x.Memory != nil {
		n, err := memoryMiB(x.Memory.Value, x.Memory.Unit)
		errs = append(errs, err)
		k.MaxMemoryMiB, k.MemoryMiB = n, n
	}
	if x.CurrentMemory != nil {
		n, err := memoryMiB(x.CurrentMemory.Value, x.CurrentMemory.Unit)
		errs = append(errs, err)
		k.MemoryMiB = n
	}
	if x.VCPU != nil {
		k.MaxVCPUs, k.VCPUs = int(x.VCPU.Value), int(x.VCPU.Value)
		if x.VCPU.Current > 0 {
			k.VCPUs = int(x.VCPU.Current)
		}
	}
	var meta kvmMetadata
	if x.Metadata != nil && strings.Contains(x.Metadata.XML, MetadataNamespace) {
		if err := xml.Unmarshal([]byte(extractMetadata(x.Metadata.XML)), &meta); err != nil {
			errs = append(errs, fmt.Errorf("xen2kvm metadata: %w", err))
		}
	}
	k.OS, k.BootFromDisk = meta.OS, meta.BootFromDisk
	if os := x.OS; os != nil {
		if os.Type != nil && os.Type.Machine != "" {
			k.Machine = os.Type.Machine
		}
		k.Kernel, k.Initrd, k.Cmdline = os.Kernel, os.Initrd, os.Cmdline
		for _, b := range os.BootDevices {
			k.BootOrder += map[string]string{"fd": "a", "hd": "c", "cdrom": "d", "network": "n"}[b.Dev]
		}
	}
	if f := x.Features; f != nil {
		k.ACPI, k.APIC, k.PAE = f.ACPI != nil, f.APIC != nil, f.PAE != nil
	}
	if c := x.Clock; c != nil {
		switch c.Offset {
		case "localtime":
			k.Localtime = true
		case "variable":
			k.Localtime = c.Basis == "localtime"
			n, err := strconv.ParseInt(c.Adjustment, 10, 64)
			if err != nil {
				errs = append(errs, fmt.Errorf("clock adjustment %q: %w", c.Adjustment, err))
			}
			k.RTCOffset = n
		}
	}
	k.OnPoweroff, k.OnReboot, k.OnCrash = x.OnPoweroff, x.OnReboot, x.OnCrash
	if dev := x.Devices; dev != nil {
		for _, d := range dev.Disks {
			kd := KVMDisk{Device: d.Device, ReadOnly: d.ReadOnly != nil}
			if kd.Device == "" {
				kd.Device = "disk"
			}
			if d.Target != nil {
				kd.Target, kd.Bus = d.Target.Dev, d.Target.Bus
			}
			if d.Driver != nil {
				kd.Format = d.Driver.Type
			}
			if s := d.Source; s != nil {
				switch {
				case s.File != nil:
					kd.Path = s.File.File
				case s.Block != nil:
					kd.Path = s.Block.Dev
				}
			}
			if kd.Path == "" {
				kd.Format = ""
			}
			for _, m := range meta.Disks {
				if m.Target == kd.Target {
					kd.Source = &Disk{Backend: m.XenBackend, Format: m.XenFormat, Source: m.XenSource, Target: m.XenTarget,
						Device: m.XenDevice, Mode: m.XenMode, Bus: m.XenBus}
				}
			}
			k.Disks = append(k.Disks, kd)
		}
		for _, n := range dev.Interfaces {
			var nic KVMNIC
			if n.MAC != nil {
				nic.MAC = n.MAC.Address
			}
			if n.Model != nil {
				nic.Model = n.Model.Type
			}
			if n.Source != nil && n.Source.Bridge != nil {
				nic.Bridge = n.Source.Bridge.Bridge
			}
			k.NICs = append(k.NICs, nic)
		}
		k.Serial = len(dev.Serials) > 0
		for _, v := range dev.Videos {
			if m := v.Model.Type; m == "cirrus" || m == "vga" {
				k.Video = m
			}
		}
		for _, in := range dev.Inputs {
			if in.Bus == "usb" {
				switch in.Type {
				case "tablet":
					k.USBTablet = true
				case "mouse":
					k.USBMouse = true
				}
			}
		}
		for _, g := range dev.Graphics {
			switch {
			case g.VNC != nil:
				gr := &Graphics{Type: "vnc", Listen: g.VNC.Listen, Password: g.VNC.Passwd, Keymap: g.VNC.Keymap}
				for _, l := range g.VNC.Listeners {
					if gr.Listen == "" && l.Address != nil {
						gr.Listen = l.Address.Address
					}
				}
				if g.VNC.AutoPort == "yes" || g.VNC.Port <= 0 {
					gr.AutoPort = true
				} else {
					p := g.VNC.Port
					gr.Port = &p
				}
				k.Graphics = gr
			case g.SDL != nil:
				k.Graphics = &Graphics{Type: "sdl", DisplayV: g.SDL.Display, XAuth: g.SDL.XAuth}
			}
			if k.Graphics != nil {
				break
			}
		}
		var sound []string
		for _, s := range dev.Sounds {
			sound = append(sound, s.Model)
		}
		k.SoundHW = strings.Join(sound, ",")
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("reading KVM domain XML: %w", err)
	}
	return k, nil
}

// extractMetadata returns xen2kvm's element out of the inner XML of
// <metadata>, which may hold other applications' elements too.
func extractMetadata(inner string) string {
	dec := xml.NewDecoder(strings.NewReader(inner))
	for {
		start := dec.InputOffset()
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if err := dec.Skip(); err != nil {
			return ""
		}
		if se.Name.Space == MetadataNamespace && se.Name.Local == "migration" {
			return inner[start:dec.InputOffset()]
		}
	}
}
