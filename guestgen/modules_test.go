package guestgen

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testkernel"
)

func TestParseModinfo(t *testing.T) {
	for _, tc := range []struct {
		in   string
		name string
		deps []string
	}{
		{"license=GPL\x00depends=virtio_ring,virtio\x00name=virtio_blk\x00", "virtio_blk", []string{"virtio_ring", "virtio"}},
		{"depends=\x00name=xen_blkfront\x00", "xen_blkfront", nil},
		{"depends=a,,b\x00", "", []string{"a", "b"}},
		{"garbage", "", nil},
	} {
		m := parseModinfo([]byte(tc.in))
		if m.Name != tc.name || !reflect.DeepEqual(m.Deps, tc.deps) {
			t.Errorf("parseModinfo(%q) = %q %q, want %q %q", tc.in, m.Name, m.Deps, tc.name, tc.deps)
		}
	}
}

// FuzzParseModinfo: any section parses, and the dependency names it
// yields are never empty.
func FuzzParseModinfo(f *testing.F) {
	f.Add([]byte("license=GPL\x00depends=virtio_ring,virtio\x00name=virtio_blk\x00"))
	if k, err := testkernel.Get(f.Context()); err == nil {
		if m, err := os.ReadFile(filepath.Join(k.ModulesDir, "kernel/drivers/block/virtio_blk.ko")); err == nil {
			if i := strings.Index(string(m), "depends="); i >= 0 {
				f.Add(m[max(0, i-200):min(len(m), i+200)])
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := parseModinfo(data)
		for _, d := range m.Deps {
			if d == "" {
				t.Fatalf("empty dependency from %q", data)
			}
		}
	})
}

// TestLoadOrder checks the virtio chain against the real modules: every
// module after all it depends on.
func TestLoadOrder(t *testing.T) {
	k := testkernel.ForTest(t)
	mods, err := kernelModules(k.ModulesDir, "2.6.18-164.el5")
	if err != nil {
		t.Fatal(err)
	}
	order, err := loadOrder(mods, "virtio_net", "virtio_blk", "virtio_pci", "ext4")
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, m := range order {
		pos[m.Name] = i
	}
	for _, m := range order {
		for _, d := range m.Deps {
			if pos[d] >= pos[m.Name] {
				t.Errorf("%s loads before its dependency %s", m.Name, d)
			}
		}
	}
	for _, n := range []string{"virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "failover", "jbd2", "mbcache", "crc16"} {
		if _, ok := pos[n]; !ok {
			t.Errorf("%s missing from the load order", n)
		}
	}
	if _, err := loadOrder(mods, "xen_blkfront"); err == nil {
		t.Error("the el5 tree has the Xen block driver")
	}
}
