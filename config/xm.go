package config

import (
	"errors"
	"fmt"
	"iter"
	"path"
	"sort"
	"strconv"
	"strings"
)

// xmReader maps the assignments of an xm or xl file onto a Domain.
type xmReader struct {
	file   string
	format Format
	d      *Domain
	vals   map[string]*assignment
	first  map[string]int // line of a key's first assignment, for ordering Unknown
	used   map[string]bool
}

func parseXM(data []byte, file string, f Format) (*Domain, error) {
	d := &Domain{}
	r := &xmReader{file: file, format: f, d: d, vals: map[string]*assignment{}, first: map[string]int{}, used: map[string]bool{}}
	as, err := parseAssignments(file, data, f == FormatXL, func(line int, format string, args ...any) {
		d.warnf("%s: %s", r.pos(line), fmt.Sprintf(format, args...))
	})
	if err != nil {
		return nil, err
	}
	for i := range as {
		a := as[i]
		prev, dup := r.vals[a.key]
		switch {
		case dup && a.append:
			merged, err := r.appendValue(prev.val, a)
			if err != nil {
				return nil, err
			}
			prev.val = merged
			continue
		case dup:
			d.warnf("%s: %s is set again (first at line %d); the last value wins", r.pos(a.line), a.key, r.first[a.key])
		default:
			r.first[a.key] = a.line
		}
		r.vals[a.key] = &a
	}
	if err := r.read(); err != nil {
		return nil, err
	}
	r.keepUnknown()
	return d, nil
}

func (r *xmReader) pos(line int) string { return filePos(r.file, line) }

func (r *xmReader) errAt(v value, format string, args ...any) error {
	return &SyntaxError{File: r.file, Line: v.line, Col: v.col, Msg: fmt.Sprintf(format, args...)}
}

func (r *xmReader) appendValue(old value, a assignment) (value, error) {
	switch {
	case old.kind == kindList && a.val.kind == kindList:
		old.list = append(old.list, a.val.list...)
		return old, nil
	case old.kind == kindString && a.val.kind == kindString:
		old.str += a.val.str
		return old, nil
	}
	return value{}, r.errAt(a.val, "%s += %s: can only append a list to a list or a string to a string", a.key, a.val.kind)
}

// get returns the value of key and marks the key as understood.
func (r *xmReader) get(key string) (value, bool) {
	a, ok := r.vals[key]
	if !ok {
		return value{}, false
	}
	r.used[key] = true
	return a.val, true
}

func (r *xmReader) str(key string) (string, bool, error) {
	v, ok := r.get(key)
	if !ok {
		return "", false, nil
	}
	switch v.kind {
	case kindString:
		return v.str, true, nil
	case kindInt, kindFloat, kindBool:
		return v.text(), true, nil
	case kindNone:
		return "", false, nil
	}
	return "", false, r.errAt(v, "%s: expected a string, found a %s", key, v.kind)
}

func (r *xmReader) int(key string) (int64, bool, error) {
	v, ok := r.get(key)
	if !ok {
		return 0, false, nil
	}
	n, err := valueInt(v)
	if err != nil {
		return 0, false, r.errAt(v, "%s: %v", key, err)
	}
	return n, v.kind != kindNone, nil
}

// Limits of what a Xen guest can have; beyond them a value is a typo.
const (
	maxMemoryMiB = 16 << 20 // 16 TiB
	maxVCPUs     = 4096
)

// inRange checks a memory size (MiB) or vcpu count.
func (r *xmReader) inRange(key string, n int64) error {
	limit := int64(maxMemoryMiB)
	if strings.Contains(key, "vcpus") {
		limit = maxVCPUs
	}
	if n < 0 || n > limit {
		return r.errAt(r.vals[key].val, "%s = %d: out of range (0 to %d)", key, n, limit)
	}
	return nil
}

func valueInt(v value) (int64, error) {
	switch v.kind {
	case kindInt, kindBool:
		return v.num, nil
	case kindFloat:
		if v.flt != float64(int64(v.flt)) {
			return 0, fmt.Errorf("expected a whole number, found %v", v.flt)
		}
		return int64(v.flt), nil
	case kindString:
		n, err := strconv.ParseInt(strings.TrimSpace(v.str), 0, 64)
		if err != nil {
			return 0, fmt.Errorf("expected a number, found %q", v.str)
		}
		return n, nil
	case kindNone:
		return 0, nil
	}
	return 0, fmt.Errorf("expected a number, found a %s", v.kind)
}

