package config

import (
	"bytes"
	"errors"
	"fmt"
	"math/bits"
	"path"
	"strconv"
	"strings"
)

// sxp is one S-expression node: an atom or a list.
type sxp struct {
	atom   string
	isList bool
	list   []sxp
	line   int
	col    int
}

// head is the first atom of a list: the key of (key value ...).
func (s sxp) head() string {
	if !s.isList || len(s.list) == 0 || s.list[0].isList {
		return ""
	}
	return s.list[0].atom
}

// args are the elements after the head.
func (s sxp) args() []sxp {
	if !s.isList || len(s.list) == 0 {
		return nil
	}
	return s.list[1:]
}

// value is the single atom after the head, "" for (key).
func (s sxp) value() string {
	a := s.args()
	if len(a) == 0 || a[0].isList {
		return ""
	}
	return a[0].atom
}

// text renders a node back as an S-expression.
func (s sxp) text() string {
	if !s.isList {
		if s.atom == "" || strings.ContainsAny(s.atom, " \t\n()'\"") {
			return "'" + strings.ReplaceAll(strings.ReplaceAll(s.atom, `\`, `\\`), "'", `\'`) + "'"
		}
		return s.atom
	}
	parts := make([]string, len(s.list))
	for i, e := range s.list {
		parts[i] = e.text()
	}
	return "(" + strings.Join(parts, " ") + ")"
}

// sxpReader reads S-expressions as xend writes them.
type sxpReader struct {
	cursor
}

// skipSpace skips blanks, backslash-newline continuations and # comments.
func (r *sxpReader) skipSpace() {
	for r.pos < len(r.src) {
		c := r.src[r.pos]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			r.step()
		case c == '\\' && r.pos+1 < len(r.src) && r.src[r.pos+1] == '\n':
			r.step()
			r.step()
		case c == '#' && (r.pos == 0 || r.src[r.pos-1] == '\n'):
			for r.pos < len(r.src) && r.src[r.pos] != '\n' {
				r.step()
			}
		default:
			return
		}
	}
}

// maxSXPDepth bounds nesting so hostile input cannot exhaust the stack.
const maxSXPDepth = 64

// parseSXPText reads the first S-expression of src. Lists still open at
// the end of the file are closed and text after the expression is
// ignored; both are reported in the returned warnings.
func parseSXPText(file string, src []byte) (sxp, []string, error) {
	r := &sxpReader{cursor{file: file, src: src, line: 1, col: 1}}
	r.skipSpace()
	if r.pos >= len(src) {
		return sxp{}, nil, r.errAt(0, 0, "empty S-expression file")
	}
	var warns []string
	if src[r.pos] != '(' {
		// 'xm create --dryrun' prints a line of text before its (vm ...).
		i := bytes.Index(src[r.pos:], []byte("\n("))
		if i < 0 {
			return sxp{}, nil, r.errAt(r.line, r.col, "expected ( at the start of an S-expression, found %q", src[r.pos])
		}
		for end := r.pos + i + 1; r.pos < end; {
			r.step()
		}
		warns = append(warns, fmt.Sprintf("%s: text before the S-expression ignored", r.where()))
	}
	type frame struct {
		node sxp
	}
	var stack []frame
	var root sxp
	done := false
	for !done {
		r.skipSpace()
		if r.pos >= len(src) {
			if len(stack) == 0 {
				break
			}
			warns = append(warns, fmt.Sprintf("%s: unbalanced parentheses: %d list(s) not closed at the end of the file; closed there", r.where(), len(stack)))
			for len(stack) > 0 {
				n := stack[len(stack)-1].node
				stack = stack[:len(stack)-1]
				if len(stack) == 0 {
					root = n
				} else {
					top := &stack[len(stack)-1].node
					top.list = append(top.list, n)
				}
			}
			break
		}
		c := src[r.pos]
		switch c {
		case '(':
			if len(stack) >= maxSXPDepth {
				return sxp{}, nil, r.errAt(r.line, r.col, "S-expression nested deeper than %d levels", maxSXPDepth)
			}
			stack = append(stack, frame{sxp{isList: true, list: []sxp{}, line: r.line, col: r.col}})
			r.step()
		case ')':
			r.step()
			n := stack[len(stack)-1].node
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				root = n
				done = true
			} else {
				top := &stack[len(stack)-1].node
				top.list = append(top.list, n)
			}
		default:
			a, err := r.atom()
			if err != nil {
				return sxp{}, nil, err
			}
			top := &stack[len(stack)-1].node
			top.list = append(top.list, a)
		}
	}
	r.skipSpace()
	if r.pos < len(src) {
		extra := strings.TrimSpace(string(src[r.pos:]))
		if strings.Trim(extra, ")") == "" {
			warns = append(warns, fmt.Sprintf("%s: unbalanced parentheses: %d extra ) after the end of the expression ignored", r.where(), len(extra)))
		} else {
			warns = append(warns, fmt.Sprintf("%s: text after the end of the expression ignored", r.where()))
		}
	}
	return root, warns, nil
}

