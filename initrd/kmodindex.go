package initrd

// The binary module indexes (modules.dep.bin, modules.alias.bin) that
// module-init-tools 3.9 and later and kmod read before, or instead of,
// the text files: kmod's modprobe and udev's module loading find no
// module whose name or alias the index lacks, so an index that does not
// list the modules a rebuild adds hides them. The format (version 2.1):
// big-endian u32 magic 0xB007F457, version 0x00020001, the root node's
// offset; each node is an optional NUL-terminated prefix, an optional
// child table (first and last child character, one u32 offset per
// character between them, 0 for none) and optional values (a u32 count,
// then per value a u32 priority and a NUL-terminated string). A node's
// offset carries flags in its top nibble saying which parts it has.

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"io/fs"
	"sort"
	"strings"
)

const (
	indexMagic   = 0xB007F457
	indexVersion = 0x00020001

	indexNodePrefix = 0x80000000
	indexNodeValues = 0x40000000
	indexNodeChilds = 0x20000000
	indexNodeMask   = 0x0FFFFFFF
	indexChildMax   = 128
)

type indexValue struct {
	priority uint32
	value    string
}

type indexNode struct {
	children map[byte]*indexNode
	values   []indexValue
}

// kmodIndex is a key -> values map written as a module index.
type kmodIndex struct{ root indexNode }

// insert adds a value to key; values are kept in priority order.
func (x *kmodIndex) insert(key, value string, priority uint32) error {
	n := &x.root
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == 0 || c >= indexChildMax {
			return fmt.Errorf("index key %q: byte %#x cannot be indexed", key, c)
		}
		if n.children == nil {
			n.children = map[byte]*indexNode{}
		}
		ch := n.children[c]
		if ch == nil {
			ch = &indexNode{}
			n.children[c] = ch
		}
		n = ch
	}
	for _, v := range n.values {
		if v.value == value {
			return nil
		}
	}
	n.values = append(n.values, indexValue{priority, value})
	sort.SliceStable(n.values, func(i, j int) bool { return n.values[i].priority < n.values[j].priority })
	return nil
}

