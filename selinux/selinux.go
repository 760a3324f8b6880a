// Package selinux reads a guest's SELinux file-context configuration and
// answers what label a path gets, the way libselinux's matchpathcon does,
// so files xen2kvm creates can be labelled without booting the guest and
// relabelling it.
//
//	fc, err := selinux.Load(root, "targeted")
//	if err != nil {
//		return err // fall back to /.autorelabel
//	}
//	label, ok := fc.Lookup("/etc/modprobe.d/xen2kvm.conf", 0)
//
// Matching follows libselinux: each specification's regular expression is
// anchored at both ends; a specification with a file type (-- -d -l -c -b
// -s -p) only matches that type; specifications without regular expression
// characters are tried before all others, and among the rest the last one
// in file order that matches wins (file_contexts, then .homedirs, then
// .local). A context of <<none>> means the path is not labelled. Path
// aliases from file_contexts.subs and .subs_dist are applied first.
package selinux

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"strings"
)

// ErrNoPolicy means the guest's policy files are missing.
var ErrNoPolicy = errors.New("no SELinux file contexts")

// SyntaxError is a file_contexts line that cannot be used.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

// spec is one file_contexts line.
type spec struct {
	re      *regexp.Regexp
	raw     string
	ftype   fs.FileMode // fileTypeAny for no type field
	context string      // "" for <<none>>
	exact   bool        // no regular expression characters
}

const fileTypeAny fs.FileMode = 1<<32 - 1

// typeFields maps file_contexts type fields to fs.FileMode types.
var typeFields = map[string]fs.FileMode{
	"--": 0,
	"-d": fs.ModeDir,
	"-l": fs.ModeSymlink,
	"-c": fs.ModeDevice | fs.ModeCharDevice,
	"-b": fs.ModeDevice,
	"-s": fs.ModeSocket,
	"-p": fs.ModeNamedPipe,
}

// Contexts is a parsed set of file contexts.
type Contexts struct {
	specs []spec // regex specs in file order, then exact ones in file order
	subs  [][2]string
	// Files are the guest files it was read from.
	Files []string
}

// Parse reads one file_contexts file; name is used in errors. Every bad
// line is reported (errors.Join of *SyntaxError).
func Parse(name string, data []byte) (*Contexts, error) {
	c := &Contexts{}
	if err := c.add(name, data); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Contexts) add(name string, data []byte) error {
	var errs []error
	var regex, exact []spec
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		var s spec
		switch len(f) {
		case 2:
			s.ftype = fileTypeAny
		case 3:
			t, ok := typeFields[f[1]]
			if !ok {
				errs = append(errs, &SyntaxError{name, n, fmt.Sprintf("unknown file type %q", f[1])})
				continue
			}
			s.ftype = t
		default:
			errs = append(errs, &SyntaxError{name, n, fmt.Sprintf("want \"regex [type] context\", got %d fields", len(f))})
			continue
		}
		s.raw = f[0]
		ctx := f[len(f)-1]
		if ctx != "<<none>>" {
			if strings.Count(ctx, ":") < 2 {
				errs = append(errs, &SyntaxError{name, n, fmt.Sprintf("context %q is not user:role:type[:level]", ctx)})
				continue
			}
			s.context = ctx
		}
		re, err := regexp.Compile("^(?:" + s.raw + ")$")
		if err != nil {
			errs = append(errs, &SyntaxError{name, n, fmt.Sprintf("regular expression %q: %v", s.raw, err)})
			continue
		}
		s.re = re
		s.exact = !strings.ContainsAny(s.raw, `.^$?*+|[({\`)
		if s.exact {
			exact = append(exact, s)
		} else {
			regex = append(regex, s)
		}
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, fmt.Errorf("reading %s: %w", name, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	// Keep all regex specs before all exact ones, across files.
	var all []spec
	for _, s := range c.specs {
		if !s.exact {
			all = append(all, s)
		}
	}
	all = append(all, regex...)
	for _, s := range c.specs {
		if s.exact {
			all = append(all, s)
		}
	}
	c.specs = append(all, exact...)
	c.Files = append(c.Files, name)
	return nil
}

// addSubs reads a file_contexts.subs file: "alias original" per line.
func (c *Contexts) addSubs(name string, data []byte) error {
	var errs []error
	for i, l := range strings.Split(string(data), "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		f := strings.Fields(l)
		if len(f) != 2 || !strings.HasPrefix(f[0], "/") || !strings.HasPrefix(f[1], "/") {
			errs = append(errs, &SyntaxError{name, i + 1, "want \"/alias /original\""})
			continue
		}
		c.subs = append(c.subs, [2]string{path.Clean(f[0]), path.Clean(f[1])})
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	c.Files = append(c.Files, name)
	return nil
}

// Load reads the file contexts of policy type typ ("targeted", "mls",
// "strict") from a guest root: file_contexts, and when present
// file_contexts.homedirs, file_contexts.local, file_contexts.subs_dist and
// file_contexts.subs. A missing file_contexts is ErrNoPolicy.
func Load(root fs.FS, typ string) (*Contexts, error) {
	if typ == "" || strings.ContainsAny(typ, "/") || typ == "." || typ == ".." {
		return nil, fmt.Errorf("SELINUXTYPE %q: %w", typ, ErrNoPolicy)
	}
	dir := "etc/selinux/" + typ + "/contexts/files/"
	base := dir + "file_contexts"
	data, err := fs.ReadFile(root, base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("/%s: %w", base, ErrNoPolicy)
	}
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", base, err)
	}
	c := &Contexts{}
	if err := c.add("/"+base, data); err != nil {
		return nil, err
	}
	for _, extra := range []string{"file_contexts.homedirs", "file_contexts.local"} {
		b, err := fs.ReadFile(root, dir+extra)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading /%s: %w", dir+extra, err)
		}
		if err := c.add("/"+dir+extra, b); err != nil {
			return nil, err
		}
	}
	for _, extra := range []string{"file_contexts.subs_dist", "file_contexts.subs"} {
		b, err := fs.ReadFile(root, dir+extra)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading /%s: %w", dir+extra, err)
		}
		if err := c.addSubs("/"+dir+extra, b); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// Policy returns SELINUX and SELINUXTYPE from /etc/selinux/config
// ("enforcing", "targeted"); SELINUXTYPE defaults to targeted.
func Policy(config []byte) (mode, typ string) {
	typ = "targeted"
	for _, l := range strings.Split(string(config), "\n") {
		l = strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(l, "SELINUX="); ok {
			mode = strings.ToLower(strings.Trim(strings.TrimSpace(v), `"'`))
		}
		if v, ok := strings.CutPrefix(l, "SELINUXTYPE="); ok {
			if v = strings.Trim(strings.TrimSpace(v), `"'`); v != "" {
				typ = v
			}
		}
	}
	return mode, typ
}

// Lookup returns the context of absolute path p for a file of type mode
// (only mode.Type() counts). ok is false when no specification matches or
// the matching one says <<none>>.
func (c *Contexts) Lookup(p string, mode fs.FileMode) (string, bool) {
	p = path.Clean("/" + p)
	for _, s := range c.subs {
		if p == s[0] || strings.HasPrefix(p, s[0]+"/") {
			p = s[1] + p[len(s[0]):]
			break
		}
	}
	t := mode.Type()
	for i := len(c.specs) - 1; i >= 0; i-- {
		s := &c.specs[i]
		if s.ftype != fileTypeAny && s.ftype != t {
			continue
		}
		if s.re.MatchString(p) {
			return s.context, s.context != ""
		}
	}
	return "", false
}
