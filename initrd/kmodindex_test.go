package initrd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestIndexesAsKmodReadsThem writes modules.dep.bin and modules.alias.bin
// from the text files depmod made for Debian's virtio and Xen modules,
// and has kmod's modprobe (which reads only the binary indexes) resolve
// every module and a device alias of each, in a tree with depmod's own
// indexes and in one with ours: the answers must be the same.
func TestIndexesAsKmodReadsThem(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test kernel")
	}
	k := testkernel.ForTest(t)
	depmod := testutil.NeedTool(t, "depmod")
	modprobe := testutil.NeedTool(t, "modprobe")
	const rel = "2.6.32-431.el6.x86_64"
	mods := []string{"drivers/virtio/virtio.ko", "drivers/virtio/virtio_ring.ko", "drivers/virtio/virtio_pci.ko",
		"drivers/virtio/virtio_pci_modern_dev.ko", "drivers/virtio/virtio_pci_legacy_dev.ko",
		"drivers/block/virtio_blk.ko", "drivers/net/virtio_net.ko", "drivers/net/net_failover.ko",
		"net/core/failover.ko", "drivers/block/xen-blkfront.ko", "fs/ext4/ext4.ko", "fs/jbd2/jbd2.ko",
		"fs/mbcache.ko", "lib/crc16.ko"}
	tree := func() string {
		root := t.TempDir()
		for _, m := range mods {
			dst := filepath.Join(root, "lib/modules", rel, "kernel", m)
			os.MkdirAll(filepath.Dir(dst), 0o755)
			b, err := os.ReadFile(filepath.Join(k.ModulesDir, "kernel", m))
			if err != nil {
				t.Fatal(err)
			}
			os.WriteFile(dst, b, 0o644)
		}
		if out, err := exec.Command(depmod, "-b", root, rel).CombinedOutput(); err != nil {
			t.Fatalf("depmod: %v\n%s", err, out)
		}
		return root
	}
	theirs, ours := tree(), tree()
	dir := filepath.Join(ours, "lib/modules", rel)
	depText, _ := os.ReadFile(filepath.Join(dir, "modules.dep"))
	aliasText, _ := os.ReadFile(filepath.Join(dir, "modules.alias"))
	dep, err := ParseModulesDep(depText)
	if err != nil {
		t.Fatal(err)
	}
	depBin, order, err := depIndex(dep)
	if err != nil {
		t.Fatal(err)
	}
	aliasBin, err := aliasIndex(aliasText, order)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "modules.dep.bin"), depBin, 0o644)
	os.WriteFile(filepath.Join(dir, "modules.alias.bin"), aliasBin, 0o644)

	ask := func(root string, args ...string) string {
		out, err := exec.Command(modprobe, append([]string{"-d", root, "-S", rel}, args...)...).CombinedOutput()
		s := strings.ReplaceAll(string(out), root, "ROOT")
		if err != nil {
			s += "error: " + err.Error()
		}
		return s
	}
	queries := [][]string{}
	for _, p := range dep.Paths() {
		queries = append(queries, []string{"--show-depends", ModuleName(p)})
	}
	// A device of each kind: a virtio PCI function, a virtio disk and
	// NIC, a Xen disk, and the dashed alias of a filesystem.
	for _, a := range []string{"pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "virtio:d00000002v00001AF4",
		"virtio:d00000001v00001AF4", "xen:vbd", "fs-ext4", "fs_ext4", "virtio:d00000009v00001AF4"} {
		queries = append(queries, []string{"-R", a})
	}
	for _, q := range queries {
		want, got := ask(theirs, q...), ask(ours, q...)
		if got != want {
			t.Errorf("modprobe %v: depmod's index gives\n%s\nours gives\n%s", q, want, got)
		}
	}
	// indexLookup reads depmod's index as modprobe does.
	theirBin, _ := os.ReadFile(filepath.Join(theirs, "lib/modules", rel, "modules.dep.bin"))
	for _, p := range dep.Paths() {
		v, ok, err := indexLookup(theirBin, ModuleName(p))
		if err != nil || !ok || !strings.HasPrefix(v, p+":") {
			t.Errorf("indexLookup(%s) in depmod's index = %q, %v, %v", ModuleName(p), v, ok, err)
		}
	}
	if v, ok, err := indexLookup(theirBin, "virtio_bl"); ok || err != nil {
		t.Errorf("indexLookup of a prefix: %q %v %v", v, ok, err)
	}
	if got := ask(ours, "-R", "virtio:d00000002v00001AF4"); got != "virtio_blk\n" {
		t.Errorf("virtio disk alias resolves to %q", got)
	}
}
