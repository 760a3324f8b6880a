package initrd

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testkernel"
)

// TestRealModules uses Debian's 6.1 kernel modules: their modules.dep
// gives the whole virtio chain in a valid order and their .modinfo gives
// the aliases a dracut initrd needs.
func TestRealModules(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test kernel")
	}
	k := testkernel.ForTest(t)
	// Debian's package has no modules.dep (depmod makes it at install):
	// write an old-style one, as RHEL 5 has, from the modules' .modinfo.
	byName := map[string]string{}
	filepath.WalkDir(k.ModulesDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".ko") {
			byName[ModuleName(p)] = p
		}
		return nil
	})
	var data strings.Builder
	seen := map[string]bool{}
	todo := []string{"virtio_pci", "virtio_blk", "virtio_net"}
	for len(todo) > 0 {
		n := todo[0]
		todo = todo[1:]
		if seen[n] {
			continue
		}
		seen[n] = true
		p, ok := byName[n]
		if !ok {
			t.Fatalf("module %s not in %s", n, k.ModulesDir)
		}
		ko, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		data.WriteString("/lib/modules/" + k.Release + "/" + strings.TrimPrefix(p, k.ModulesDir+"/") + ":")
		for _, ds := range modinfo(ko, "depends") {
			for _, d := range strings.Split(ds, ",") {
				data.WriteString(" /lib/modules/" + k.Release + "/" + strings.TrimPrefix(byName[ModuleName(d)], k.ModulesDir+"/"))
				todo = append(todo, ModuleName(d))
			}
		}
		data.WriteString("\n")
	}
	dep, err := ParseModulesDep([]byte(data.String()))
	if err != nil {
		t.Fatal(err)
	}
	order, err := dep.LoadOrder("virtio_pci", "virtio_blk", "virtio_net")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range order {
		names = append(names, ModuleName(p))
	}
	for _, want := range []string{"virtio", "virtio_ring", "virtio_pci_modern_dev", "virtio_pci_legacy_dev", "virtio_pci", "virtio_blk", "virtio_net"} {
		if !slices.Contains(names, want) {
			t.Errorf("load order %v lacks %s", names, want)
		}
	}
	pos := map[string]int{}
	for i, p := range order {
		pos[p] = i
	}
	for i, p := range order {
		for _, d := range dep.Deps(p) {
			if j, ok := pos[d]; !ok || j > i {
				t.Errorf("%s before its dependency %s", p, d)
			}
		}
	}
	blk, _ := dep.Path("virtio_blk")
	ko, err := os.ReadFile(filepath.Join(k.ModulesDir, blk))
	if err != nil {
		t.Fatal(err)
	}
	aliases := moduleAliases(ko)
	if !slices.ContainsFunc(aliases, func(a string) bool { return strings.HasPrefix(a, "virtio:d00000002v") }) {
		t.Errorf("virtio_blk aliases %v lack virtio:d00000002v*", aliases)
	}
}
