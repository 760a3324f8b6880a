package initrd

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"
)

// Flavour is the kind of initrd: which program runs it.
type Flavour string

const (
	Nash    Flavour = "nash"   // RHEL 4/5 mkinitrd: /init is a nash script
	Dracut  Flavour = "dracut" // RHEL 6 and later
	Unknown Flavour = "unknown"
)

// ErrUnsupported is returned by Rebuild for an initrd it does not know how
// to extend.
var ErrUnsupported = errors.New("unsupported initrd")

// Detect tells which kind of initrd img is.
func Detect(img *Image) Flavour {
	if b, err := img.ReadFile("init"); err == nil {
		if bytes.HasPrefix(b, []byte("#!/bin/nash")) {
			return Nash
		}
		if bytes.Contains(b, []byte("dracut")) {
			return Dracut
		}
	}
	for _, n := range img.Names() {
		if strings.HasPrefix(n, "lib/dracut") || strings.HasPrefix(n, "usr/lib/dracut") {
			return Dracut
		}
	}
	return Unknown
}

// Module is a kernel module to add to an initrd.
type Module struct {
	// Path is relative to /lib/modules/RELEASE, as in modules.dep.
	Path string
	Data []byte
	// Deps are the paths modules.dep lists for it.
	Deps []string
}

// Spec says how to rebuild an initrd.
type Spec struct {
	Release string
	// Modules are added in this order, which must be a valid load order.
	Modules []Module
	// Drop names modules whose loading is removed from a nash script
	// (the Xen block and network drivers).
	Drop []string
	// Remap returns the new name of a device ("/dev/xvda2" ->
	// "/dev/vda2"), and false to leave it.
	Remap func(dev string) (string, bool)
	// Edit rewrites the initrd's copies of configuration files (the
	// guest's etc/lvm/lvm.conf): each function gets the member's
	// content and returns the new one. Members the initrd lacks are
	// skipped.
	Edit map[string]func([]byte) []byte
}

// Result says what Rebuild changed.
type Result struct {
	Flavour Flavour
	Added   []string // members added
	Removed []string // members removed
	Edited  []string // members Spec.Edit changed
	// Indexes are the binary module indexes (modules.dep.bin,
	// modules.alias.bin) rewritten to list the added modules.
	Indexes []string
	// Script is the file whose text was edited ("init" for nash,
	// "etc/cmdline" for dracut) with its old and new content.
	Script       string
	ScriptBefore []byte
	ScriptAfter  []byte
}

// Changed tells whether the rebuild changed anything.
func (r *Result) Changed() bool {
	return len(r.Added) > 0 || len(r.Removed) > 0 || len(r.Edited) > 0 || len(r.Indexes) > 0 || !bytes.Equal(r.ScriptBefore, r.ScriptAfter)
}

// Rebuild returns data (an initrd) extended by spec. An initrd that
// already has everything comes back unchanged, so rebuilding twice is the
// same as rebuilding once.
func Rebuild(data []byte, spec Spec) ([]byte, *Result, error) {
	img, err := Read(data)
	if err != nil {
		return nil, nil, err
	}
	res := &Result{Flavour: Detect(img)}
	switch res.Flavour {
	case Nash:
		err = rebuildNash(img, spec, res)
	case Dracut:
		err = rebuildDracut(img, spec, res)
	default:
		return nil, res, fmt.Errorf("%w: neither a nash script nor dracut in /init", ErrUnsupported)
	}
	if err != nil {
		return nil, res, err
	}
	names := make([]string, 0, len(spec.Edit))
	for n := range spec.Edit {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		old, err := img.ReadFile(n)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, res, err
		}
		if nb := spec.Edit[n](old); !bytes.Equal(nb, old) {
			if err := img.WriteFile(n, nb, 0o644); err != nil {
				return nil, res, err
			}
			res.Edited = append(res.Edited, clean(n))
		}
	}
	if !res.Changed() {
		return data, res, nil
	}
	out, err := img.Bytes()
	if err != nil {
		return nil, res, err
	}
	return out, res, nil
}

// nashCmd returns the command and arguments of a nash script line.
func nashCmd(line string) (string, []string) {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return "", nil
	}
	return f[0], f[1:]
}

// needsRoot are nash commands that need the disk drivers loaded.
var needsRoot = map[string]bool{"stabilized": true, "lvm": true, "raidautorun": true, "dmraid": true,
	"resume": true, "mkrootdev": true, "mount": false}

