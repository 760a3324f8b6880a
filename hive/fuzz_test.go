package hive_test

import (
	"testing"

	"github.com/xen2kvm/xen2kvm/hive"
)

// walk reads every key and value below k, as inspection does.
func walk(k hive.Key, depth int) {
	if depth > 20 {
		return
	}
	vs, _ := k.Values()
	for _, v := range vs {
		_, _ = v.Data()
		_, _ = v.DWORD()
		_, _ = v.String()
		_, _ = v.Strings()
	}
	ks, _ := k.Subkeys()
	for _, s := range ks {
		walk(s, depth+1)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(hive.New("SYSTEM"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := hive.Parse(b)
		if err != nil {
			return
		}
		walk(h.Root(), 0)
		vs, _ := h.Root().Values()
		for _, v := range vs {
			before := len(h.Bytes())
			_ = h.SetData(v, []byte{1, 2, 3, 4, 5, 6})
			_ = h.SetDWORD(v, 4)
			if len(h.Bytes()) != before {
				t.Fatal("an edit changed the hive's size")
			}
		}
		before := len(h.Bytes())
		_ = h.AddValue(h.Root(), "fuzz", hive.SZ, []byte("a\x00b\x00c\x00\x00\x00"))
		if len(h.Bytes()) != before {
			t.Fatal("AddValue changed the hive's size")
		}
		if _, err := hive.Parse(h.Bytes()); err != nil {
			t.Fatalf("an edited hive no longer parses: %v", err)
		}
	})
}
