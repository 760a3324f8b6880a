package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// ErrUnknownFormat is returned when the format of a config cannot be
// detected from its content (or an unsupported format is forced).
var ErrUnknownFormat = errors.New("unknown config format")

// SyntaxError reports a config that cannot be read, with the position of
// the problem. Line and Col are 1-based; Col counts bytes.
type SyntaxError struct {
	File string
	Line int
	Col  int
	Msg  string

	python bool // the config is real Python code, not literals
}

// Hint tells what to do about the error, or "".
func (e *SyntaxError) Hint() string {
	if e.python {
		return "this xm config computes its settings in Python; on the Xen host, " +
			"'xm create --dryrun CONFIG' prints the result as an SXP (vm ...) that xen2kvm reads, " +
			"or write the computed values into the file"
	}
	return ""
}

func (e *SyntaxError) Error() string {
	file := fileName(e.File)
	if e.Line == 0 {
		return fmt.Sprintf("%s: %s", file, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", file, e.Line, e.Col, e.Msg)
}

// MaxConfigSize is the largest config Parse reads. Real domain configs
// are a few KiB; the limit keeps a wrong file (a disk image given as
// CONFIG) from being read into memory.
const MaxConfigSize = 1 << 20

// Option changes how Parse reads a config.
type Option func(*parseOptions)

type parseOptions struct {
	format Format
}

// WithFormat makes Parse read the config as format f instead of
// detecting the format from the content.
func WithFormat(f Format) Option {
	return func(o *parseOptions) { o.format = f }
}

// ParseFormat turns a format name as users type it ("xm", "xl", "sxp" or
// "sexpr", "libvirt" or "xml") into a Format.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "xm":
		return FormatXM, nil
	case "xl":
		return FormatXL, nil
	case "sxp", "sexpr":
		return FormatSXP, nil
	case "libvirt", "xml":
		return FormatLibvirt, nil
	}
	return "", fmt.Errorf("%w %q (want xm, xl, sxp or libvirt)", ErrUnknownFormat, s)
}

// ParseFile reads the Xen domain config at path.
func ParseFile(path string, opts ...Option) (*Domain, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading config %s: %w", path, err)
	}
	return Parse(data, path, opts...)
}