func rebuildNash(img *Image, spec Spec, res *Result) error {
	script, err := img.ReadFile("init")
	if err != nil {
		return err
	}
	res.Script, res.ScriptBefore = "init", script
	final := bytes.HasSuffix(script, []byte("\n"))
	lines := strings.Split(strings.TrimSuffix(string(script), "\n"), "\n")

	drop := map[string]bool{}
	for _, d := range spec.Drop {
		drop[ModuleName(d)] = true
	}
	loaded := map[string]bool{}
	var out []string
	for i := 0; i < len(lines); i++ {
		cmd, args := nashCmd(lines[i])
		if cmd == "insmod" && len(args) > 0 {
			name := ModuleName(args[0])
			if drop[name] {
				// Drop the "Loading X module" echo before it too.
				if len(out) > 0 && strings.Contains(out[len(out)-1], "Loading "+path.Base(args[0])) {
					out = out[:len(out)-1]
				}
				member := strings.TrimPrefix(args[0], "/")
				if _, err := img.Stat(member); err == nil {
					if err := img.Remove(member); err != nil {
						return err
					}
					res.Removed = append(res.Removed, member)
				}
				continue
			}
		}
		out = append(out, lines[i])
	}
	lines = out

	// Where the new insmod lines go: after the last insmod before the
	// root is needed, or else just before the first command that needs
	// the disks.
	at := -1
	for i, l := range lines {
		cmd, args := nashCmd(l)
		if needsRoot[cmd] || (cmd == "mount" && len(args) == 1 && args[0] == "/sysroot") {
			break
		}
		if cmd == "insmod" {
			at = i + 1
		}
	}
	if at < 0 {
		for i, l := range lines {
			cmd, args := nashCmd(l)
			if needsRoot[cmd] || (cmd == "mount" && len(args) == 1 && args[0] == "/sysroot") {
				at = i
				break
			}
		}
	}
	if at < 0 {
		return fmt.Errorf("%w: nash script mounts no root (no mkrootdev, resume or mount /sysroot)", ErrUnsupported)
	}
	// Only what is loaded before that point counts as loaded.
	for _, l := range lines[:at] {
		if cmd, args := nashCmd(l); cmd == "insmod" && len(args) > 0 {
			loaded[ModuleName(args[0])] = true
		}
	}
	var add []string
	for _, m := range spec.Modules {
		name := ModuleName(m.Path)
		if loaded[name] {
			continue
		}
		base := path.Base(m.Path)
		member := "lib/" + base
		if old, err := img.ReadFile(member); err != nil || !bytes.Equal(old, m.Data) {
			if err := img.WriteFile(member, m.Data, 0o644); err != nil {
				return err
			}
			res.Added = append(res.Added, member)
		}
		add = append(add, fmt.Sprintf("echo \"Loading %s module\"", base), "insmod /"+member)
		loaded[name] = true
	}
	lines = slices.Insert(lines, at, add...)

	if spec.Remap != nil {
		for i, l := range lines {
			cmd, args := nashCmd(l)
			if (cmd != "mkrootdev" && cmd != "resume") || len(args) == 0 {
				continue
			}
			dev := args[len(args)-1]
			if nd, ok := spec.Remap(dev); ok && nd != dev {
				j := strings.LastIndex(l, dev)
				lines[i] = l[:j] + nd + l[j+len(dev):]
			}
		}
	}
	after := strings.Join(lines, "\n")
	if final {
		after += "\n"
	}
	res.ScriptAfter = []byte(after)
	if !bytes.Equal(res.ScriptAfter, res.ScriptBefore) {
		if err := img.WriteFile("init", res.ScriptAfter, 0o755); err != nil {
			return err
		}
	}
	return nil
}

