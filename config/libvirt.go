package config

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"strings"

	"libvirt.org/go/libvirtxml"
)

// parseLibvirt reads a libvirt domain XML of type xen.
func parseLibvirt(data []byte, file string) (*Domain, error) {
	var x libvirtxml.Domain
	if err := x.Unmarshal(string(data)); err != nil {
		var se *xml.SyntaxError
		if errors.As(err, &se) {
			return nil, &SyntaxError{File: file, Line: se.Line, Msg: "libvirt XML: " + se.Msg}
		}
		return nil, &SyntaxError{File: file, Msg: fmt.Sprintf("libvirt XML: %v", err)}
	}
	if x.Type != "xen" {
		return nil, &SyntaxError{File: file, Msg: fmt.Sprintf("libvirt domain type %q: only type='xen' domains are Xen guests", x.Type)}
	}
	d := &Domain{Name: x.Name}
	d.Source.NameLine = elementLine(data, "<name>")
	if x.UUID != "" {
		d.UUID = normalizeUUID(x.UUID, d)
	}
	var errs []error
	if x.Memory != nil {
		n, err := memoryMiB(x.Memory.Value, x.Memory.Unit)
		errs = append(errs, err)
		d.MaxMemoryMiB = n
		d.MemoryMiB = n
	}
	if x.CurrentMemory != nil {
		n, err := memoryMiB(x.CurrentMemory.Value, x.CurrentMemory.Unit)
		errs = append(errs, err)
		d.MemoryMiB = n
	}
	if x.VCPU != nil {
		d.MaxVCPUs = int(x.VCPU.Value)
		d.VCPUs = int(x.VCPU.Value)
		if x.VCPU.Current > 0 {
			d.VCPUs = int(x.VCPU.Current)
		}
		d.CPUs = x.VCPU.CPUSet
	}
	d.Bootloader = x.Bootloader
	d.BootloaderArgs = x.BootloaderArgs
	d.Type = PV
	if os := x.OS; os != nil {
		if os.Type != nil {
			switch os.Type.Type {
			case "hvm":
				d.Type = HVM
			case "linux", "xen", "":
			default:
				d.warnf("%s: os type %q: treated as paravirtualised", fileName(file), os.Type.Type)
			}
		}
		if os.Loader != nil {
			d.Loader = os.Loader.Path
		}
		d.Kernel = os.Kernel
		d.Ramdisk = os.Initrd
		d.Extra = os.Cmdline
		for _, b := range os.BootDevices {
			switch b.Dev {
			case "hd":
				d.Boot += "c"
			case "cdrom":
				d.Boot += "d"
			case "fd":
				d.Boot += "a"
			case "network":
				d.Boot += "n"
			}
		}
	}
	if f := x.Features; f != nil {
		t := true
		if f.ACPI != nil {
			d.ACPI = &t
		}
		if f.APIC != nil {
			d.APIC = &t
		}
		if f.PAE != nil {
			d.PAE = &t
		}
		if f.Viridian != nil {
			d.Viridian = &t
		}
		if f.HAP != nil {
			b := f.HAP.State != "off"
			d.HAP = &b
		}
	}
	if c := x.Clock; c != nil {
		switch c.Offset {
		case "localtime":
			d.Localtime = true
		case "variable":
			d.Localtime = c.Basis == "localtime"
			if c.Adjustment != "" && c.Adjustment != "reset" {
				var n int64
				if _, err := fmt.Sscan(c.Adjustment, &n); err == nil {
					d.RTCTimeOffset = n
				}
			}
		}
		for _, t := range c.Timer {
			if t.Name == "hpet" && t.Present != "" {
				b := t.Present == "yes"
				d.HPET = &b
			}
		}
	}
	d.OnPoweroff, d.OnReboot, d.OnCrash = x.OnPoweroff, x.OnReboot, x.OnCrash
	if dev := x.Devices; dev != nil {
		d.DeviceModel = dev.Emulator
		for _, disk := range dev.Disks {
			d.Disks = append(d.Disks, diskFromLibvirt(disk))
		}
		if err := checkDiskTargets(file, d.Disks, nil); err != nil {
			errs = append(errs, err)
		}
		for _, nic := range dev.Interfaces {
			d.NICs = append(d.NICs, nicFromLibvirt(nic))
		}
		for _, s := range dev.Serials {
			d.Serial = append(d.Serial, charFromLibvirt(s.Source))
		}
		for _, p := range dev.Parallels {
			d.Parallel = append(d.Parallel, charFromLibvirt(p.Source))
		}
		for _, in := range dev.Inputs {
			if in.Bus == "usb" {
				d.USB = true
				d.USBDevices = append(d.USBDevices, in.Type)
			}
		}
		var sound []string
		for _, s := range dev.Sounds {
			sound = append(sound, s.Model)
		}
		d.SoundHW = strings.Join(sound, ",")
		for _, g := range dev.Graphics {
			switch {
			case g.VNC != nil:
				gr := Graphics{Type: "vnc", Listen: g.VNC.Listen, Password: g.VNC.Passwd, Keymap: g.VNC.Keymap, AutoPort: g.VNC.AutoPort == "yes"}
				if gr.Listen == "" {
					for _, l := range g.VNC.Listeners {
						if l.Address != nil {
							gr.Listen = l.Address.Address
						}
					}
				}
				if g.VNC.Port > 0 && !gr.AutoPort {
					p := g.VNC.Port
					gr.Port = &p
				}
				if g.VNC.Port == -1 {
					gr.AutoPort = true
				}
				d.Graphics = append(d.Graphics, gr)
			case g.SDL != nil:
				d.Graphics = append(d.Graphics, Graphics{Type: "sdl", DisplayV: g.SDL.Display, XAuth: g.SDL.XAuth})
			default:
				d.warnf("%s: graphics other than VNC and SDL ignored", fileName(file))
			}
		}
		for _, h := range dev.Hostdevs {
			if h.SubsysPCI != nil && h.SubsysPCI.Source != nil && h.SubsysPCI.Source.Address != nil {
				a := h.SubsysPCI.Source.Address
				d.PCI = append(d.PCI, fmt.Sprintf("%04x:%02x:%02x.%x", uintOr0(a.Domain), uintOr0(a.Bus), uintOr0(a.Slot), uintOr0(a.Function)))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", fileName(file), err)
	}
	return d, nil
}

// fileName is the name of the config in messages: "<input>" when it was
// not read from a file.
func fileName(file string) string {
	if file == "" {
		return "<input>"
	}
	return file
}

// filePos is "file:line" for warnings.
// elementLine is the line of the first occurrence of tag in data, or 0.
// The domain's <name> is the first element of that name in libvirt XML.
func elementLine(data []byte, tag string) int {
	i := bytes.Index(data, []byte(tag))
	if i < 0 {
		return 0
	}
	return bytes.Count(data[:i], []byte("\n")) + 1
}

func filePos(file string, line int) string {
	return fmt.Sprintf("%s:%d", fileName(file), line)
}

func uintOr0(p *uint) uint {
	if p == nil {
		return 0
	}
	return *p
}

// memoryMiB converts a libvirt memory value with its unit to MiB.
func memoryMiB(v uint, unit string) (int64, error) {
	var bytes float64
	f := float64(v)
	switch unit {
	case "b", "bytes":
		bytes = f
	case "KB":
		bytes = f * 1e3
	case "", "k", "KiB":
		bytes = f * 1024
	case "MB":
		bytes = f * 1e6
	case "M", "MiB":
		bytes = f * (1 << 20)
	case "GB":
		bytes = f * 1e9
	case "G", "GiB":
		bytes = f * (1 << 30)
	case "TB":
		bytes = f * 1e12
	case "T", "TiB":
		bytes = f * (1 << 40)
	default:
		return 0, fmt.Errorf("unknown memory unit %q", unit)
	}
	return int64(bytes / (1 << 20)), nil
}

func diskFromLibvirt(x libvirtxml.DomainDisk) Disk {
	disk := Disk{Device: x.Device, Mode: "w"}
	if disk.Device == "" {
		disk.Device = "disk"
	}
	if x.Target != nil {
		disk.Target = x.Target.Dev
		disk.Bus = x.Target.Bus
	}
	if x.ReadOnly != nil {
		disk.Mode = "r"
	} else if x.Shareable != nil {
		disk.Mode = "w!"
	}
	if s := x.Source; s != nil {
		switch {
		case s.File != nil:
			disk.Source = s.File.File
		case s.Block != nil:
			disk.Source = s.Block.Dev
		case s.Network != nil:
			disk.Source = s.Network.Protocol + ":" + s.Network.Name
		}
	}
	if drv := x.Driver; drv != nil {
		switch drv.Name {
		case "tap", "tap2":
			disk.Backend = drv.Name + ":" + drv.Type
			disk.Format = tapFormat(drv.Type)
		default:
			disk.Backend = drv.Name
			disk.Format = drv.Type
		}
	}
	return disk
}

func nicFromLibvirt(x libvirtxml.DomainInterface) NIC {
	var n NIC
	if x.MAC != nil {
		n.MAC = strings.ToLower(x.MAC.Address)
	}
	if x.Source != nil && x.Source.Bridge != nil {
		n.Bridge = x.Source.Bridge.Bridge
	}
	if x.Script != nil {
		n.Script = x.Script.Path
	}
	if x.Model != nil {
		if x.Model.Type == "netfront" {
			n.Type = "netfront"
		} else {
			n.Model = x.Model.Type
		}
	}
	if x.Target != nil {
		n.VifName = x.Target.Dev
	}
	var ips []string
	for _, ip := range x.IP {
		ips = append(ips, ip.Address)
	}
	n.IP = strings.Join(ips, " ")
	return n
}

func charFromLibvirt(s *libvirtxml.DomainChardevSource) Char {
	switch {
	case s == nil || s.Pty != nil:
		return Char{Type: "pty", Raw: "pty"}
	case s.Null != nil:
		return Char{Type: "null", Raw: "null"}
	case s.StdIO != nil:
		return Char{Type: "stdio", Raw: "stdio"}
	case s.VC != nil:
		return Char{Type: "vc", Raw: "vc"}
	case s.File != nil:
		return Char{Type: "file", Path: s.File.Path, Raw: "file:" + s.File.Path}
	case s.Pipe != nil:
		return Char{Type: "pipe", Path: s.Pipe.Path, Raw: "pipe:" + s.Pipe.Path}
	case s.Dev != nil:
		return Char{Type: "dev", Path: s.Dev.Path, Raw: s.Dev.Path}
	case s.TCP != nil:
		p := s.TCP.Host + ":" + s.TCP.Service
		return Char{Type: "tcp", Path: p, Raw: "tcp:" + p}
	case s.UDP != nil:
		p := s.UDP.ConnectHost + ":" + s.UDP.ConnectService
		return Char{Type: "udp", Path: p, Raw: "udp:" + p}
	case s.UNIX != nil:
		return Char{Type: "unix", Path: s.UNIX.Path, Raw: "unix:" + s.UNIX.Path}
	}
	return Char{Type: "pty", Raw: "pty"}
}