func (r *sxpReader) where() string { return filePos(r.file, r.line) }

// atom reads a bare or quoted atom.
func (r *sxpReader) atom() (sxp, error) {
	line, col := r.line, r.col
	q := r.src[r.pos]
	var b strings.Builder
	if q == '\'' || q == '"' {
		r.step()
		for {
			if r.pos >= len(r.src) {
				return sxp{}, r.errAt(line, col, "quoted string starting here is not closed")
			}
			c := r.src[r.pos]
			if c == q {
				r.step()
				break
			}
			if c == '\\' && r.pos+1 < len(r.src) {
				r.step()
				e := r.src[r.pos]
				switch e {
				case '\n':
					// Line continuation.
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				default:
					b.WriteByte(e)
				}
				r.step()
				continue
			}
			b.WriteByte(c)
			r.step()
		}
		return sxp{atom: b.String(), line: line, col: col}, nil
	}
	for r.pos < len(r.src) {
		c := r.src[r.pos]
		if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '(' || c == ')' || c == '\'' || c == '"' {
			break
		}
		if c == '\\' && r.pos+1 < len(r.src) && r.src[r.pos+1] == '\n' {
			r.step()
			r.step()
			continue
		}
		b.WriteByte(c)
		r.step()
	}
	return sxp{atom: b.String(), line: line, col: col}, nil
}

// sxpRuntime are keys xend adds to a running domain's record; they say
// nothing about the guest's configuration and are skipped silently.
var sxpRuntime = map[string]bool{
	"domid": true, "state": true, "cpu_time": true, "online_vcpus": true, "up_time": true,
	"start_time": true, "store_mfn": true, "console_mfn": true, "shutdown_reason": true,
	"status": true, "memory_dynamic_min": true, "memory_dynamic_max": true,
	"shutdown": true, "dying": true, "crashed": true, "paused": true, "blocked": true,
	"running": true, "ssidref": true, "maxmem_kb": true, "cpu": true, "vcpu_avail_runtime": true,
}

// sxpDomain maps a parsed (domain ...) or (vm ...) onto a Domain.
type sxpDomain struct {
	file      string
	d         *Domain
	errs      []error
	diskLines []int // line of each of d.Disks
}

func parseSXP(data []byte, file string) (*Domain, error) {
	root, warns, err := parseSXPText(file, data)
	if err != nil {
		return nil, err
	}
	switch root.head() {
	case "domain", "vm":
	default:
		return nil, &SyntaxError{File: file, Line: root.line, Col: root.col, Msg: fmt.Sprintf("expected (domain ...) or (vm ...), found (%s ...)", root.head())}
	}
	d := &Domain{Warnings: warns}
	m := &sxpDomain{file: file, d: d}
	m.read(root)
	if err := checkDiskTargets(file, d.Disks, m.diskLines); err != nil {
		m.errs = append(m.errs, err)
	}
	if len(m.errs) > 0 {
		return nil, errors.Join(m.errs...)
	}
	return d, nil
}

func (m *sxpDomain) pos(n sxp) string { return filePos(m.file, n.line) }

func (m *sxpDomain) errAt(n sxp, format string, args ...any) {
	m.errs = append(m.errs, &SyntaxError{File: m.file, Line: n.line, Col: n.col, Msg: fmt.Sprintf(format, args...)})
}