func (r *xmReader) bool(key string) (*bool, error) {
	v, ok := r.get(key)
	if !ok || v.kind == kindNone {
		return nil, nil
	}
	b, err := valueBool(v)
	if err != nil {
		return nil, r.errAt(v, "%s: %v", key, err)
	}
	return &b, nil
}

func valueBool(v value) (bool, error) {
	switch v.kind {
	case kindInt, kindBool:
		return v.num != 0, nil
	case kindFloat:
		return v.flt != 0, nil
	case kindString:
		return parseBoolString(v.str)
	}
	return false, fmt.Errorf("expected 0/1 or True/False, found a %s", v.kind)
}

func parseBoolString(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "true", "yes", "on", "y":
		return true, nil
	case "0", "false", "no", "off", "n", "":
		return false, nil
	}
	return false, fmt.Errorf("expected 0/1 or True/False, found %q", s)
}

// strList reads a setting that is a list of strings or a single string.
func (r *xmReader) strList(key string) ([]value, bool, error) {
	v, ok := r.get(key)
	if !ok || v.kind == kindNone {
		return nil, false, nil
	}
	var out []value
	for _, e := range listOf(v) {
		switch e.kind {
		case kindString:
			out = append(out, e)
		case kindInt, kindFloat:
			out = append(out, value{kind: kindString, str: e.text(), line: e.line, col: e.col})
		default:
			return nil, false, r.errAt(e, "%s: expected a string in the list, found a %s", key, e.kind)
		}
	}
	return out, true, nil
}

