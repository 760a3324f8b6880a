package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen is the longest guest name CheckName accepts. Xen keeps a
// domain's name in xenstore and libvirt in a file name; 64 bytes leaves
// room for what xen2kvm appends (".report.json", "-vda.qcow2", the
// staging folder's prefix and suffix) under any file system's 255.
const MaxNameLen = 64

// ErrBadName is the sentinel of every name CheckName refuses.
var ErrBadName = errors.New("unusable guest name")

// NameError is a guest name that cannot name files: xen2kvm builds its
// output names from it (NAME.xml, NAME-vda.qcow2, OUTPUT/NAME/ in a
// batch), so a name that could leave the output folder, hide a file or
// read as an option is refused. File and Line say where the name came
// from when it is known.
type NameError struct {
	Name   string
	File   string // config file, or ""
	Line   int    // 1-based line of the name in File, or 0
	Reason string
}

func (e *NameError) Error() string {
	where := ""
	switch {
	case e.File != "" && e.Line > 0:
		where = filePos(e.File, e.Line) + ": "
	case e.File != "":
		where = fileName(e.File) + ": "
	}
	return fmt.Sprintf("%sguest name %s: %s", where, strconv.QuoteToASCII(e.Name), e.Reason)
}

func (e *NameError) Unwrap() error { return ErrBadName }

// Hint tells what names are accepted.
func (e *NameError) Hint() string {
	return "a guest name may hold letters A-Z and a-z, digits and _ . - + (up to 64, not starting with . or -); rename the guest in its config"
}

// CheckName tells whether name can be used as a guest name, and so as
// the stem of file names inside an output folder. The accepted set is
// deliberately narrower than what xm lets through and about what xl and
// libvirt accept in practice: ASCII letters and digits and "_", ".",
// "-", "+"; 1 to MaxNameLen bytes; not starting with "." (hidden, "."
// and "..") or "-" (an option to every tool the files are handed to).
// Everything else — "/", NUL, newlines and other control characters,
// spaces, quotes, shell characters, bytes that are not UTF-8 and
// non-ASCII letters — is refused. The error is a *NameError.
func CheckName(name string) error {
	bad := func(reason string) error { return &NameError{Name: name, Reason: reason} }
	switch {
	case name == "":
		return bad("the config gives the guest no name")
	case len(name) > MaxNameLen:
		return bad(fmt.Sprintf("%d bytes long, more than %d", len(name), MaxNameLen))
	case name == "." || name == "..":
		return bad("names a folder, not a guest")
	case name[0] == '.':
		return bad("starts with '.' (a hidden file name)")
	case name[0] == '-':
		return bad("starts with '-' (reads as an option)")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '.', c == '-', c == '+':
		case c == '/':
			return bad("holds '/' (a path, not a name)")
		case c < 0x20 || c == 0x7f:
			return bad(fmt.Sprintf("holds the control character %q at byte %d", c, i))
		case c >= 0x80:
			return bad(fmt.Sprintf("holds a byte that is not ASCII (0x%02x at byte %d)", c, i))
		default:
			return bad(fmt.Sprintf("holds %q at byte %d", c, i))
		}
	}
	return nil
}

// CheckName checks the domain's name with CheckName; the error names
// the config file and the name's line when the parser knew it.
func (d *Domain) CheckName() error {
	err := CheckName(d.Name)
	var ne *NameError
	if errors.As(err, &ne) {
		ne.File, ne.Line = d.Source.File, d.Source.NameLine
	}
	return err
}

// diskKey identifies a Xen virtual disk by its number, as Xen does: hdX,
// sdX and xvdX with the same letters are the same disk (an HVM guest's
// PV drivers see the emulated hda as xvda); sda1 and xvda1 are one
// partition device. Targets of another shape are their own key.
func diskKey(target string) string {
	t := strings.ToLower(target)
	for _, p := range []string{"xvd", "hd", "sd", "vd"} {
		if rest, ok := strings.CutPrefix(t, p); ok && rest != "" && rest[0] >= 'a' && rest[0] <= 'z' {
			letters := strings.TrimRight(rest, "0123456789")
			if strings.Trim(letters, "abcdefghijklmnopqrstuvwxyz") == "" {
				return "disk:" + rest
			}
		}
	}
	return "target:" + t
}

// checkDiskTargets refuses two disks with the same Xen target (or two
// that Xen numbers alike, like hda and xvda): both would be written to
// one output image. lines holds each disk's line in file, or is nil.
func checkDiskTargets(file string, disks []Disk, lines []int) error {
	seen := map[string]int{}
	var errs []error
	for i, dk := range disks {
		if dk.Target == "" {
			continue
		}
		k := diskKey(dk.Target)
		j, dup := seen[k]
		if !dup {
			seen[k] = i
			continue
		}
		line, col, first := 0, 0, ""
		if i < len(lines) && lines[i] > 0 {
			line, col = lines[i], 1
		}
		if j < len(lines) && lines[j] > 0 {
			first = fmt.Sprintf(" (first at line %d)", lines[j])
		}
		what := "given twice" + first
		if disks[j].Target != dk.Target {
			what = fmt.Sprintf("the same Xen disk as %s%s: Xen numbers hdX, sdX and xvdX alike", disks[j].Target, first)
		}
		errs = append(errs, &SyntaxError{File: file, Line: line, Col: col, Msg: fmt.Sprintf("disk target %s is %s; each disk needs its own target", dk.Target, what)})
	}
	return errors.Join(errs...)
}
