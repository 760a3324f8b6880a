// Package grub reads and edits GRUB legacy configuration files
// (grub.conf, menu.lst) as RHEL 4, 5 and 6 install them. Edits are made
// line by line, so everything not edited (comments, spacing, unknown
// commands) is written back byte for byte.
//
//	c, err := grub.Parse(data)
//	if err != nil { ... }
//	e, err := c.DefaultEntry()
//	if err != nil { ... }
//	fmt.Println(e.Title, e.Kernel, e.Args, e.Initrd)
//	c.SetDefault(1)
//	out := c.Bytes()
package grub

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoEntries is returned by DefaultEntry when the config has no title.
var ErrNoEntries = errors.New("no boot entries")

// SyntaxError is a line Parse cannot make sense of.
type SyntaxError struct {
	Line int // 1-based
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("line %d: %s", e.Line, e.Msg) }

// Config is a parsed grub.conf. Line numbers are 1-based; 0 means absent.
type Config struct {
	// Default is the entry booted by default: the number after default=,
	// 0 when absent or "saved".
	Default     int
	DefaultRaw  string // as written: "0", "saved", "" when absent
	DefaultLine int
	// Timeout is in seconds; -1 when absent (GRUB waits for a key).
	Timeout     int
	TimeoutLine int
	// Fallback is the entry tried when the default fails; -1 when absent.
	Fallback     int
	FallbackLine int
	Hidden       bool // hiddenmenu
	Entries      []Entry

	lines []string // without line terminators
	crlf  bool
	final bool // the data ended with a newline
}

// Entry is one title block.
type Entry struct {
	Title string
	Line  int // the title line
	End   int // the last line of the block (comments and blanks excluded)

	Root     string // "(hd0,0)", as written
	RootLine int

	// Kernel is the path on the kernel line, as written (it may start
	// with a device: "(hd0,0)/vmlinuz-2.6.18-164.el5"); Args the rest of
	// the line. For a Xen entry Kernel is xen.gz and the Linux kernel is
	// Modules[0].
	Kernel     string
	Args       string
	KernelLine int

	Initrd     string
	InitrdLine int

	// Modules are the module (or modulenounzip) lines of a multiboot
	// entry, in order.
	Modules []Module
}

// Module is one multiboot module line.
type Module struct {
	Path string
	Args string
	Line int
}

// Xen tells whether the entry boots the Xen hypervisor (its kernel is
// xen.gz, xen.gz-VERSION or xen-VERSION.gz).
func (e *Entry) Xen() bool {
	_, p := SplitDevice(e.Kernel)
	base := p[strings.LastIndexByte(p, '/')+1:]
	return base == "xen" || strings.HasPrefix(base, "xen.gz") ||
		(strings.HasPrefix(base, "xen-") && strings.HasSuffix(base, ".gz"))
}

// LinuxKernel returns the Linux kernel the entry boots, with its arguments
// and initrd: for a Xen entry the first and second module, otherwise the
// kernel and initrd lines.
func (e *Entry) LinuxKernel() (kernel, args, initrd string) {
	if !e.Xen() {
		return e.Kernel, e.Args, e.Initrd
	}
	if len(e.Modules) > 0 {
		kernel, args = e.Modules[0].Path, e.Modules[0].Args
	}
	if len(e.Modules) > 1 {
		initrd = e.Modules[1].Path
	}
	return kernel, args, initrd
}

// SplitDevice splits a GRUB path such as "(hd0,0)/vmlinuz" into the
// device "(hd0,0)" and the path "/vmlinuz". A path without a device
// returns "" and the path.
func SplitDevice(p string) (device, path string) {
	if strings.HasPrefix(p, "(") {
		if i := strings.IndexByte(p, ')'); i >= 0 {
			return p[:i+1], p[i+1:]
		}
	}
	return "", p
}

// Parse parses a grub.conf or menu.lst. It is lenient as GRUB is: unknown
// commands are kept and ignored; only numbers that do not parse, entry
// commands without a path and binary data are errors.
func Parse(data []byte) (*Config, error) {
	if bytes.IndexByte(data, 0) >= 0 {
		return nil, &SyntaxError{Line: 1 + bytes.Count(data[:bytes.IndexByte(data, 0)], []byte("\n")), Msg: "NUL byte: not a text file"}
	}
	c := &Config{Timeout: -1, Fallback: -1}
	s := string(data)
	c.final = strings.HasSuffix(s, "\n")
	s = strings.TrimSuffix(s, "\n")
	if s != "" || c.final {
		c.lines = strings.Split(s, "\n")
	}
	c.crlf = len(c.lines) > 0 && strings.HasSuffix(c.lines[0], "\r")
	if err := c.parse(); err != nil {
		return nil, err
	}
	return c, nil
}

