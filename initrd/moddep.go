package initrd

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strings"
)

// ModulesDep is a parsed modules.dep of one kernel release. Paths are
// relative to /lib/modules/RELEASE ("kernel/drivers/block/virtio_blk.ko"),
// whether the file lists them that way (module-init-tools 3.5 and later)
// or as absolute paths (RHEL 4 and 5).
type ModulesDep struct {
	deps   map[string][]string
	byName map[string]string
	paths  []string // file order
}

// SyntaxError is a line of a modules.dep that does not parse.
type SyntaxError struct {
	File string
	Line int
	Msg  string
}

func (e *SyntaxError) Error() string { return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg) }

var absModules = regexp.MustCompile(`^/lib/modules/[^/]+/`)

// ModuleName returns a module's name from its file name: the base name
// without .ko (or .ko.gz, .ko.xz), dashes as underscores.
func ModuleName(p string) string {
	b := path.Base(p)
	for _, ext := range []string{".gz", ".xz", ".zst"} {
		b = strings.TrimSuffix(b, ext)
	}
	b = strings.TrimSuffix(b, ".ko")
	b = strings.TrimSuffix(b, ".o")
	return strings.ReplaceAll(b, "-", "_")
}

func relModule(p string) string {
	if loc := absModules.FindStringIndex(p); loc != nil {
		return p[loc[1]:]
	}
	return strings.TrimPrefix(p, "/")
}

// ParseModulesDep parses a modules.dep. Backslash-continued lines are
// joined; comments and blank lines are skipped.
func ParseModulesDep(data []byte) (*ModulesDep, error) {
	m := &ModulesDep{deps: map[string][]string{}, byName: map[string]string{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	n, start := 0, 0
	var acc strings.Builder
	for sc.Scan() {
		n++
		line := strings.TrimRight(sc.Text(), " \t\r")
		if acc.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, "\\") {
			acc.WriteString(strings.TrimSuffix(line, "\\"))
			acc.WriteByte(' ')
			continue
		}
		acc.WriteString(line)
		full := strings.TrimSpace(acc.String())
		acc.Reset()
		if full == "" || strings.HasPrefix(full, "#") {
			continue
		}
		mod, rest, ok := strings.Cut(full, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" || strings.ContainsAny(mod, " \t") {
			return nil, &SyntaxError{File: "modules.dep", Line: start, Msg: fmt.Sprintf("want \"MODULE: DEPS\", have %q", full)}
		}
		rel := relModule(mod)
		var deps []string
		for _, d := range strings.Fields(rest) {
			deps = append(deps, relModule(d))
		}
		if _, dup := m.deps[rel]; !dup {
			m.paths = append(m.paths, rel)
		}
		m.deps[rel] = deps
		name := ModuleName(rel)
		if _, dup := m.byName[name]; !dup {
			m.byName[name] = rel
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.dep: %w", err)
	}
	return m, nil
}

// Path returns the path of the named module ("virtio-blk" and
// "virtio_blk" are the same module).
func (m *ModulesDep) Path(name string) (string, bool) {
	p, ok := m.byName[strings.ReplaceAll(name, "-", "_")]
	return p, ok
}

// Deps returns the dependencies modules.dep lists for a module path.
func (m *ModulesDep) Deps(p string) []string { return slices.Clone(m.deps[p]) }

// Paths lists the module paths in file order.
func (m *ModulesDep) Paths() []string { return slices.Clone(m.paths) }

// LoadOrder returns the paths of the named modules and of everything they
// depend on, each module after its dependencies.
func (m *ModulesDep) LoadOrder(names ...string) ([]string, error) {
	var order []string
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p string) error
	visit = func(p string) error {
		switch state[p] {
		case 1:
			return fmt.Errorf("modules.dep: dependency cycle at %s", p)
		case 2:
			return nil
		}
		if _, ok := m.deps[p]; !ok {
			return fmt.Errorf("modules.dep: %s is needed but not listed", p)
		}
		state[p] = 1
		// Old modules.dep files list dependencies in reverse load order
		// and newer ones in load order; visiting each dependency's own
		// dependencies first gives a valid order either way.
		for _, d := range m.deps[p] {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[p] = 2
		order = append(order, p)
		return nil
	}
	for _, n := range names {
		p, ok := m.Path(n)
		if !ok {
			return nil, fmt.Errorf("module %s: not in modules.dep", n)
		}
		if err := visit(p); err != nil {
			return nil, err
		}
	}
	return order, nil
}