// read fills the Domain from the collected settings.
func (r *xmReader) read() error {
	d := r.d
	var errs []error
	check := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	setStr := func(dst *string, key string) {
		s, _, err := r.str(key)
		check(err)
		if s != "" {
			*dst = s
		}
	}
	setBool := func(dst **bool, key string) {
		b, err := r.bool(key)
		check(err)
		if b != nil {
			*dst = b
		}
	}
	setFlag := func(dst *bool, key string) {
		b, err := r.bool(key)
		check(err)
		if b != nil {
			*dst = *b
		}
	}
	// sizeOrCount reads memory (MiB) or a vcpu count; a value out of
	// range is an error but is still stored.
	sizeOrCount := func(key string) (int64, bool) {
		n, ok, err := r.int(key)
		if ok {
			check(r.inRange(key, n))
		} else {
			check(err)
		}
		return n, ok
	}
	setChars := func(dst *[]Char, key string) {
		vs, _, err := r.strList(key)
		check(err)
		for _, v := range vs {
			if c, ok := parseChar(v.str); ok {
				*dst = append(*dst, c)
			}
		}
	}

	setStr(&d.Name, "name")
	if a := r.vals["name"]; a != nil {
		d.Source.NameLine = a.line
	}
	if u, ok, err := r.str("uuid"); ok {
		d.UUID = normalizeUUID(u, d)
	} else {
		check(err)
	}

	// Guest type: xm's builder, xl's type.
	d.Type = PV
	if b, ok, err := r.str("builder"); ok {
		switch strings.ToLower(b) {
		case "hvm":
			d.Type = HVM
		case "linux", "generic", "":
		default:
			d.warnf("%s: unknown builder %q: treating the guest as paravirtualised", r.pos(r.vals["builder"].line), b)
		}
	} else {
		check(err)
	}
	if t, ok, err := r.str("type"); ok {
		switch strings.ToLower(t) {
		case "hvm":
			d.Type = HVM
		case "pv":
			d.Type = PV
		case "pvh":
			d.Type = PV
			d.warnf("%s: type \"pvh\": treated as a paravirtualised guest", r.pos(r.vals["type"].line))
		default:
			d.warnf("%s: unknown guest type %q: treating the guest as paravirtualised", r.pos(r.vals["type"].line), t)
		}
	} else {
		check(err)
	}

	if n, ok := sizeOrCount("memory"); ok {
		d.MemoryMiB = n
	}
	if n, ok := sizeOrCount("maxmem"); ok {
		d.MaxMemoryMiB = n
	}
	if n, ok := sizeOrCount("vcpus"); ok {
		d.VCPUs = int(n)
	}
	if n, ok := sizeOrCount("maxvcpus"); ok {
		d.MaxVCPUs = int(n)
	}
	if v, ok := r.get("cpus"); ok {
		if s, ok := flatText(v, ","); ok {
			d.CPUs = s
		}
	}

	// Boot.
	kernel, _, err := r.str("kernel")
	check(err)
	if d.Type == HVM && (r.format == FormatXM || path.Base(kernel) == "hvmloader") {
		// xm's HVM "kernel" is the firmware loader, hvmloader.
		d.Loader = kernel
	} else {
		d.Kernel = kernel
	}
	setStr(&d.Ramdisk, "ramdisk")
	setStr(&d.Extra, "extra")
	setStr(&d.Root, "root")
	if c, ok, err := r.str("cmdline"); ok {
		if d.Extra != "" || d.Root != "" {
			d.warnf("%s: cmdline is set: extra and root are ignored, as xl does", r.pos(r.vals["cmdline"].line))
		}
		d.Extra, d.Root = c, ""
	} else {
		check(err)
	}
	setStr(&d.Bootloader, "bootloader")
	for _, key := range []string{"bootargs", "bootloader_args"} {
		if v, ok := r.get(key); ok {
			if s, ok := flatText(v, " "); ok {
				d.BootloaderArgs = s
			}
		}
	}

	// HVM.
	setStr(&d.DeviceModel, "device_model")
	setStr(&d.DeviceModel, "device_model_override")
	setStr(&d.Boot, "boot")
	setBool(&d.ACPI, "acpi")
	setBool(&d.APIC, "apic")
	setBool(&d.PAE, "pae")
	setBool(&d.HAP, "hap")
	if v, ok := r.vals["viridian"]; ok && v.val.kind == kindList {
		// xl: a list of enlightenment groups; any means on.
		r.used["viridian"] = true
		b := len(v.val.list) > 0
		d.Viridian = &b
	} else {
		setBool(&d.Viridian, "viridian")
	}
	setBool(&d.HPET, "hpet")
	setFlag(&d.Localtime, "localtime")
	if n, ok, err := r.int("rtc_timeoffset"); ok {
		d.RTCTimeOffset = n
	} else {
		check(err)
	}
	setFlag(&d.USB, "usb")
	if vs, _, err := r.strList("usbdevice"); err == nil {
		for _, v := range vs {
			if v.str != "" {
				d.USBDevices = append(d.USBDevices, v.str)
			}
		}
	} else {
		check(err)
	}
	setStr(&d.SoundHW, "soundhw")
	setFlag(&d.StdVGA, "stdvga")
	setChars(&d.Serial, "serial")
	setChars(&d.Parallel, "parallel")

	// Devices.
	if vs, _, err := r.strList("disk"); err == nil {
		var lines []int
		for i, v := range vs {
			disk, warns, err := parseDiskSpec(v.str, r.format)
			if err != nil {
				check(r.errAt(v, "disk %d (%q): %v", i+1, v.str, err))
				continue
			}
			for _, w := range warns {
				d.warnf("%s: disk %d (%q): %s", r.pos(v.line), i+1, v.str, w)
			}
			d.Disks = append(d.Disks, disk)
			lines = append(lines, v.line)
		}
		check(checkDiskTargets(r.file, d.Disks, lines))
	} else {
		check(err)
	}
	if vs, _, err := r.strList("vif"); err == nil {
		for i, v := range vs {
			nic, warns := parseVifSpec(v.str)
			for _, w := range warns {
				d.warnf("%s: vif %d (%q): %s", r.pos(v.line), i+1, v.str, w)
			}
			d.NICs = append(d.NICs, nic)
		}
	} else {
		check(err)
	}
	check(r.readGraphics())
	if vs, _, err := r.strList("pci"); err == nil {
		for _, v := range vs {
			bdf, _, _ := strings.Cut(v.str, ",")
			if bdf = strings.TrimSpace(bdf); bdf != "" {
				d.PCI = append(d.PCI, bdf)
			}
		}
	} else {
		check(err)
	}
	setStr(&d.OnPoweroff, "on_poweroff")
	setStr(&d.OnReboot, "on_reboot")
	setStr(&d.OnCrash, "on_crash")

	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// flatText renders v as one string, a list's items joined by sep; it is
// false for None.
func flatText(v value, sep string) (string, bool) {
	switch v.kind {
	case kindList:
		parts := make([]string, 0, len(v.list))
		for _, e := range v.list {
			parts = append(parts, e.text())
		}
		return strings.Join(parts, sep), true
	case kindNone:
		return "", false
	}
	return v.text(), true
}

// readGraphics reads vfb (PV framebuffers) or the HVM vnc/sdl settings.
func (r *xmReader) readGraphics() error {
	d := r.d
	vfbs, haveVFB, err := r.strList("vfb")
	if err != nil {
		return err
	}
	// The top-level settings are read in any case so that they count as
	// understood; they describe the display when there is no vfb list.
	vnc, err := r.bool("vnc")
	if err != nil {
		return err
	}
	sdl, err := r.bool("sdl")
	if err != nil {
		return err
	}
	top := map[string]string{}
	for _, key := range []string{"vnclisten", "vncpasswd", "vncdisplay", "vncunused", "keymap", "display", "xauthority"} {
		s, ok, err := r.str(key)
		if err != nil {
			return err
		}
		if ok {
			top[key] = s
		}
	}
	if haveVFB {
		for i, v := range vfbs {
			g, ok, warns := parseVfbSpec(v.str)
			for _, w := range warns {
				// Not the spec itself: it may hold the VNC password.
				d.warnf("%s: vfb %d: %s", r.pos(v.line), i+1, w)
			}
			if ok {
				d.Graphics = append(d.Graphics, g)
			}
		}
		return nil
	}
	if vnc != nil && *vnc {
		top["type"] = "vnc"
		g, _, warns := graphicsFrom(top)
		for _, w := range warns {
			d.warnf("%s: %s", r.pos(r.vals["vnc"].line), w)
		}
		d.Graphics = append(d.Graphics, g)
	}
	if sdl != nil && *sdl {
		top["type"] = "sdl"
		g, _, _ := graphicsFrom(top)
		d.Graphics = append(d.Graphics, g)
	}
	return nil
}

// keepUnknown moves every setting read() did not understand to
// Domain.Unknown, with a warning, in file order.
func (r *xmReader) keepUnknown() {
	var keys []string
	for k := range r.vals {
		if !r.used[k] {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return r.first[keys[i]] < r.first[keys[j]] })
	for _, k := range keys {
		a := r.vals[k]
		r.d.Unknown = append(r.d.Unknown, Setting{Key: k, Value: a.val.text(), Line: a.line})
		r.d.warnf("%s: unknown setting %s = %s kept but not used", r.pos(a.line), k, shownValue(k, a.val.text()))
	}
}

// IsSecretKey tells whether a setting's name says it holds a password
// (vncpasswd, spicepasswd, ...); its value is not repeated in warnings.
func IsSecretKey(key string) bool {
	k := strings.ToLower(key)
	return strings.Contains(k, "passw") || strings.Contains(k, "secret")
}

// shownValue is a setting's value as a warning may show it.
func shownValue(key, value string) string {
	if IsSecretKey(key) {
		return "(hidden)"
	}
	return value
}

// parseChar reads a serial or parallel backend as xm spells it. "none"
// and "" mean no port.
func parseChar(s string) (Char, bool) {
	s = strings.TrimSpace(s)
	switch s {
	case "", "none":
		return Char{}, false
	}
	if strings.HasPrefix(s, "/dev/") {
		return Char{Type: "dev", Path: s, Raw: s}, true
	}
	typ, rest, _ := strings.Cut(s, ":")
	switch typ {
	case "pty", "null", "stdio", "vc", "file", "pipe", "tcp", "telnet", "udp", "unix", "mon", "dev":
		return Char{Type: typ, Path: rest, Raw: s}, true
	}
	return Char{Type: typ, Path: rest, Raw: s}, true
}

// xlDiskKeys are the parameter names of xl's disk syntax. A field
// "name=value" with another name is a positional field (a path may
// contain "=").
var xlDiskKeys = map[string]bool{
	"target": true, "format": true, "vdev": true, "access": true, "devtype": true,
	"backendtype": true, "backend": true, "script": true, "discard": true, "no-discard": true,
	"direct-io-safe": true, "colo-host": true, "colo-port": true, "colo-export": true,
	"active-disk": true, "hidden-disk": true, "trusted": true, "untrusted": true,
	"specification": true,
}

func isXLDiskKey(k string) bool { return xlDiskKeys[strings.TrimSpace(k)] }

// diskFormats are image formats a disk spec may name.
var diskFormats = map[string]bool{"raw": true, "qcow": true, "qcow2": true, "vhd": true, "qed": true, "vmdk": true, "empty": true}

func isDiskFormat(s string) bool { return diskFormats[s] }

// parseDiskSpec reads one disk entry. It understands the xm form
// "uname,dev,mode" (uname = phy:/dev/..., file:/..., tap:aio:/...) and the
// xl form: key=value parameters (target= last, it takes the rest of the
// spec) and the positional "target,format,vdev,access".
func parseDiskSpec(spec string, f Format) (Disk, []string, error) {
	var (
		warns      []string
		positional []string
		target     *string
		disk       = Disk{}
		devtype    string
		access     string
		vdev       string
	)
	rest := spec
	for {
		if t := strings.TrimLeft(rest, " \t"); strings.HasPrefix(t, "target=") {
			// target= comes last: its value may contain commas.
			t = strings.TrimPrefix(t, "target=")
			target = &t
			break
		}
		field, more, ok := strings.Cut(rest, ",")
		field = strings.TrimSpace(field)
		if k, v, isKV := strings.Cut(field, "="); isKV && isXLDiskKey(k) {
			switch k {
			case "format":
				disk.Format = v
			case "vdev":
				vdev = v
			case "access":
				access = v
			case "devtype":
				devtype = v
			case "backendtype":
				disk.Backend = v
			case "script":
				warns = append(warns, fmt.Sprintf("block script %s: the disk needs that script on the Xen host", v))
			default:
				warns = append(warns, fmt.Sprintf("disk parameter %s=%s ignored", k, v))
			}
		} else {
			switch field {
			case "cdrom":
				devtype = "cdrom"
			case "discard", "no-discard", "direct-io-safe", "colo":
			default:
				positional = append(positional, field)
			}
		}
		if !ok {
			break
		}
		rest = more
	}
	// Positional parameters: target, [format,] vdev, access. A second
	// field that is no image format is the vdev (xm's "uname,dev,mode").
	if target == nil && len(positional) > 0 {
		t := positional[0]
		target = &t
		positional = positional[1:]
	}
	if len(positional) > 0 && (isDiskFormat(positional[0]) || positional[0] == "" && len(positional) > 2) {
		if positional[0] != "" {
			disk.Format = positional[0]
		}
		positional = positional[1:]
	}
	if len(positional) > 0 {
		if positional[0] != "" {
			vdev = positional[0]
		}
		positional = positional[1:]
	}
	if len(positional) > 0 {
		if positional[0] != "" {
			access = positional[0]
		}
		positional = positional[1:]
	}
	for _, p := range positional {
		if p != "" {
			warns = append(warns, fmt.Sprintf("extra field %q ignored", p))
		}
	}
	source := ""
	if target != nil {
		source = *target
	}
	return finishDisk(disk, source, vdev, access, devtype, f, warns)
}

// finishDisk completes a disk from its parts: source with an optional
// backend prefix (phy:, file:, tap:aio:), the target device with its
// ioemu: and :cdrom forms, the access mode and devtype.
func finishDisk(disk Disk, source, vdev, access, devtype string, f Format, warns []string) (Disk, []string, error) {
	vdev = strings.TrimPrefix(strings.TrimSpace(vdev), "ioemu:")
	if dev, kind, ok := strings.Cut(vdev, ":"); ok {
		vdev = dev
		switch kind {
		case "cdrom":
			devtype = "cdrom"
		case "disk":
		default:
			warns = append(warns, fmt.Sprintf("unknown device kind %q after the target", kind))
		}
	}
	if vdev == "" {
		return Disk{}, warns, fmt.Errorf("no target device (vdev)")
	}
	disk.Target = vdev
	disk.Bus = busOf(vdev)

	switch devtype {
	case "", "disk":
		disk.Device = "disk"
	case "cdrom":
		disk.Device = "cdrom"
	default:
		warns = append(warns, fmt.Sprintf("unknown devtype %q: treated as a disk", devtype))
		disk.Device = "disk"
	}

	switch strings.ToLower(strings.TrimSpace(access)) {
	case "r", "ro":
		disk.Mode = "r"
	case "w", "rw", "":
		disk.Mode = "w"
	case "w!", "rw!":
		disk.Mode = "w!"
	default:
		return Disk{}, warns, fmt.Errorf("unknown access mode %q (want r, w or w!)", access)
	}
	if access == "" && disk.Device == "cdrom" {
		disk.Mode = "r"
	}

	backend, format, src := splitUname(source, f)
	disk.Source = src
	if backend != "" {
		if disk.Backend == "" {
			disk.Backend = backend
		}
		if disk.Format == "" {
			disk.Format = format
		}
	}
	if disk.Source == "" && disk.Device != "cdrom" {
		return Disk{}, warns, fmt.Errorf("no source for a disk that is not a CD-ROM")
	}
	if disk.Backend == "" && disk.Source != "" {
		// The config does not say: guess the way the toolstack would.
		switch {
		case f == FormatXL && strings.HasPrefix(disk.Source, "/dev/"):
			disk.Backend = "phy"
		case f == FormatXL:
			disk.Backend = "qdisk"
		case strings.HasPrefix(disk.Source, "/dev/"):
			disk.Backend = "phy"
		default:
			disk.Backend = "file"
		}
	}
	if f == FormatXL && disk.Format == "" && disk.Source != "" {
		disk.Format = "raw" // xl's default format
	}
	return disk, warns, nil
}

// splitUname splits a Xen disk source with its backend prefix
// ("tap:aio:/img") into backend ("tap:aio"), format ("raw") and path.
func splitUname(u string, f Format) (backend, format, src string) {
	prefix, rest, ok := strings.Cut(u, ":")
	if !ok {
		return "", "", u
	}
	switch prefix {
	case "phy":
		if rest != "" && !strings.HasPrefix(rest, "/") {
			// phy:sda10 names /dev/sda10, as Xen's block script reads it.
			rest = "/dev/" + rest
		}
		return prefix, "raw", rest
	case "file":
		return prefix, "raw", rest
	case "tap", "tap2":
		drv, p, ok := strings.Cut(rest, ":")
		if !ok {
			return prefix, "", rest
		}
		if drv == "tapdisk" || drv == "ioemu" {
			if d2, p2, ok := strings.Cut(p, ":"); ok {
				drv, p = d2, p2
			}
		}
		return prefix + ":" + drv, tapFormat(drv), p
	case "aio", "qcow", "qcow2", "vhd", "raw":
		// xl accepts the tap driver as a prefix on its own.
		return "tap:" + prefix, tapFormat(prefix), rest
	}
	if f == FormatXM && prefix != "" && !strings.ContainsAny(prefix, "/.") {
		// Other xend block scripts: drbd:, iscsi:, nbd:, ...
		return prefix, "", rest
	}
	return "", "", u
}

func tapFormat(drv string) string {
	switch drv {
	case "aio", "sync", "raw":
		return "raw"
	case "qcow", "qcow2", "vhd", "vmdk", "qed":
		return drv
	}
	return ""
}

// busOf tells the bus a Xen target device name implies.
func busOf(dev string) string {
	switch {
	case strings.HasPrefix(dev, "xvd"):
		return "xen"
	case strings.HasPrefix(dev, "hd"):
		return "ide"
	case strings.HasPrefix(dev, "sd"):
		return "scsi"
	}
	return ""
}

// specFields yields the trimmed key and value of each "key=value" field
// of a comma-separated vif or vfb spec, in order; a field without a value
// adds a warning to warns instead.
func specFields(spec string, warns *[]string) iter.Seq2[string, string] {
	return func(yield func(k, v string) bool) {
		for _, field := range strings.Split(spec, ",") {
			field = strings.TrimSpace(field)
			if field == "" {
				continue
			}
			k, v, ok := strings.Cut(field, "=")
			if !ok {
				*warns = append(*warns, fmt.Sprintf("parameter %q without a value ignored", field))
				continue
			}
			if !yield(strings.TrimSpace(k), strings.TrimSpace(v)) {
				return
			}
		}
	}
}

// parseVifSpec reads "mac=..,bridge=..,script=..,model=..,type=..".
func parseVifSpec(spec string) (NIC, []string) {
	var (
		n     NIC
		warns []string
	)
	for k, v := range specFields(spec, &warns) {
		switch k {
		case "mac":
			n.MAC = strings.ToLower(v)
		case "bridge":
			n.Bridge = v
		case "script":
			n.Script = v
		case "model":
			n.Model = v
		case "type":
			n.Type = v
		case "vifname":
			n.VifName = v
		case "ip":
			n.IP = v
		case "rate":
			n.Rate = v
		case "backend", "devid", "uuid", "accel", "mtu", "gatewaydev":
		default:
			warns = append(warns, fmt.Sprintf("unknown parameter %s ignored", k))
		}
	}
	return n, warns
}

// parseVfbSpec reads one vfb entry: "type=vnc,vnclisten=..,vncpasswd=..",
// or the older "vnc=1,..." / "sdl=1,...".
func parseVfbSpec(spec string) (Graphics, bool, []string) {
	kv := map[string]string{}
	var warns []string
	for k, v := range specFields(spec, &warns) {
		kv[k] = v
	}
	if kv["type"] == "" {
		if b, _ := parseBoolString(kv["vnc"]); b {
			kv["type"] = "vnc"
		} else if b, _ := parseBoolString(kv["sdl"]); b {
			kv["type"] = "sdl"
		}
	}
	delete(kv, "vnc")
	delete(kv, "sdl")
	g, ok, w := graphicsFrom(kv)
	return g, ok, append(warns, w...)
}

// graphicsFrom builds a Graphics from vfb-style keys.
func graphicsFrom(kv map[string]string) (Graphics, bool, []string) {
	var warns []string
	g := Graphics{Type: kv["type"]}
	switch g.Type {
	case "vnc", "sdl":
	case "":
		return Graphics{}, false, []string{"no type=vnc or type=sdl: framebuffer ignored"}
	default:
		return Graphics{}, false, []string{fmt.Sprintf("unknown framebuffer type %q ignored", g.Type)}
	}
	g.AutoPort = g.Type == "vnc"
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := kv[k]
		switch k {
		case "type":
		case "vnclisten":
			g.Listen = v
		case "vncpasswd":
			g.Password = v
		case "vncdisplay":
			n, err := strconv.Atoi(v)
			if err != nil {
				warns = append(warns, fmt.Sprintf("vncdisplay %q is not a number: ignored", v))
				continue
			}
			g.Display = &n
		case "vncunused":
			b, err := parseBoolString(v)
			if err != nil {
				warns = append(warns, fmt.Sprintf("vncunused: %v", err))
				continue
			}
			g.AutoPort = b
		case "keymap":
			g.Keymap = v
		case "display":
			g.DisplayV = v
		case "xauthority":
			g.XAuth = v
		default:
			warns = append(warns, fmt.Sprintf("unknown framebuffer parameter %s ignored", k))
		}
	}
	if g.Type == "vnc" && !g.AutoPort && g.Display != nil {
		port := 5900 + *g.Display
		g.Port = &port
	}
	if g.Type == "vnc" {
		// DISPLAY and XAUTHORITY belong to SDL.
		g.DisplayV, g.XAuth = "", ""
	} else {
		g.AutoPort = false
	}
	return g, true, warns
}

// normalizeUUID writes a UUID in the usual 8-4-4-4-12 form; xend stores
// it without dashes. Anything else is kept with a warning.
func normalizeUUID(u string, d *Domain) string {
	hex := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(u), "-", ""))
	if len(hex) != 32 || strings.Trim(hex, "0123456789abcdef") != "" {
		d.warnf("uuid %q is not a valid UUID: kept as written", u)
		return u
	}
	return hex[0:8] + "-" + hex[8:12] + "-" + hex[12:16] + "-" + hex[16:20] + "-" + hex[20:32]
}