// command splits a config line into its command and argument: the command
// ends at the first blank or '='. Comments and blank lines give "".
func command(line string) (cmd, arg string) {
	line = strings.TrimRight(line, " \t\r")
	line = strings.TrimLeft(line, " \t")
	if line == "" || line[0] == '#' {
		return "", ""
	}
	i := strings.IndexAny(line, " \t=")
	if i < 0 {
		return line, ""
	}
	cmd, arg = line[:i], line[i:]
	arg = strings.TrimLeft(arg, " \t")
	if cmd != "title" {
		// "default = 0" and "default=0" both name the value 0.
		arg = strings.TrimPrefix(arg, "=")
		arg = strings.TrimLeft(arg, " \t")
	} else {
		arg = strings.TrimPrefix(arg, "=")
	}
	return cmd, arg
}

// splitPath splits "--type=netbsd /path args" into "/path" and "args",
// skipping option flags before the path.
func splitPath(arg string) (path, rest string) {
	for {
		arg = strings.TrimLeft(arg, " \t")
		i := strings.IndexAny(arg, " \t")
		word := arg
		if i >= 0 {
			word = arg[:i]
		}
		if strings.HasPrefix(word, "--") {
			if i < 0 {
				return "", ""
			}
			arg = arg[i:]
			continue
		}
		if i < 0 {
			return word, ""
		}
		return word, strings.TrimLeft(arg[i:], " \t")
	}
}

func (c *Config) parse() error {
	c.Entries = nil
	c.Default, c.DefaultRaw, c.DefaultLine = 0, "", 0
	c.Timeout, c.TimeoutLine = -1, 0
	c.Fallback, c.FallbackLine = -1, 0
	c.Hidden = false
	var cur *Entry
	var errs []error
	number := func(n int, what, arg string) (int, bool) {
		f := strings.Fields(arg)
		if len(f) == 0 {
			errs = append(errs, &SyntaxError{Line: n, Msg: what + " without a value"})
			return 0, false
		}
		v, err := strconv.Atoi(f[0])
		if err != nil || v < 0 {
			errs = append(errs, &SyntaxError{Line: n, Msg: fmt.Sprintf("%s %q is not a number", what, f[0])})
			return 0, false
		}
		return v, true
	}
	for i, line := range c.lines {
		n := i + 1
		cmd, arg := command(line)
		if cmd == "" {
			continue
		}
		if cmd == "title" {
			c.Entries = append(c.Entries, Entry{Title: strings.TrimSpace(arg), Line: n, End: n})
			cur = &c.Entries[len(c.Entries)-1]
			continue
		}
		if cur == nil {
			switch cmd {
			case "default":
				c.DefaultRaw, c.DefaultLine = strings.TrimSpace(arg), n
				if c.DefaultRaw == "saved" {
					c.Default = 0
				} else if v, ok := number(n, "default", arg); ok {
					c.Default = v
				}
			case "timeout":
				if v, ok := number(n, "timeout", arg); ok {
					c.Timeout, c.TimeoutLine = v, n
				}
			case "fallback":
				if v, ok := number(n, "fallback", arg); ok {
					c.Fallback, c.FallbackLine = v, n
				}
			case "hiddenmenu":
				c.Hidden = true
			}
			continue
		}
		cur.End = n
		switch cmd {
		case "root", "rootnoverify":
			cur.Root, cur.RootLine = strings.TrimSpace(arg), n
		case "kernel":
			p, rest := splitPath(arg)
			if p == "" {
				errs = append(errs, &SyntaxError{Line: n, Msg: "kernel without a path"})
				continue
			}
			cur.Kernel, cur.Args, cur.KernelLine = p, rest, n
		case "initrd":
			p, _ := splitPath(arg)
			if p == "" {
				errs = append(errs, &SyntaxError{Line: n, Msg: "initrd without a path"})
				continue
			}
			cur.Initrd, cur.InitrdLine = p, n
		case "module", "modulenounzip":
			p, rest := splitPath(arg)
			if p == "" {
				errs = append(errs, &SyntaxError{Line: n, Msg: cmd + " without a path"})
				continue
			}
			cur.Modules = append(cur.Modules, Module{Path: p, Args: rest, Line: n})
		}
	}
	return errors.Join(errs...)
}