func (m *sxpDomain) int(n sxp) int64 {
	v := strings.TrimSpace(n.value())
	i, err := strconv.ParseInt(v, 0, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(v, 64)
		if ferr != nil || f != float64(int64(f)) {
			m.errAt(n, "%s: expected a number, found %q", n.head(), v)
			return 0
		}
		return int64(f)
	}
	return i
}

// intIn reads a number between 0 and limit.
func (m *sxpDomain) intIn(n sxp, limit int64) int64 {
	v := m.int(n)
	if v < 0 || v > limit {
		m.errAt(n, "%s %d: out of range (0 to %d)", n.head(), v, limit)
		return 0
	}
	return v
}

func (m *sxpDomain) bool(n sxp) *bool {
	b, err := parseBoolString(n.value())
	if err != nil {
		m.errAt(n, "%s: %v", n.head(), err)
		return nil
	}
	return &b
}

func (m *sxpDomain) unknown(n sxp, where string) {
	vals := make([]string, 0, len(n.args()))
	for _, a := range n.args() {
		vals = append(vals, a.text())
	}
	m.d.Unknown = append(m.d.Unknown, Setting{Key: where + n.head(), Value: strings.Join(vals, " "), Line: n.line})
	m.d.warnf("%s: unknown setting %s%s = %s kept but not used", m.pos(n), where, n.head(), shownValue(n.head(), strings.Join(vals, " ")))
}

func (m *sxpDomain) read(root sxp) {
	d := m.d
	var vcpuAvail *int64
	var images []sxp
	var devices []sxp
	for _, n := range root.args() {
		if !n.isList {
			m.d.warnf("%s: stray atom %q in the domain ignored", m.pos(n), n.atom)
			continue
		}
		key := n.head()
		switch key {
		case "name":
			d.Name = n.value()
			d.Source.NameLine = n.line
		case "uuid":
			d.UUID = normalizeUUID(n.value(), d)
		case "memory":
			d.MemoryMiB = m.intIn(n, maxMemoryMiB)
		case "maxmem":
			d.MaxMemoryMiB = m.intIn(n, maxMemoryMiB)
		case "vcpus":
			d.VCPUs = int(m.intIn(n, maxVCPUs))
		case "vcpu_avail":
			v := m.int(n)
			vcpuAvail = &v
		case "cpus":
			d.CPUs = sxpFlat(n.args())
		case "bootloader":
			d.Bootloader = n.value()
		case "bootloader_args":
			d.BootloaderArgs = n.value()
		case "on_poweroff":
			d.OnPoweroff = n.value()
		case "on_reboot":
			d.OnReboot = n.value()
		case "on_crash":
			d.OnCrash = n.value()
		case "localtime":
			if b := m.bool(n); b != nil {
				d.Localtime = *b
			}
		case "image":
			images = append(images, n)
		case "device":
			devices = append(devices, n)
		case "features":
			if len(n.args()) > 0 && n.value() != "" {
				m.unknown(n, "")
			}
		default:
			if !sxpRuntime[key] {
				m.unknown(n, "")
			}
		}
	}
	// A domain's vcpus is the maximum; vcpu_avail is the bitmap of those
	// online at boot.
	if vcpuAvail != nil && d.VCPUs > 0 {
		online := bits.OnesCount64(uint64(*vcpuAvail))
		if online > 0 && online < d.VCPUs {
			d.MaxVCPUs = d.VCPUs
			d.VCPUs = online
		}
	}
	d.Type = PV
	var cdrom string
	for _, img := range images {
		for _, kind := range img.args() {
			switch kind.head() {
			case "hvm":
				d.Type = HVM
				cdrom = m.readImage(kind, true)
			case "linux":
				m.readImage(kind, false)
			default:
				m.unknown(kind, "image/")
			}
		}
	}
	haveVFB := false
	for _, dev := range devices {
		for _, n := range dev.args() {
			switch n.head() {
			case "vbd", "tap", "tap2":
				m.readDisk(n)
			case "vif":
				m.readVif(n)
			case "vfb":
				if !haveVFB {
					// A vfb device describes the display: drop the
					// image-level vnc/sdl settings read above.
					d.Graphics = nil
					haveVFB = true
				}
				m.readVfb(n)
			case "pci":
				m.readPCI(n)
			case "console", "vkbd", "vusb":
				// The PV console and keyboard come with every guest.
			default:
				m.unknown(n, "device/")
			}
		}
	}
	if cdrom != "" {
		have := false
		for _, disk := range d.Disks {
			if disk.Target == "hdc" {
				have = true
			}
		}
		if !have {
			d.Disks = append(d.Disks, Disk{Backend: "file", Format: "raw", Source: cdrom, Target: "hdc", Device: "cdrom", Mode: "r", Bus: "ide"})
		}
	}
}

