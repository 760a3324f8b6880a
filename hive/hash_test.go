package hive

import (
	"os"
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
