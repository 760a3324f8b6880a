package lvm

import (
	"fmt"
	"strconv"
	"strings"
)

// The LVM2 text metadata is a tree of sections ("name { ... }") holding
// assignments ("key = value") whose values are strings, integers or
// arrays of those; '#' starts a comment.

// section is one "name { ... }" block of the metadata.
type section struct {
	name     string
	values   map[string]value
	sections []*section
}

// value is a string, an integer, or a list of those.
type value struct {
	str   string
	num   int64
	isStr bool
	list  []value
	isArr bool
}

// child returns the sub-section called name.
func (s *section) child(name string) *section {
	for _, c := range s.sections {
		if c.name == name {
			return c
		}
	}
	return nil
}

func (s *section) str(key string) (string, error) {
	v, ok := s.values[key]
	if !ok {
		return "", fmt.Errorf("%s: missing %s", s.name, key)
	}
	if !v.isStr || v.isArr {
		return "", fmt.Errorf("%s: %s is not a string", s.name, key)
	}
	return v.str, nil
}

func (s *section) int(key string) (int64, error) {
	v, ok := s.values[key]
	if !ok {
		return 0, fmt.Errorf("%s: missing %s", s.name, key)
	}
	if v.isStr || v.isArr {
		return 0, fmt.Errorf("%s: %s is not a number", s.name, key)
	}
	return v.num, nil
}

// strings returns a list of strings, or nil when key is absent.
func (s *section) strings(key string) []string {
	v, ok := s.values[key]
	if !ok || !v.isArr {
		return nil
	}
	var out []string
	for _, e := range v.list {
		if e.isStr {
			out = append(out, e.str)
		}
	}
	return out
}

// maxDepth bounds section nesting; VG metadata nests four deep.
const maxDepth = 32

// parseConfig parses LVM2 text metadata.
func parseConfig(text []byte) (*section, error) {
	p := &parser{s: text, line: 1}
	root := &section{name: "metadata", values: map[string]value{}}
	if err := p.body(root, 0); err != nil {
		return nil, err
	}
	return root, nil
}

type parser struct {
	s    []byte
	pos  int
	line int
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("metadata line %d: %s", p.line, fmt.Sprintf(format, args...))
}

// skip moves past white space and comments.
func (p *parser) skip() {
	for p.pos < len(p.s) {
		switch c := p.s[p.pos]; {
		case c == '\n':
			p.line++
			p.pos++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			p.pos++
		case c == '#':
			for p.pos < len(p.s) && p.s[p.pos] != '\n' {
				p.pos++
			}
		case c == 0:
			// The metadata area pads the text with NULs.
			p.pos = len(p.s)
		default:
			return
		}
	}
}

func isIdent(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '\f', '\v', '=', '{', '}', '[', ']', '"', '#', ',', 0:
		return false
	}
	return true
}

// body parses assignments and sections until '}' (depth > 0) or the end.
func (p *parser) body(sec *section, depth int) error {
	for {
		p.skip()
		if p.pos >= len(p.s) {
			if depth > 0 {
				return p.errorf("section %s is not closed", sec.name)
			}
			return nil
		}
		if p.s[p.pos] == '}' {
			if depth == 0 {
				return p.errorf("unexpected '}'")
			}
			p.pos++
			return nil
		}
		name, err := p.ident()
		if err != nil {
			return err
		}
		p.skip()
		if p.pos >= len(p.s) {
			return p.errorf("unexpected end after %q", name)
		}
		switch p.s[p.pos] {
		case '{':
			if depth+1 > maxDepth {
				return p.errorf("sections nested deeper than %d", maxDepth)
			}
			p.pos++
			child := &section{name: name, values: map[string]value{}}
			if err := p.body(child, depth+1); err != nil {
				return err
			}
			sec.sections = append(sec.sections, child)
		case '=':
			p.pos++
			v, err := p.value(true)
			if err != nil {
				return err
			}
			sec.values[name] = v
		default:
			return p.errorf("expected '=' or '{' after %q, found %q", name, p.s[p.pos])
		}
	}
}

func (p *parser) ident() (string, error) {
	start := p.pos
	for p.pos < len(p.s) && isIdent(p.s[p.pos]) {
		p.pos++
	}
	if p.pos == start {
		return "", p.errorf("expected a name, found %q", p.s[p.pos])
	}
	return string(p.s[start:p.pos]), nil
}

// value parses a string, a number, or (when arrays are allowed) a list.
func (p *parser) value(allowArray bool) (value, error) {
	p.skip()
	if p.pos >= len(p.s) {
		return value{}, p.errorf("missing value")
	}
	switch c := p.s[p.pos]; {
	case c == '"':
		s, err := p.quoted()
		return value{str: s, isStr: true}, err
	case c == '[' && allowArray:
		p.pos++
		v := value{isArr: true}
		for {
			p.skip()
			if p.pos >= len(p.s) {
				return value{}, p.errorf("array is not closed")
			}
			if p.s[p.pos] == ']' {
				p.pos++
				return v, nil
			}
			if len(v.list) > 0 {
				if p.s[p.pos] != ',' {
					return value{}, p.errorf("expected ',' or ']' in array, found %q", p.s[p.pos])
				}
				p.pos++
				p.skip()
			}
			e, err := p.value(false)
			if err != nil {
				return value{}, err
			}
			v.list = append(v.list, e)
		}
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		start := p.pos
		for p.pos < len(p.s) && isIdent(p.s[p.pos]) {
			p.pos++
		}
		text := string(p.s[start:p.pos])
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			// Floats appear in some configs; the metadata needs none.
			if f, ferr := strconv.ParseFloat(text, 64); ferr == nil {
				return value{num: int64(f)}, nil
			}
			return value{}, p.errorf("bad number %q", text)
		}
		return value{num: n}, nil
	default:
		return value{}, p.errorf("unexpected %q in value", c)
	}
}

// quoted parses a double-quoted string with backslash escapes.
func (p *parser) quoted() (string, error) {
	p.pos++ // opening quote
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		p.pos++
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if p.pos >= len(p.s) {
				return "", p.errorf("string is not closed")
			}
			c = p.s[p.pos]
			p.pos++
		case '\n':
			p.line++
		}
		b.WriteByte(c)
	}
	return "", p.errorf("string is not closed")
}
