package hive

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
)

// EncodeSZ is the REG_SZ (or REG_EXPAND_SZ) data of s: UTF-16LE ended by
// a NUL.
func EncodeSZ(s string) []byte {
	b := EncodeMultiSZ([]string{s})
	return b[:len(b)-2] // one NUL, not the list's two
}

// Free is the number of bytes in the hive's free cells: the most that
// AddKey and AddValue can take (less, as cells are not merged).
func (h *Hive) Free() int {
	n := 0
	for off := hbinStart; off < h.end; {
		size := int(le.Uint32(h.b[off+8:]))
		for c := off + 32; c < off+size; {
			s := int(int32(le.Uint32(h.b[c:])))
			if s > 0 {
				n += s
			} else {
				s = -s
			}
			c += s
		}
		off += size
	}
	return n
}

// keyOrder is how Windows orders the subkeys in a list: by name in upper
// case.
func keyOrder(a, b string) int { return strings.Compare(strings.ToUpper(a), strings.ToUpper(b)) }

// lhHash is an lh list entry's hash of a key name.
func lhHash(name string) uint32 {
	var h uint32
	for _, c := range utf16.Encode([]rune(strings.ToUpper(name))) {
		h = h*37 + uint32(c)
	}
	return h
}

// AddKey adds a subkey named name (ASCII) to k in the hive's free space:
// an nk cell that shares k's security descriptor (whose reference count
// it raises), and k's subkey list one entry longer, in Windows' order,
// which replaces the old list (freed). The file does not grow: without
// enough free space it returns ErrNoRoom and changes nothing; with a
// subkey of that name already there, ErrExists.
func (h *Hive) AddKey(k Key, name string) (Key, error) {
	if k.h != h {
		return Key{}, errors.New("key is from another hive")
	}
	if name == "" || len(name) > 255 || strings.Contains(name, `\`) {
		return Key{}, fmt.Errorf("key name %q: empty, too long or with a backslash", name)
	}
	for _, r := range name {
		if r < 0x20 || r > 0x7e {
			return Key{}, fmt.Errorf("key name %q: only printable ASCII names are written", name)
		}
	}
	subs, err := k.Subkeys()
	if err != nil {
		return Key{}, err
	}
	for _, s := range subs {
		if strings.EqualFold(s.name, name) {
			return Key{}, fmt.Errorf("%s\\%s: %w", k.name, name, ErrExists)
		}
	}
	saved := append([]byte(nil), h.b...)
	changed := h.changed
	fail := func(err error) (Key, error) {
		h.b, h.changed = saved, changed
		return Key{}, fmt.Errorf("adding key %s\\%s: %w", k.name, name, err)
	}
	parent, _ := h.cell(k.off)
	sk := le.Uint32(parent[0x2c:])
	skc, err := h.cell(sk)
	if err != nil || len(skc) < 0x10 || string(skc[:2]) != "sk" {
		return fail(fmt.Errorf("%w: no security cell at %#x", ErrFormat, sk))
	}

	nkOff, err := h.alloc(0x4c + len(name))
	if err != nil {
		return fail(err)
	}
	nk, _ := h.cell(nkOff)
	parent, _ = h.cell(k.off)
	copy(nk, "nk")
	le.PutUint16(nk[2:], 0x20)          // compressed (ASCII) name
	copy(nk[4:12], parent[4:12])        // last written: as the parent
	le.PutUint32(nk[0x10:], k.off)      // parent
	le.PutUint32(nk[0x1c:], 0xffffffff) // no subkey list
	le.PutUint32(nk[0x20:], 0xffffffff) // no volatile subkey list
	le.PutUint32(nk[0x28:], 0xffffffff) // no value list
	le.PutUint32(nk[0x2c:], sk)
	le.PutUint32(nk[0x30:], 0xffffffff) // no class name
	le.PutUint16(nk[0x48:], uint16(len(name)))
	copy(nk[0x4c:], name)
	skc, _ = h.cell(sk)
	le.PutUint32(skc[0x0c:], le.Uint32(skc[0x0c:])+1)

	if err := h.insertSubkey(k, nkOff, name); err != nil {
		return fail(err)
	}
	parent, _ = h.cell(k.off)
	le.PutUint32(parent[0x14:], le.Uint32(parent[0x14:])+1)
	if n := uint16(2 * len(name)); n > le.Uint16(parent[0x34:]) {
		le.PutUint16(parent[0x34:], n)
	}
	h.changed = true
	return Key{h: h, off: nkOff, name: name}, nil
}

// insertSubkey puts the new key nkOff into k's subkey list: a new list
// cell (lf/lh/li as the old one, lh or lf by the hive's version for a
// key without subkeys) replaces the old, or, under an ri index, the leaf
// list the name sorts into.
func (h *Hive) insertSubkey(k Key, nkOff uint32, name string) error {
	parent, _ := h.cell(k.off)
	if le.Uint32(parent[0x14:]) == 0 {
		kind := "lf"
		// lh lists came with hive version 1.5; a 1.3 hive (the SYSTEM hive
		// of NT 5, which NTLDR reads) gets an lf list.
		if le.Uint32(h.b[0x18:]) >= 5 {
			kind = "lh"
		}
		off, err := h.writeList(kind, nil, nkOff, name, 0)
		if err != nil {
			return err
		}
		parent, _ = h.cell(k.off)
		le.PutUint32(parent[0x1c:], off)
		return nil
	}
	listOff := le.Uint32(parent[0x1c:])
	l, err := h.cell(listOff)
	if err != nil {
		return err
	}
	if len(l) < 4 {
		return fmt.Errorf("%w: short subkey list at %#x", ErrFormat, listOff)
	}
	if string(l[:2]) != "ri" {
		newOff, err := h.relist(listOff, nkOff, name)
		if err != nil {
			return err
		}
		parent, _ = h.cell(k.off)
		le.PutUint32(parent[0x1c:], newOff)
		h.freeCell(listOff)
		return nil
	}
	// An index of leaf lists: the name goes into the first leaf whose
	// last key sorts after it, or the last leaf.
	n := int(le.Uint16(l[2:]))
	if n == 0 || 4+4*n > len(l) {
		return fmt.Errorf("%w: ri list at %#x", ErrFormat, listOff)
	}
	pick := n - 1
	for i := 0; i < n; i++ {
		var ks []Key
		if err := h.subkeyList(le.Uint32(l[4+4*i:]), 1, &ks); err != nil {
			return err
		}
		if len(ks) > 0 && keyOrder(ks[len(ks)-1].name, name) > 0 {
			pick = i
			break
		}
	}
	leaf := le.Uint32(l[4+4*pick:])
	newOff, err := h.relist(leaf, nkOff, name)
	if err != nil {
		return err
	}
	l, _ = h.cell(listOff)
	le.PutUint32(l[4+4*pick:], newOff)
	h.freeCell(leaf)
	return nil
}

// relist writes a copy of the leaf list at off with the new key in its
// place and returns the copy's offset. The old entries keep their bytes
// (offset and hint or hash).
func (h *Hive) relist(off, nkOff uint32, name string) (uint32, error) {
	var ks []Key
	if err := h.subkeyList(off, 1, &ks); err != nil {
		return 0, err
	}
	l, _ := h.cell(off)
	kind, step := string(l[:2]), listStep(string(l[:2]))
	at := len(ks)
	for i, s := range ks {
		if keyOrder(s.name, name) > 0 {
			at = i
			break
		}
	}
	old := append([]byte(nil), l[4:4+step*len(ks)]...)
	return h.writeList(kind, old, nkOff, name, at)
}

func listStep(kind string) int {
	if kind == "li" {
		return 4
	}
	return 8
}

// writeList allocates a subkey list of kind holding the raw entries old
// with an entry for the new key inserted at index at.
func (h *Hive) writeList(kind string, old []byte, nkOff uint32, name string, at int) (uint32, error) {
	step := listStep(kind)
	n := len(old)/step + 1
	if n > 0xffff {
		return 0, fmt.Errorf("%w: %d subkeys in one list", ErrNoRoom, n)
	}
	off, err := h.alloc(4 + step*n)
	if err != nil {
		return 0, err
	}
	l, _ := h.cell(off)
	copy(l, kind)
	le.PutUint16(l[2:], uint16(n))
	copy(l[4:], old[:step*at])
	e := l[4+step*at:]
	le.PutUint32(e, nkOff)
	switch kind {
	case "lf":
		copy(e[4:8], name) // the name's first four characters, NUL-padded
	case "lh":
		le.PutUint32(e[4:], lhHash(name))
	}
	copy(l[4+step*(at+1):], old[step*at:])
	return off, nil
}