// Parse reads a Xen domain config. file names it in errors and in
// Domain.Source; the format is detected from the content unless
// WithFormat forces one. Defaults follow xm: one vcpu, maxmem = memory.
func Parse(data []byte, file string, opts ...Option) (*Domain, error) {
	var o parseOptions
	for _, opt := range opts {
		opt(&o)
	}
	if len(data) > MaxConfigSize {
		return nil, &SyntaxError{File: file, Msg: fmt.Sprintf("%d bytes: larger than any Xen domain config (limit %d)", len(data), MaxConfigSize)}
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a UTF-8 byte order mark
	f := o.format
	if f == "" {
		var err error
		if f, err = DetectFormat(data); err != nil {
			return nil, fmt.Errorf("%s: %w", fileName(file), err)
		}
	}
	var (
		d   *Domain
		err error
	)
	switch f {
	case FormatXM, FormatXL:
		d, err = parseXM(data, file, f)
	case FormatSXP:
		d, err = parseSXP(data, file)
	case FormatLibvirt:
		d, err = parseLibvirt(data, file)
	default:
		return nil, fmt.Errorf("%w %q", ErrUnknownFormat, f)
	}
	if err != nil {
		return nil, err
	}
	d.Source = Source{File: file, Format: f, NameLine: d.Source.NameLine}
	d.applyDefaults()
	return d, nil
}

// applyDefaults fills what xm assumes when a config leaves it out.
func (d *Domain) applyDefaults() {
	if d.Type == "" {
		d.Type = PV
	}
	if d.VCPUs <= 0 {
		d.VCPUs = 1
	}
	if d.MaxVCPUs < d.VCPUs {
		d.MaxVCPUs = d.VCPUs
	}
	if d.MemoryMiB <= 0 && d.MaxMemoryMiB > 0 {
		d.MemoryMiB = d.MaxMemoryMiB
	}
	if d.MemoryMiB <= 0 {
		// xm's default memory size.
		d.MemoryMiB = 128
		d.warnf("no memory size set: assuming xm's default of 128 MiB")
	}
	if d.MaxMemoryMiB < d.MemoryMiB {
		d.MaxMemoryMiB = d.MemoryMiB
	}
	if d.Disks == nil {
		d.Disks = []Disk{}
	}
	if d.NICs == nil {
		d.NICs = []NIC{}
	}
}

// Cmdline is the kernel command line the config gives a PV kernel (or an
// HVM direct kernel boot): root=ROOT followed by extra, as xm builds it.
func (d *Domain) Cmdline() string {
	switch {
	case d.Root == "":
		return d.Extra
	case d.Extra == "":
		return "root=" + d.Root
	}
	return "root=" + d.Root + " " + d.Extra
}

func (d *Domain) warnf(format string, args ...any) {
	d.Warnings = append(d.Warnings, fmt.Sprintf(format, args...))
}

// DetectFormat tells the syntax of a config from its content: XML is
// libvirt, a leading parenthesis is SXP, NAME = VALUE lines are xm or xl
// (xl when the config uses xl-only settings or disk syntax).
func DetectFormat(data []byte) (Format, error) {
	s := bytes.TrimLeft(data, " \t\r\n\ufeff")
	switch {
	case len(s) == 0:
		return "", fmt.Errorf("%w: the config is empty", ErrUnknownFormat)
	case s[0] == '<':
		return FormatLibvirt, nil
	case s[0] == '(':
		return FormatSXP, nil
	}
	// Skip comment lines to find the first statement.
	for _, line := range strings.Split(string(s), "\n") {
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		switch {
		case t[0] == '(':
			return FormatSXP, nil
		case t[0] == '<':
			return FormatLibvirt, nil
		case strings.HasPrefix(t, "Using config file"):
			// What 'xm create --dryrun' prints before its (vm ...).
			return FormatSXP, nil
		case isNameStart(t[0]):
			if looksXL(data) {
				return FormatXL, nil
			}
			return FormatXM, nil
		}
		break
	}
	return "", fmt.Errorf("%w: neither NAME = VALUE lines, an S-expression nor XML", ErrUnknownFormat)
}

// xlOnlyKeys are settings xl reads and xm never had.
var xlOnlyKeys = map[string]bool{
	"type": true, "cmdline": true, "usbctrl": true, "usbdev": true, "channel": true,
	"vnuma": true, "nestedhvm": true, "spice": true, "bios": true, "device_model_version": true,
	"device_model_override": true, "max_grant_frames": true, "max_maptrack_frames": true,
	"vtpm": true, "p9": true, "vdispl": true, "vsnd": true, "vkb": true, "pvcalls": true,
	"gic_version": true, "tee": true, "dm_restrict": true, "bootloader_args": true,
	"rdm": true, "mca_caps": true, "altp2m": true, "passthrough": true,
}

// looksXL tells xl from xm by content. Both are NAME = VALUE files; xl
// has settings and disk syntax xm lacks.
func looksXL(data []byte) bool {
	as, err := parseAssignments("", data, true, nil)
	if err != nil {
		// += only exists in xl.
		return bytes.Contains(data, []byte("+="))
	}
	for _, a := range as {
		if a.append || xlOnlyKeys[a.key] || strings.HasPrefix(a.key, "spice") {
			return true
		}
		if a.key == "disk" {
			for _, v := range listOf(a.val) {
				if v.kind == kindString && diskSpecIsXL(v.str) {
					return true
				}
			}
		}
	}
	return false
}

// diskSpecIsXL tells whether a disk spec uses xl syntax: key=value
// parameters or a format in the positional form.
func diskSpecIsXL(spec string) bool {
	fields := strings.Split(spec, ",")
	for _, f := range fields {
		if k, _, ok := strings.Cut(f, "="); ok && isXLDiskKey(k) {
			return true
		}
	}
	return len(fields) >= 4 || len(fields) >= 2 && isDiskFormat(strings.TrimSpace(fields[1]))
}

// listOf returns the elements of a list value, or the value itself.
func listOf(v value) []value {
	if v.kind == kindList {
		return v.list
	}
	return []value{v}
}