// sxpFlat renders arguments as a flat comma list: (cpus (0 1) (2)) -> "0 1,2".
func sxpFlat(args []sxp) string {
	parts := make([]string, 0, len(args))
	for _, a := range args {
		if a.isList {
			sub := make([]string, 0, len(a.list))
			for _, e := range a.list {
				sub = append(sub, strings.Trim(e.text(), "()"))
			}
			parts = append(parts, strings.Join(sub, " "))
		} else {
			parts = append(parts, a.atom)
		}
	}
	return strings.Join(parts, ",")
}

// readImage reads (linux ...) or (hvm ...). It returns the legacy HVM
// cdrom path.
func (m *sxpDomain) readImage(img sxp, hvm bool) (cdrom string) {
	d := m.d
	var kernel, loader string
	graphics := map[string]string{}
	var vnc, sdl bool
	for _, n := range img.args() {
		if !n.isList {
			continue
		}
		switch n.head() {
		case "kernel":
			kernel = n.value()
		case "loader":
			loader = n.value()
		case "ramdisk":
			d.Ramdisk = n.value()
		case "args":
			d.Extra = n.value()
		case "root":
			d.Root = n.value()
		case "vcpus":
			// Repeats the domain's vcpus.
		case "device_model":
			d.DeviceModel = n.value()
		case "boot":
			d.Boot = n.value()
		case "acpi":
			d.ACPI = m.bool(n)
		case "apic":
			d.APIC = m.bool(n)
		case "pae":
			d.PAE = m.bool(n)
		case "hap":
			d.HAP = m.bool(n)
		case "viridian":
			d.Viridian = m.bool(n)
		case "hpet":
			d.HPET = m.bool(n)
		case "localtime":
			if b := m.bool(n); b != nil {
				d.Localtime = *b
			}
		case "rtc_timeoffset":
			d.RTCTimeOffset = m.int(n)
		case "usb":
			if b := m.bool(n); b != nil {
				d.USB = *b
			}
		case "usbdevice":
			for _, a := range n.args() {
				if !a.isList && a.atom != "" {
					d.USBDevices = append(d.USBDevices, a.atom)
				}
			}
		case "soundhw":
			d.SoundHW = n.value()
		case "stdvga":
			if b := m.bool(n); b != nil {
				d.StdVGA = *b
			}
		case "serial", "parallel":
			var specs []string
			for _, a := range n.args() {
				if a.isList {
					for _, e := range a.list {
						specs = append(specs, e.atom)
					}
				} else {
					specs = append(specs, a.atom)
				}
			}
			for _, s := range specs {
				if c, ok := parseChar(s); ok {
					if n.head() == "serial" {
						d.Serial = append(d.Serial, c)
					} else {
						d.Parallel = append(d.Parallel, c)
					}
				}
			}
		case "cdrom":
			cdrom = n.value()
		case "vnc":
			if b := m.bool(n); b != nil {
				vnc = *b
			}
		case "sdl":
			if b := m.bool(n); b != nil {
				sdl = *b
			}
		case "vnclisten", "vncpasswd", "vncdisplay", "vncunused", "keymap", "display", "xauthority":
			graphics[n.head()] = n.value()
		case "notes", "vncconsole", "nographic", "monitor", "timer_mode", "tsc_mode":
			if n.head() != "notes" {
				m.unknown(n, "image/")
			}
		default:
			m.unknown(n, "image/")
		}
	}
	switch {
	case hvm && loader != "":
		d.Loader = loader
		d.Kernel = kernel
	case hvm && (kernel == "" || path.Base(kernel) == "hvmloader"):
		d.Loader = kernel
	default:
		d.Kernel = kernel
	}
	if !hvm {
		d.Loader = ""
	}
	if vnc {
		graphics["type"] = "vnc"
		g, _, warns := graphicsFrom(graphics)
		for _, w := range warns {
			d.warnf("%s: %s", m.pos(img), w)
		}
		d.Graphics = append(d.Graphics, g)
	}
	if sdl {
		graphics["type"] = "sdl"
		g, _, _ := graphicsFrom(graphics)
		d.Graphics = append(d.Graphics, g)
	}
	return cdrom
}

