// Package hive reads and edits Windows registry hive files (the regf
// format of SYSTEM, SOFTWARE, ...) in memory, without growing them: values
// are changed inside the cells they already have, and new keys and values
// (AddKey, AddValue) take cells from the hive's existing free space, so
// the file keeps its size and the NTFS clusters it sits in.
//
//	h, err := hive.Parse(b)
//	k, err := h.Open(`ControlSet001\Services\xenvbd`)
//	v, err := k.Value("Start")
//	n, _ := v.DWORD()
//	err = h.SetDWORD(v, 4)
//	out := h.Bytes() // sequence numbers and checksum updated
package hive

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// Registry value types.
const (
	None     = 0
	SZ       = 1
	ExpandSZ = 2
	Binary   = 3
	DWORD    = 4
	MultiSZ  = 7
	QWORD    = 11
)

// Errors callers branch on.
var (
	// ErrFormat: the data is not a valid hive (wrapped with what is wrong).
	ErrFormat = errors.New("not a valid registry hive")
	// ErrDirty: the hive's sequence numbers differ, so a write to it was
	// interrupted and its transaction log (SYSTEM.LOG) has not been
	// applied.
	ErrDirty = errors.New("hive sequence numbers differ: its transaction log has not been applied")
	// ErrNotFound: no such key or value.
	ErrNotFound = errors.New("not found")
	// ErrNoRoom: new data, a key or a value does not fit in the cell it
	// replaces or in the hive's free cells (hives are never grown).
	ErrNoRoom = errors.New("does not fit in the hive's existing cells")
	// ErrType: the value is not of the type asked for.
	ErrType = errors.New("wrong value type")
)

const (
	baseSize  = 4096
	hbinStart = 4096
	maxDepth  = 512 // nesting of keys and index lists, against loops
)

// Hive is a parsed hive held in memory. Edits change its bytes in place.
type Hive struct {
	b       []byte
	root    uint32
	end     int // end of the hive bins data, absolute
	changed bool
}

var le = binary.LittleEndian

// Parse checks b's base block and hive bins and returns the hive. b is
// copied. It refuses a hive whose sequence numbers differ with ErrDirty.
func Parse(b []byte) (*Hive, error) {
	if len(b) < baseSize+32 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrFormat, len(b))
	}
	if string(b[:4]) != "regf" {
		return nil, fmt.Errorf("%w: no regf signature", ErrFormat)
	}
	if got, want := le.Uint32(b[0x1fc:]), checksum(b); got != want {
		return nil, fmt.Errorf("%w: base block checksum %#x, want %#x", ErrFormat, got, want)
	}
	if le.Uint32(b[4:]) != le.Uint32(b[8:]) {
		return nil, fmt.Errorf("%w (primary %d, secondary %d)", ErrDirty, le.Uint32(b[4:]), le.Uint32(b[8:]))
	}
	size := int64(le.Uint32(b[0x28:]))
	if size < 4096 || size%4096 != 0 || hbinStart+size > int64(len(b)) {
		return nil, fmt.Errorf("%w: hive bins size %d for a %d-byte file", ErrFormat, size, len(b))
	}
	h := &Hive{b: append([]byte(nil), b...), root: le.Uint32(b[0x24:]), end: hbinStart + int(size)}
	// Walk the bins and their cells once so that every later cell access
	// is known to be inside one.
	for off := hbinStart; off < h.end; {
		if string(h.b[off:off+4]) != "hbin" {
			return nil, fmt.Errorf("%w: no hbin signature at %#x", ErrFormat, off)
		}
		if rel := int(le.Uint32(h.b[off+4:])); rel != off-hbinStart {
			return nil, fmt.Errorf("%w: hbin at %#x says it is at %#x", ErrFormat, off, rel+hbinStart)
		}
		n := int(le.Uint32(h.b[off+8:]))
		if n < 4096 || n%4096 != 0 || off+n > h.end {
			return nil, fmt.Errorf("%w: hbin at %#x has size %d", ErrFormat, off, n)
		}
		for c := off + 32; c < off+n; {
			s := int(int32(le.Uint32(h.b[c:])))
			if s < 0 {
				s = -s
			}
			if s < 8 || s%8 != 0 || c+s > off+n {
				return nil, fmt.Errorf("%w: cell at %#x has size %d", ErrFormat, c, s)
			}
			c += s
		}
		off += n
	}
	if _, err := h.nk(h.root); err != nil {
		return nil, fmt.Errorf("root key: %w", err)
	}
	return h, nil
}