// bytes writes the index; children are written before their parents so
// that every offset is known when it is written.
func (x *kmodIndex) bytes() ([]byte, error) {
	var buf bytes.Buffer
	var hdr [12]byte
	binary.BigEndian.PutUint32(hdr[0:], indexMagic)
	binary.BigEndian.PutUint32(hdr[4:], indexVersion)
	buf.Write(hdr[:])
	var write func(n *indexNode) (uint32, error)
	write = func(n *indexNode) (uint32, error) {
		// Path compression: a node without values and with one child
		// becomes part of its child's prefix.
		var prefix []byte
		for len(n.values) == 0 && len(n.children) == 1 {
			for c, ch := range n.children {
				prefix = append(prefix, c)
				n = ch
			}
		}
		var keys []byte
		for c := range n.children {
			keys = append(keys, c)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		offs := map[byte]uint32{}
		for _, c := range keys {
			o, err := write(n.children[c])
			if err != nil {
				return 0, err
			}
			offs[c] = o
		}
		start := buf.Len()
		if start > indexNodeMask {
			return 0, fmt.Errorf("module index larger than %d bytes", indexNodeMask)
		}
		flags := uint32(0)
		if len(prefix) > 0 {
			buf.Write(prefix)
			buf.WriteByte(0)
			flags |= indexNodePrefix
		}
		var u [4]byte
		if len(keys) > 0 {
			first, last := keys[0], keys[len(keys)-1]
			buf.WriteByte(first)
			buf.WriteByte(last)
			for c := int(first); c <= int(last); c++ {
				binary.BigEndian.PutUint32(u[:], offs[byte(c)])
				buf.Write(u[:])
			}
			flags |= indexNodeChilds
		}
		if len(n.values) > 0 {
			binary.BigEndian.PutUint32(u[:], uint32(len(n.values)))
			buf.Write(u[:])
			for _, v := range n.values {
				binary.BigEndian.PutUint32(u[:], v.priority)
				buf.Write(u[:])
				buf.WriteString(v.value)
				buf.WriteByte(0)
			}
			flags |= indexNodeValues
		}
		return uint32(start) | flags, nil
	}
	root, err := write(&x.root)
	if err != nil {
		return nil, err
	}
	out := buf.Bytes()
	binary.BigEndian.PutUint32(out[8:], root)
	return out, nil
}

// aliasNormalize spells an alias as the indexes key it: dashes become
// underscores, except inside a [...] character class.
func aliasNormalize(a string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(a); i++ {
		switch c := a[i]; c {
		case '-':
			b.WriteByte('_')
		case ']':
			return "", fmt.Errorf("alias %q: unmatched ]", a)
		case '[':
			j := strings.IndexByte(a[i:], ']')
			if j < 0 {
				return "", fmt.Errorf("alias %q: unmatched [", a)
			}
			b.WriteString(a[i : i+j+1])
			i += j
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// depIndex builds modules.dep.bin from a modules.dep: each module's name
// maps to its line ("path: dep dep"), its priority the line's order.
func depIndex(dep *ModulesDep) ([]byte, map[string]uint32, error) {
	var x kmodIndex
	order := map[string]uint32{}
	for i, p := range dep.Paths() {
		line := p + ":"
		for _, d := range dep.Deps(p) {
			line += " " + d
		}
		name := ModuleName(p)
		if _, seen := order[name]; !seen {
			order[name] = uint32(i)
		}
		if err := x.insert(name, line, uint32(i)); err != nil {
			return nil, nil, err
		}
	}
	b, err := x.bytes()
	return b, order, err
}

// aliasIndex builds modules.alias.bin from a modules.alias ("alias
// PATTERN MODULE" lines); order gives each module's priority.
func aliasIndex(aliases []byte, order map[string]uint32) ([]byte, error) {
	var x kmodIndex
	sc := bufio.NewScanner(bytes.NewReader(aliases))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) != 3 || f[0] != "alias" {
			return nil, &SyntaxError{File: "modules.alias", Line: n, Msg: fmt.Sprintf("want \"alias PATTERN MODULE\", have %q", sc.Text())}
		}
		key, err := aliasNormalize(f[1])
		if err != nil {
			return nil, &SyntaxError{File: "modules.alias", Line: n, Msg: err.Error()}
		}
		if err := x.insert(key, f[2], order[f[2]]); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("modules.alias: %w", err)
	}
	return x.bytes()
}

// indexLookup returns the first value of key in a module index (the
// exact-match search modprobe makes for a module name), and false when
// the index has no such key.
func indexLookup(idx []byte, key string) (string, bool, error) {
	if len(idx) < 12 || binary.BigEndian.Uint32(idx) != indexMagic || binary.BigEndian.Uint32(idx[4:])>>16 != indexVersion>>16 {
		return "", false, fmt.Errorf("not a version 2 module index")
	}
	bad := fmt.Errorf("module index: node out of bounds")
	off := binary.BigEndian.Uint32(idx[8:])
	cstr := func(p int) (string, int, error) {
		e := bytes.IndexByte(idx[p:], 0)
		if e < 0 {
			return "", 0, bad
		}
		return string(idx[p : p+e]), p + e + 1, nil
	}
	i := 0
	for steps := 0; steps < len(idx); steps++ {
		p := int(off & indexNodeMask)
		if p == 0 || p >= len(idx) {
			return "", false, nil
		}
		if off&indexNodePrefix != 0 {
			pre, next, err := cstr(p)
			if err != nil {
				return "", false, err
			}
			if !strings.HasPrefix(key[i:], pre) {
				return "", false, nil
			}
			i += len(pre)
			p = next
		}
		var first, last int
		var children int
		if off&indexNodeChilds != 0 {
			if p+2 > len(idx) {
				return "", false, bad
			}
			first, last = int(idx[p]), int(idx[p+1])
			children = p + 2
			p = children + 4*(last-first+1)
			if last < first || p > len(idx) {
				return "", false, bad
			}
		}
		if i == len(key) {
			if off&indexNodeValues == 0 || p+8 > len(idx) || binary.BigEndian.Uint32(idx[p:]) == 0 {
				return "", false, nil
			}
			v, _, err := cstr(p + 8)
			return v, err == nil, err
		}
		c := int(key[i])
		if off&indexNodeChilds == 0 || c < first || c > last {
			return "", false, nil
		}
		off = binary.BigEndian.Uint32(idx[children+4*(c-first):])
		i++
	}
	return "", false, bad
}

// FindModule returns the modules.dep line ("path: deps") the initrd's
// module tree for release gives the named module, read as modprobe reads
// it: from modules.dep.bin when the image has one, else modules.dep. It
// returns fs.ErrNotExist (wrapped) for a module the tree does not list.
func FindModule(img *Image, release, name string) (string, error) {
	base := "lib/modules/" + release
	name = strings.ReplaceAll(name, "-", "_")
	if idx, err := img.ReadFile(base + "/modules.dep.bin"); err == nil {
		v, ok, err := indexLookup(idx, name)
		if err != nil {
			return "", fmt.Errorf("%s/modules.dep.bin: %w", base, err)
		}
		if !ok {
			return "", fmt.Errorf("module %s: not in %s/modules.dep.bin: %w", name, base, fs.ErrNotExist)
		}
		return v, nil
	}
	data, err := img.ReadFile(base + "/modules.dep")
	if err != nil {
		return "", err
	}
	dep, err := ParseModulesDep(data)
	if err != nil {
		return "", err
	}
	p, ok := dep.Path(name)
	if !ok {
		return "", fmt.Errorf("module %s: not in %s/modules.dep: %w", name, base, fs.ErrNotExist)
	}
	return p + ": " + strings.Join(dep.Deps(p), " "), nil
}