// fields collects (key value) pairs of a device.
func (m *sxpDomain) fields(dev sxp, known map[string]bool) map[string]string {
	kv := map[string]string{}
	for _, n := range dev.args() {
		if !n.isList {
			continue
		}
		k := n.head()
		if !known[k] {
			m.unknown(n, "device/"+dev.head()+"/")
			continue
		}
		kv[k] = n.value()
	}
	return kv
}

var sxpDiskKeys = map[string]bool{"dev": true, "uname": true, "mode": true, "backend": true, "uuid": true, "bootable": true, "driver": true, "protocol": true, "VDI": true}

func (m *sxpDomain) readDisk(n sxp) {
	kv := m.fields(n, sxpDiskKeys)
	disk, warns, err := finishDisk(Disk{}, kv["uname"], kv["dev"], kv["mode"], "", FormatSXP, nil)
	for _, w := range warns {
		m.d.warnf("%s: disk %s: %s", m.pos(n), kv["dev"], w)
	}
	if err != nil {
		m.errAt(n, "disk %s: %v", n.text(), err)
		return
	}
	m.d.Disks = append(m.d.Disks, disk)
	m.diskLines = append(m.diskLines, n.line)
}

var sxpVifKeys = map[string]bool{"mac": true, "bridge": true, "script": true, "type": true, "model": true, "ip": true,
	"vifname": true, "rate": true, "backend": true, "uuid": true, "dev": true, "devid": true, "accel": true, "mtu": true}

func (m *sxpDomain) readVif(n sxp) {
	kv := m.fields(n, sxpVifKeys)
	m.d.NICs = append(m.d.NICs, NIC{
		MAC:     strings.ToLower(kv["mac"]),
		Bridge:  kv["bridge"],
		Script:  kv["script"],
		Model:   kv["model"],
		Type:    kv["type"],
		VifName: kv["vifname"],
		IP:      kv["ip"],
		Rate:    kv["rate"],
	})
}

var sxpVfbKeys = map[string]bool{"type": true, "vnclisten": true, "vncpasswd": true, "vncdisplay": true, "vncunused": true,
	"keymap": true, "display": true, "xauthority": true, "uuid": true, "location": true, "backend": true, "vnc": true, "sdl": true}

func (m *sxpDomain) readVfb(n sxp) {
	kv := m.fields(n, sxpVfbKeys)
	delete(kv, "uuid")
	delete(kv, "backend")
	// location is where xend's VNC server listened at that moment:
	// runtime state, not configuration.
	delete(kv, "location")
	if kv["type"] == "" {
		if b, _ := parseBoolString(kv["sdl"]); b {
			kv["type"] = "sdl"
		} else {
			// xend's older vfb records leave out the type for VNC.
			kv["type"] = "vnc"
		}
	}
	delete(kv, "vnc")
	delete(kv, "sdl")
	g, ok, warns := graphicsFrom(kv)
	for _, w := range warns {
		m.d.warnf("%s: vfb: %s", m.pos(n), w)
	}
	if !ok {
		return
	}
	m.d.Graphics = append(m.d.Graphics, g)
}

// readPCI reads (pci (dev (domain 0x0)(bus 0x1)(slot 0x2)(func 0x0)) ...).
func (m *sxpDomain) readPCI(n sxp) {
	for _, dev := range n.args() {
		if dev.head() != "dev" {
			if dev.head() != "backend" && dev.head() != "uuid" {
				m.unknown(dev, "device/pci/")
			}
			continue
		}
		parts := map[string]int64{}
		for _, f := range dev.args() {
			switch f.head() {
			case "domain", "bus", "slot", "func":
				parts[f.head()] = m.int(f)
			}
		}
		m.d.PCI = append(m.d.PCI, fmt.Sprintf("%04x:%02x:%02x.%x", parts["domain"], parts["bus"], parts["slot"], parts["func"]))
	}
}