// checksum is the base block's XOR of its first 127 dwords.
func checksum(b []byte) uint32 {
	var x uint32
	for i := 0; i < 0x1fc; i += 4 {
		x ^= le.Uint32(b[i:])
	}
	switch x {
	case 0xffffffff:
		return 0xfffffffe
	case 0:
		return 1
	}
	return x
}

// Changed tells whether any edit was made.
func (h *Hive) Changed() bool { return h.changed }

// Bytes returns the hive file. After an edit, its sequence numbers are
// one higher than they were (both equal, as after a completed write) and
// its checksum is updated.
func (h *Hive) Bytes() []byte {
	out := append([]byte(nil), h.b...)
	if h.changed {
		seq := le.Uint32(out[4:]) + 1
		le.PutUint32(out[4:], seq)
		le.PutUint32(out[8:], seq)
		le.PutUint32(out[0x1fc:], checksum(out))
	}
	return out
}

// cell returns the data of the allocated cell at hive offset off
// (relative to the first hbin), without its size field.
func (h *Hive) cell(off uint32) ([]byte, error) {
	a := int64(off) + hbinStart
	if off == 0xffffffff || a+4 > int64(h.end) {
		return nil, fmt.Errorf("%w: cell offset %#x out of range", ErrFormat, off)
	}
	s := int32(le.Uint32(h.b[a:]))
	if s >= 0 {
		return nil, fmt.Errorf("%w: cell at %#x is free", ErrFormat, off)
	}
	n := int64(-s)
	if n < 8 || a+n > int64(h.end) {
		return nil, fmt.Errorf("%w: cell at %#x has size %d", ErrFormat, off, n)
	}
	return h.b[a+4 : a+n], nil
}

// Key is a registry key (an nk cell).
type Key struct {
	h    *Hive
	off  uint32
	name string
}

// Value is a registry value (a vk cell).
type Value struct {
	h    *Hive
	off  uint32
	Name string
	Type uint32
}

func (h *Hive) nk(off uint32) (Key, error) {
	c, err := h.cell(off)
	if err != nil {
		return Key{}, err
	}
	if len(c) < 0x4c || string(c[:2]) != "nk" {
		return Key{}, fmt.Errorf("%w: no nk cell at %#x", ErrFormat, off)
	}
	n := int(le.Uint16(c[0x48:]))
	if 0x4c+n > len(c) {
		return Key{}, fmt.Errorf("%w: key name at %#x runs past its cell", ErrFormat, off)
	}
	name := decodeName(c[0x4c:0x4c+n], le.Uint16(c[2:])&0x20 != 0)
	return Key{h: h, off: off, name: name}, nil
}

func decodeName(b []byte, ascii bool) string {
	if ascii {
		r := make([]rune, len(b))
		for i, c := range b {
			r[i] = rune(c) // Latin-1
		}
		return string(r)
	}
	return utf16String(b)
}

func utf16String(b []byte) string {
	u := make([]uint16, len(b)/2)
	for i := range u {
		u[i] = le.Uint16(b[2*i:])
	}
	return string(utf16.Decode(u))
}

// Root is the hive's root key.
func (h *Hive) Root() Key {
	k, _ := h.nk(h.root) // checked by Parse
	return k
}

// Name is the key's name.
func (k Key) Name() string { return k.name }

// Subkeys lists the key's subkeys.
func (k Key) Subkeys() ([]Key, error) {
	c, _ := k.h.cell(k.off)
	if le.Uint32(c[0x14:]) == 0 {
		return nil, nil
	}
	var out []Key
	if err := k.h.subkeyList(le.Uint32(c[0x1c:]), 0, &out); err != nil {
		return nil, fmt.Errorf("subkeys of %s: %w", k.name, err)
	}
	return out, nil
}

func (h *Hive) subkeyList(off uint32, depth int, out *[]Key) error {
	if depth > maxDepth {
		return fmt.Errorf("%w: subkey lists nest too deep", ErrFormat)
	}
	c, err := h.cell(off)
	if err != nil {
		return err
	}
	if len(c) < 4 {
		return fmt.Errorf("%w: short subkey list at %#x", ErrFormat, off)
	}
	n := int(le.Uint16(c[2:]))
	step := 8
	switch string(c[:2]) {
	case "lf", "lh":
	case "li", "ri":
		step = 4
	default:
		return fmt.Errorf("%w: unknown subkey list %q at %#x", ErrFormat, c[:2], off)
	}
	if 4+n*step > len(c) {
		return fmt.Errorf("%w: subkey list at %#x runs past its cell", ErrFormat, off)
	}
	for i := 0; i < n; i++ {
		e := le.Uint32(c[4+i*step:])
		if string(c[:2]) == "ri" {
			if err := h.subkeyList(e, depth+1, out); err != nil {
				return err
			}
			continue
		}
		k, err := h.nk(e)
		if err != nil {
			return err
		}
		*out = append(*out, k)
	}
	return nil
}