// DefaultEntry returns the entry GRUB boots by default. A default past the
// last entry falls back to the first one, as GRUB does.
func (c *Config) DefaultEntry() (*Entry, error) {
	if len(c.Entries) == 0 {
		return nil, ErrNoEntries
	}
	if c.Default < 0 || c.Default >= len(c.Entries) {
		return &c.Entries[0], nil
	}
	return &c.Entries[c.Default], nil
}

// Bytes returns the config with its edits, in the original line endings.
func (c *Config) Bytes() []byte {
	var b bytes.Buffer
	for i, l := range c.lines {
		b.WriteString(l)
		if i < len(c.lines)-1 || c.final {
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

// Line returns line n (1-based) without its terminator, "" when out of
// range.
func (c *Config) Line(n int) string {
	if n < 1 || n > len(c.lines) {
		return ""
	}
	return strings.TrimSuffix(c.lines[n-1], "\r")
}

// NumLines returns the number of lines.
func (c *Config) NumLines() int { return len(c.lines) }

// SetLine replaces line n (1-based) and parses the config again.
func (c *Config) SetLine(n int, text string) error {
	if n < 1 || n > len(c.lines) {
		return fmt.Errorf("line %d: out of range (1-%d)", n, len(c.lines))
	}
	if c.crlf {
		text += "\r"
	}
	c.lines[n-1] = text
	return c.parse()
}

// SetDefault makes entry i the default, rewriting the default line in
// place or adding "default=i" before the first entry.
func (c *Config) SetDefault(i int) error {
	if i < 0 || i >= len(c.Entries) {
		return fmt.Errorf("default %d: no such entry (have %d)", i, len(c.Entries))
	}
	if c.DefaultLine > 0 {
		old := c.lines[c.DefaultLine-1]
		j := strings.Index(old, "default") + len("default")
		k := j
		for k < len(old) && (old[k] == ' ' || old[k] == '\t' || old[k] == '=') {
			k++
		}
		end := k
		for end < len(old) && old[end] != ' ' && old[end] != '\t' && old[end] != '\r' {
			end++
		}
		return c.SetLine(c.DefaultLine, strings.TrimSuffix(old[:k]+strconv.Itoa(i)+old[end:], "\r"))
	}
	at := len(c.lines)
	if len(c.Entries) > 0 {
		at = c.Entries[0].Line - 1
	}
	line := "default=" + strconv.Itoa(i)
	if c.crlf {
		line += "\r"
	}
	c.lines = append(c.lines[:at], append([]string{line}, c.lines[at:]...)...)
	return c.parse()
}

// SetKernelArgs replaces the arguments of the kernel line of entry i (for
// a Xen entry: of its first module), keeping the command and path as
// written.
func (c *Config) SetKernelArgs(i int, args string) error {
	if i < 0 || i >= len(c.Entries) {
		return fmt.Errorf("entry %d: no such entry (have %d)", i, len(c.Entries))
	}
	e := &c.Entries[i]
	n, p := e.KernelLine, e.Kernel
	if e.Xen() {
		if len(e.Modules) == 0 {
			return fmt.Errorf("entry %d (%s): xen entry without a kernel module", i, e.Title)
		}
		n, p = e.Modules[0].Line, e.Modules[0].Path
	}
	if n == 0 {
		return fmt.Errorf("entry %d (%s): no kernel line", i, e.Title)
	}
	old := c.Line(n)
	j := pathEnd(old)
	if j < 0 || !strings.HasSuffix(old[:j], p) {
		return fmt.Errorf("line %d: cannot find kernel path %q", n, p)
	}
	line := old[:j]
	if args != "" {
		line += " " + args
	}
	return c.SetLine(n, line)
}

// pathEnd returns the offset just after the path word of a kernel or
// module line (after the command and any --options), -1 if it has none.
func pathEnd(line string) int {
	i := 0
	skipBlank := func() {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
	}
	word := func() int {
		start := i
		for i < len(line) && line[i] != ' ' && line[i] != '\t' && line[i] != '\r' {
			i++
		}
		return start
	}
	skipBlank()
	for i < len(line) && !strings.ContainsRune(" \t=", rune(line[i])) {
		i++
	}
	skipBlank()
	if i < len(line) && line[i] == '=' {
		i++
	}
	for {
		skipBlank()
		if i >= len(line) || line[i] == '\r' {
			return -1
		}
		start := word()
		if !strings.HasPrefix(line[start:i], "--") {
			return i
		}
	}
}

// Append adds lines at the end of the config (a new entry, for one) and
// parses it again.
func (c *Config) Append(lines ...string) error {
	for _, l := range lines {
		if c.crlf {
			l += "\r"
		}
		c.lines = append(c.lines, l)
	}
	c.final = true
	return c.parse()
}