func rebuildDracut(img *Image, spec Spec, res *Result) error {
	if spec.Release == "" {
		return errors.New("dracut initrd: kernel release not given")
	}
	base := "lib/modules/" + spec.Release
	depName := base + "/modules.dep"
	depData, err := img.ReadFile(depName)
	if err != nil {
		return fmt.Errorf("dracut initrd: %w", err)
	}
	dep, err := ParseModulesDep(depData)
	if err != nil {
		return fmt.Errorf("dracut initrd: %w", err)
	}
	aliasName := base + "/modules.alias"
	aliasData, _ := img.ReadFile(aliasName)
	newDep, newAlias := string(depData), string(aliasData)
	var names []string
	for _, m := range spec.Modules {
		member := base + "/" + m.Path
		names = append(names, ModuleName(m.Path))
		if old, err := img.ReadFile(member); err != nil || !bytes.Equal(old, m.Data) {
			if err := img.WriteFile(member, m.Data, 0o644); err != nil {
				return err
			}
			res.Added = append(res.Added, member)
		}
		if _, listed := dep.deps[m.Path]; !listed {
			if newDep != "" && !strings.HasSuffix(newDep, "\n") {
				newDep += "\n"
			}
			newDep += m.Path + ":"
			for _, d := range m.Deps {
				newDep += " " + d
			}
			newDep += "\n"
			for _, a := range moduleAliases(m.Data) {
				line := "alias " + a + " " + ModuleName(m.Path) + "\n"
				if !strings.Contains(newAlias, line) {
					newAlias += line
				}
			}
		}
	}
	if newDep != string(depData) {
		if err := img.WriteFile(depName, []byte(newDep), 0o644); err != nil {
			return err
		}
	}
	if newAlias != string(aliasData) {
		if err := img.WriteFile(aliasName, []byte(newAlias), 0o644); err != nil {
			return err
		}
	}
	if newDep != string(depData) || newAlias != string(aliasData) {
		// module-init-tools reads the binary indexes first and kmod
		// reads nothing else: rewrite them from the edited text files
		// (modules.symbols.bin stays: the added drivers export nothing
		// the initrd's other modules ask for by symbol).
		if err := rewriteIndexes(img, base, newDep, newAlias, res); err != nil {
			return err
		}
	}
	// dracut reads /etc/cmdline as kernel arguments: rdloaddriver= loads
	// the drivers even before udev asks for them.
	res.Script = "etc/cmdline"
	cmdline, _ := img.ReadFile("etc/cmdline")
	res.ScriptBefore = cmdline
	after := strings.TrimRight(string(cmdline), "\n")
	for _, n := range names {
		arg := "rdloaddriver=" + n
		if slices.Contains(strings.Fields(after), arg) {
			continue
		}
		if after != "" {
			after += " "
		}
		after += arg
	}
	if after != "" {
		after += "\n"
	}
	res.ScriptAfter = []byte(after)
	if !bytes.Equal(res.ScriptAfter, res.ScriptBefore) {
		if err := img.WriteFile("etc/cmdline", res.ScriptAfter, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// moduleAliases returns the alias= entries of a module's .modinfo.
func moduleAliases(ko []byte) []string { return ModInfo(ko, "alias") }

// ModInfo returns the values of key ("depends", "alias", ...) in a kernel
// module's .modinfo section; none when the module cannot be read as ELF.
func ModInfo(ko []byte, key string) []string { return modinfo(ko, key) }

func modinfo(ko []byte, key string) []string {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil
	}
	data, err := sec.Data()
	if err != nil {
		return nil
	}
	var out []string
	for _, kv := range bytes.Split(data, []byte{0}) {
		if a, ok := bytes.CutPrefix(kv, []byte(key+"=")); ok && len(a) > 0 {
			out = append(out, string(a))
		}
	}
	return out
}

// rewriteIndexes rewrites the modules.dep.bin and modules.alias.bin an
// initrd has under base from the text files' content.
func rewriteIndexes(img *Image, base, dep, alias string, res *Result) error {
	parsed, err := ParseModulesDep([]byte(dep))
	if err != nil {
		return err
	}
	depBin, order, err := depIndex(parsed)
	if err != nil {
		return fmt.Errorf("%s/modules.dep.bin: %w", base, err)
	}
	aliasBin, err := aliasIndex([]byte(alias), order)
	if err != nil {
		return fmt.Errorf("%s/modules.alias.bin: %w", base, err)
	}
	for name, data := range map[string][]byte{"modules.dep.bin": depBin, "modules.alias.bin": aliasBin} {
		p := base + "/" + name
		old, err := img.ReadFile(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if bytes.Equal(old, data) {
			continue
		}
		if err := img.WriteFile(p, data, 0o644); err != nil {
			return err
		}
		res.Indexes = append(res.Indexes, clean(p))
	}
	sort.Strings(res.Indexes)
	return nil
}
