package hive

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestLHHash checks lhHash against the hashes hivexregedit writes in lh
// lists, and that a list AddKey rewrites keeps them.
func TestLHHash(t *testing.T) {
	p := testutil.MergeReg(t, New("SYSTEM"), "[\\Services]\n\n[\\Services\\atapi]\n\n[\\Services\\Tcpip]\n\n[\\Services\\xenvbd]\n\n[\\Services\\{4D36E967-E325}]\n\n")
	b, _ := os.ReadFile(p)
	h, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	svcs, _ := h.Open("Services")
	check := func(want int) {
		t.Helper()
		c, _ := h.cell(svcs.off)
		l, _ := h.cell(le.Uint32(c[0x1c:]))
		if string(l[:2]) != "lh" {
			t.Fatalf("hivex wrote a %q list", l[:2])
		}
		n := int(le.Uint16(l[2:]))
		if n != want {
			t.Fatalf("%d entries, want %d", n, want)
		}
		for i := 0; i < n; i++ {
			k, err := h.nk(le.Uint32(l[4+8*i:]))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := le.Uint32(l[8+8*i:]), lhHash(k.name); got != want {
				t.Errorf("%s: hash %#x in the list, lhHash %#x", k.name, got, want)
			}
		}
	}
	check(4)
	if _, err := h.AddKey(svcs, "viostor"); err != nil {
		t.Fatal(err)
	}
	check(5)
}

// TestAddKeyUnderRI adds keys under a key whose subkeys are indexed by an
// ri list of two lh leaves (as Windows indexes long lists): each goes
// into the leaf its name sorts into, and hivexregedit reads them all.
func TestAddKeyUnderRI(t *testing.T) {
	h, err := Parse(New("SYSTEM"))
	if err != nil {
		t.Fatal(err)
	}
	root := h.Root()
	var offs []uint32
	for _, n := range []string{"b", "d", "f", "h"} {
		k, err := h.AddKey(root, n)
		if err != nil {
			t.Fatal(err)
		}
		offs = append(offs, k.off)
	}
	// Rebuild the root's index as ri -> {lh[b d], lh[f h]}.
	leaf := func(o []uint32, names []string) uint32 {
		var raw []byte
		for i := range o {
			e := make([]byte, 8)
			le.PutUint32(e, o[i])
			le.PutUint32(e[4:], lhHash(names[i]))
			raw = append(raw, e...)
		}
		// writeList inserts one more entry: give it the last and drop it.
		off, err := h.writeList("lh", raw[:len(raw)-8], o[len(o)-1], names[len(names)-1], len(o)-1)
		if err != nil {
			t.Fatal(err)
		}
		return off
	}
	l1, l2 := leaf(offs[:2], []string{"b", "d"}), leaf(offs[2:], []string{"f", "h"})
	ri, err := h.alloc(4 + 8)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := h.cell(ri)
	copy(c, "ri")
	le.PutUint16(c[2:], 2)
	le.PutUint32(c[4:], l1)
	le.PutUint32(c[8:], l2)
	rc, _ := h.cell(root.off)
	le.PutUint32(rc[0x1c:], ri)

	for _, n := range []string{"a", "e", "z", "c"} {
		if _, err := h.AddKey(h.Root(), n); err != nil {
			t.Fatalf("adding %s: %v", n, err)
		}
	}
	ks, err := h.Root().Subkeys()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, k := range ks {
		names = append(names, k.Name())
	}
	if got := strings.Join(names, ""); got != "abcdefhz" {
		t.Errorf("subkeys %q, want abcdefhz", got)
	}
	rc, _ = h.cell(h.Root().off)
	if le.Uint32(rc[0x1c:]) != ri || le.Uint32(rc[0x14:]) != 8 {
		t.Errorf("root list %#x (ri at %#x), %d subkeys", le.Uint32(rc[0x1c:]), ri, le.Uint32(rc[0x14:]))
	}
	for i, want := range []string{"abcd", "efhz"} {
		var leafKeys []Key
		if err := h.subkeyList(le.Uint32(c[4+4*i:]), 1, &leafKeys); err != nil {
			t.Fatal(err)
		}
		var got string
		for _, k := range leafKeys {
			got += k.Name()
		}
		if got != want {
			t.Errorf("leaf %d holds %q, want %q", i, got, want)
		}
	}
	p := filepath.Join(t.TempDir(), "SYSTEM")
	if err := os.WriteFile(p, h.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m := testutil.RegExport(t, p)
	for _, n := range []string{"a", "b", "c", "d", "e", "f", "h", "z"} {
		if m[n] != "(key)" {
			t.Errorf("hivexregedit --export lacks key %s: %v", n, m)
		}
	}
}