// Subkey finds a subkey by name, ignoring case as Windows does.
func (k Key) Subkey(name string) (Key, error) {
	ks, err := k.Subkeys()
	if err != nil {
		return Key{}, err
	}
	for _, s := range ks {
		if strings.EqualFold(s.name, name) {
			return s, nil
		}
	}
	return Key{}, fmt.Errorf("key %s\\%s: %w", k.name, name, ErrNotFound)
}

// Open finds a key by its backslash-separated path below the root.
func (h *Hive) Open(path string) (Key, error) {
	k := h.Root()
	for _, p := range strings.Split(path, `\`) {
		if p == "" {
			continue
		}
		s, err := k.Subkey(p)
		if err != nil {
			return Key{}, fmt.Errorf("key %s: %w", path, ErrNotFound)
		}
		k = s
	}
	return k, nil
}

// Values lists the key's values.
func (k Key) Values() ([]Value, error) {
	c, _ := k.h.cell(k.off)
	n := int(le.Uint32(c[0x24:]))
	if n == 0 {
		return nil, nil
	}
	l, err := k.h.cell(le.Uint32(c[0x28:]))
	if err != nil {
		return nil, fmt.Errorf("values of %s: %w", k.name, err)
	}
	if n*4 > len(l) {
		return nil, fmt.Errorf("values of %s: %w: %d values in a %d-byte list", k.name, ErrFormat, n, len(l))
	}
	out := make([]Value, 0, n)
	for i := 0; i < n; i++ {
		v, err := k.h.vk(le.Uint32(l[i*4:]))
		if err != nil {
			return nil, fmt.Errorf("values of %s: %w", k.name, err)
		}
		out = append(out, v)
	}
	return out, nil
}

func (h *Hive) vk(off uint32) (Value, error) {
	c, err := h.cell(off)
	if err != nil {
		return Value{}, err
	}
	if len(c) < 0x14 || string(c[:2]) != "vk" {
		return Value{}, fmt.Errorf("%w: no vk cell at %#x", ErrFormat, off)
	}
	n := int(le.Uint16(c[2:]))
	if 0x14+n > len(c) {
		return Value{}, fmt.Errorf("%w: value name at %#x runs past its cell", ErrFormat, off)
	}
	return Value{h: h, off: off, Name: decodeName(c[0x14:0x14+n], le.Uint16(c[0x10:])&1 != 0), Type: le.Uint32(c[0x0c:])}, nil
}

// Value finds a value by name ("" is the key's default value), ignoring
// case.
func (k Key) Value(name string) (Value, error) {
	vs, err := k.Values()
	if err != nil {
		return Value{}, err
	}
	for _, v := range vs {
		if strings.EqualFold(v.Name, name) {
			return v, nil
		}
	}
	return Value{}, fmt.Errorf("value %s\\%s: %w", k.name, name, ErrNotFound)
}

// Data returns the value's raw data.
func (v Value) Data() ([]byte, error) {
	c, _ := v.h.cell(v.off)
	size := le.Uint32(c[4:])
	if size&0x80000000 != 0 {
		n := size &^ 0x80000000
		if n > 4 {
			return nil, fmt.Errorf("%w: value %s: %d bytes of inline data", ErrFormat, v.Name, n)
		}
		return append([]byte(nil), c[8:8+n]...), nil
	}
	if size == 0 {
		return []byte{}, nil
	}
	d, err := v.h.cell(le.Uint32(c[8:]))
	if err != nil {
		return nil, fmt.Errorf("value %s: %w", v.Name, err)
	}
	if len(d) >= 4 && string(d[:2]) == "db" && int(size) > len(d) {
		return v.h.bigData(d, int(size))
	}
	if int(size) > len(d) {
		return nil, fmt.Errorf("%w: value %s: %d bytes of data in a %d-byte cell", ErrFormat, v.Name, size, len(d))
	}
	return append([]byte(nil), d[:size]...), nil
}

// bigData joins the segments of a "db" (big data) record.
func (h *Hive) bigData(db []byte, size int) ([]byte, error) {
	if len(db) < 8 {
		return nil, fmt.Errorf("%w: short big data record", ErrFormat)
	}
	n := int(le.Uint16(db[2:]))
	l, err := h.cell(le.Uint32(db[4:]))
	if err != nil {
		return nil, err
	}
	if n*4 > len(l) {
		return nil, fmt.Errorf("%w: big data segment list too short", ErrFormat)
	}
	out := make([]byte, 0, size)
	for i := 0; i < n && len(out) < size; i++ {
		s, err := h.cell(le.Uint32(l[i*4:]))
		if err != nil {
			return nil, err
		}
		s = s[:min(len(s), 16344, size-len(out))]
		out = append(out, s...)
	}
	if len(out) != size {
		return nil, fmt.Errorf("%w: big data has %d of %d bytes", ErrFormat, len(out), size)
	}
	return out, nil
}

// DWORD returns a REG_DWORD value.
func (v Value) DWORD() (uint32, error) {
	d, err := v.Data()
	if err != nil {
		return 0, err
	}
	if v.Type != DWORD || len(d) != 4 {
		return 0, fmt.Errorf("value %s: %w: type %d, %d bytes, want a DWORD", v.Name, ErrType, v.Type, len(d))
	}
	return le.Uint32(d), nil
}

// String returns a REG_SZ or REG_EXPAND_SZ value without its NUL.
func (v Value) String() (string, error) {
	d, err := v.Data()
	if err != nil {
		return "", err
	}
	if v.Type != SZ && v.Type != ExpandSZ {
		return "", fmt.Errorf("value %s: %w: type %d, want a string", v.Name, ErrType, v.Type)
	}
	s := utf16String(d)
	s, _, _ = strings.Cut(s, "\x00")
	return s, nil
}

// Strings returns a REG_MULTI_SZ value's strings.
func (v Value) Strings() ([]string, error) {
	d, err := v.Data()
	if err != nil {
		return nil, err
	}
	if v.Type != MultiSZ {
		return nil, fmt.Errorf("value %s: %w: type %d, want REG_MULTI_SZ", v.Name, ErrType, v.Type)
	}
	var out []string
	for _, s := range strings.Split(utf16String(d), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// EncodeMultiSZ is the REG_MULTI_SZ data of ss: UTF-16LE strings, each
// ended by a NUL, and a final NUL.
func EncodeMultiSZ(ss []string) []byte {
	var u []uint16
	for _, s := range ss {
		u = append(u, utf16.Encode([]rune(s))...)
		u = append(u, 0)
	}
	u = append(u, 0)
	b := make([]byte, 2*len(u))
	for i, c := range u {
		le.PutUint16(b[2*i:], c)
	}
	return b
}

// SetDWORD changes a REG_DWORD value in place.
func (h *Hive) SetDWORD(v Value, n uint32) error {
	if v.Type != DWORD {
		return fmt.Errorf("value %s: %w: type %d, want a DWORD", v.Name, ErrType, v.Type)
	}
	var b [4]byte
	le.PutUint32(b[:], n)
	return h.SetData(v, b[:])
}

// SetData replaces a value's data, keeping its type, inside the cells it
// already has: inline data stays inline (at most 4 bytes), data in a cell
// must fit that cell. Otherwise it returns ErrNoRoom and changes nothing.
func (h *Hive) SetData(v Value, data []byte) error {
	if v.h != h {
		return errors.New("value is from another hive")
	}
	c, err := h.cell(v.off)
	if err != nil {
		return err
	}
	size := le.Uint32(c[4:])
	if size&0x80000000 != 0 || size == 0 {
		if len(data) > 4 {
			return fmt.Errorf("value %s: %w: %d bytes where %d were inline", v.Name, ErrNoRoom, len(data), size&^0x80000000)
		}
		var in [4]byte
		copy(in[:], data)
		copy(c[8:12], in[:])
		le.PutUint32(c[4:], uint32(len(data))|0x80000000)
		h.changed = true
		return nil
	}
	d, err := h.cell(le.Uint32(c[8:]))
	if err != nil {
		return fmt.Errorf("value %s: %w", v.Name, err)
	}
	if int(size) > len(d) { // big data
		return fmt.Errorf("value %s: %w: big data values are not edited", v.Name, ErrNoRoom)
	}
	if len(data) > len(d) {
		return fmt.Errorf("value %s: %w: %d bytes in a %d-byte cell", v.Name, ErrNoRoom, len(data), len(d))
	}
	copy(d, data)
	clear(d[len(data):size])
	le.PutUint32(c[4:], uint32(len(data)))
	h.changed = true
	return nil
}

// ErrExists: AddValue found a value of that name already.
var ErrExists = errors.New("value already exists")

// alloc takes a free cell of at least n bytes of data from the hive's
// existing free space (never growing the file), splitting it when the
// rest is big enough for a cell, and returns its offset.
func (h *Hive) alloc(n int) (uint32, error) {
	need := align8(n + 4)
	for off := hbinStart; off < h.end; {
		size := int(le.Uint32(h.b[off+8:]))
		for c := off + 32; c < off+size; {
			s := int(int32(le.Uint32(h.b[c:])))
			if s > 0 && s >= need {
				if rest := s - need; rest >= 16 {
					le.PutUint32(h.b[c+need:], uint32(rest))
					s = need
				}
				clear(h.b[c+4 : c+s])
				le.PutUint32(h.b[c:], uint32(-int32(s)))
				return uint32(c - hbinStart), nil
			}
			if s < 0 {
				s = -s
			}
			c += s
		}
		off += size
	}
	return 0, fmt.Errorf("%w: no free cell of %d bytes", ErrNoRoom, need)
}

// freeCell marks an allocated cell free.
func (h *Hive) freeCell(off uint32) {
	a := int(off) + hbinStart
	if s := int32(le.Uint32(h.b[a:])); s < 0 {
		le.PutUint32(h.b[a:], uint32(-s))
	}
}

// AddValue adds a value to key k in the hive's free space: a value cell,
// a data cell (unless the data fits inline) and a longer value list that
// replaces the old one, which is freed. The file does not grow; without
// enough free space it returns ErrNoRoom and changes nothing. The name
// must be ASCII.
func (h *Hive) AddValue(k Key, name string, typ uint32, data []byte) error {
	if k.h != h {
		return errors.New("key is from another hive")
	}
	for _, r := range name {
		if r > 0x7f {
			return fmt.Errorf("value name %q: only ASCII names are written", name)
		}
	}
	if _, err := k.Value(name); err == nil {
		return fmt.Errorf("%s\\%s: %w", k.name, name, ErrExists)
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	saved := append([]byte(nil), h.b...)
	fail := func(err error) error {
		h.b = saved
		return fmt.Errorf("adding %s\\%s: %w", k.name, name, err)
	}
	nk, _ := h.cell(k.off)
	count := int(le.Uint32(nk[0x24:]))
	oldList := le.Uint32(nk[0x28:])

	vkOff, err := h.alloc(0x14 + len(name))
	if err != nil {
		return fail(err)
	}
	vk, _ := h.cell(vkOff)
	copy(vk, "vk")
	le.PutUint16(vk[2:], uint16(len(name)))
	le.PutUint32(vk[0x0c:], typ)
	le.PutUint16(vk[0x10:], 1) // ASCII name
	copy(vk[0x14:], name)
	if len(data) <= 4 {
		le.PutUint32(vk[4:], uint32(len(data))|0x80000000)
		copy(vk[8:12], data)
	} else {
		if len(data) > 16344 {
			return fail(fmt.Errorf("%d bytes of data need a big data record", len(data)))
		}
		dOff, err := h.alloc(len(data))
		if err != nil {
			return fail(err)
		}
		d, _ := h.cell(dOff)
		copy(d, data)
		le.PutUint32(vk[4:], uint32(len(data)))
		le.PutUint32(vk[8:], dOff)
	}
	listOff, err := h.alloc(4 * (count + 1))
	if err != nil {
		return fail(err)
	}
	l, _ := h.cell(listOff)
	if count > 0 {
		old, err := h.cell(oldList)
		if err != nil || len(old) < 4*count {
			return fail(fmt.Errorf("%w: value list of %s", ErrFormat, k.name))
		}
		copy(l, old[:4*count])
		h.freeCell(oldList)
	}
	le.PutUint32(l[4*count:], vkOff)
	nk, _ = h.cell(k.off) // the same bytes: cells do not move
	le.PutUint32(nk[0x24:], uint32(count+1))
	le.PutUint32(nk[0x28:], listOff)
	if n := uint32(2 * len(name)); n > le.Uint32(nk[0x3c:]) {
		le.PutUint32(nk[0x3c:], n)
	}
	if n := uint32(len(data)); n > le.Uint32(nk[0x40:]) {
		le.PutUint32(nk[0x40:], n)
	}
	h.changed = true
	return nil
}
