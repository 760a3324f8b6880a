package guestgen

import (
	"bytes"
	"debug/elf"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// A module is one kernel module file as it is placed into a guest's
// /lib/modules/RELEASE tree: Src is the Debian .ko, Rel its path under the
// release directory (kernel/...).
type module struct {
	Name string   // the module's own name (its .modinfo name=)
	Src  string   // source file on the host
	Rel  string   // path under /lib/modules/RELEASE
	Deps []string // module names from .modinfo depends=
}

// moduleSet lists the modules a guest kernel tree gets, in Debian paths
// relative to the test kernel's module directory, and where they go in the
// guest. The Xen drivers are renamed as RHEL 5 names them (xenblk.ko,
// xennet.ko); everything else keeps the 6.1 file name (ext4.ko stands in
// for RHEL 5's ext3.ko, jbd2.ko for jbd.ko). ext4 asks the crypto layer
// for crc32c when it mounts, so crc32c_generic goes wherever ext4 goes.
var (
	fsModules = map[string]string{
		"kernel/crypto/crc32c_generic.ko": "kernel/crypto/crc32c_generic.ko",
		"kernel/lib/crc16.ko":             "kernel/lib/crc16.ko",
		"kernel/fs/mbcache.ko":            "kernel/fs/mbcache.ko",
		"kernel/fs/jbd2/jbd2.ko":          "kernel/fs/jbd2/jbd2.ko",
		"kernel/fs/ext4/ext4.ko":          "kernel/fs/ext4/ext4.ko",
		"kernel/drivers/md/dm-mod.ko":     "kernel/drivers/md/dm-mod.ko",
	}
	// acpiModules let acpid see the ACPI power button.
	acpiModules = map[string]string{
		"kernel/drivers/acpi/button.ko": "kernel/drivers/acpi/button.ko",
		"kernel/drivers/input/evdev.ko": "kernel/drivers/input/evdev.ko",
	}
	xenModules = map[string]string{
		"kernel/drivers/block/xen-blkfront.ko": "kernel/drivers/xen/blkfront/xenblk.ko",
		"kernel/drivers/net/xen-netfront.ko":   "kernel/drivers/xen/netfront/xennet.ko",
	}
	virtioModules = map[string]string{
		"kernel/drivers/virtio/virtio.ko":                "kernel/drivers/virtio/virtio.ko",
		"kernel/drivers/virtio/virtio_ring.ko":           "kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_pci.ko":            "kernel/drivers/virtio/virtio_pci.ko",
		"kernel/drivers/virtio/virtio_pci_modern_dev.ko": "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko": "kernel/drivers/virtio/virtio_pci_legacy_dev.ko",
		"kernel/drivers/block/virtio_blk.ko":             "kernel/drivers/block/virtio_blk.ko",
		"kernel/drivers/net/virtio_net.ko":               "kernel/drivers/net/virtio_net.ko",
		"kernel/drivers/net/net_failover.ko":             "kernel/drivers/net/net_failover.ko",
		"kernel/net/core/failover.ko":                    "kernel/net/core/failover.ko",
	}
)

// loadModules reads the .modinfo of each listed module under modDir.
func loadModules(modDir string, sets ...map[string]string) (map[string]*module, error) {
	mods := make(map[string]*module)
	for _, set := range sets {
		for src, rel := range set {
			m, err := readModinfo(filepath.Join(modDir, src))
			if err != nil {
				return nil, err
			}
			m.Rel = rel
			mods[m.Name] = m
		}
	}
	for _, m := range mods {
		for _, d := range m.Deps {
			if mods[d] == nil {
				return nil, fmt.Errorf("module %s needs %s, which the guest tree lacks", m.Name, d)
			}
		}
	}
	return mods, nil
}

// readModinfo returns the name and dependencies recorded in a module's
// .modinfo section.
func readModinfo(path string) (*module, error) {
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", path, err)
	}
	defer f.Close()
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, fmt.Errorf("reading module %s: no .modinfo section", path)
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading module %s: %w", path, err)
	}
	m := parseModinfo(data)
	m.Src = path
	if m.Name == "" {
		m.Name = strings.ReplaceAll(strings.TrimSuffix(filepath.Base(path), ".ko"), "-", "_")
	}
	return m, nil
}

// parseModinfo reads the NUL-separated key=value pairs of a .modinfo
// section: the module's name and its depends= list.
func parseModinfo(data []byte) *module {
	m := &module{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, ok := strings.Cut(string(kv), "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			m.Name = v
		case "depends":
			m.Deps = nil
			for _, d := range strings.Split(v, ",") {
				if d != "" {
					m.Deps = append(m.Deps, d)
				}
			}
		}
	}
	return m
}

// loadOrder returns the named modules and everything they need, each
// dependency before its users.
func loadOrder(mods map[string]*module, names ...string) ([]*module, error) {
	var order []*module
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(string) error
	visit = func(n string) error {
		m := mods[n]
		if m == nil {
			return fmt.Errorf("module %s is not in the guest tree", n)
		}
		switch state[n] {
		case 1:
			return fmt.Errorf("module dependency cycle at %s", n)
		case 2:
			return nil
		}
		state[n] = 1
		deps := append([]string(nil), m.Deps...)
		sort.Strings(deps)
		for _, d := range deps {
			if err := visit(d); err != nil {
				return err
			}
		}
		state[n] = 2
		order = append(order, m)
		return nil
	}
	for _, n := range names {
		if err := visit(n); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// installModules copies the modules into root/lib/modules/release and
// writes an old-style (module-init-tools 3.3, as on RHEL 5) modules.dep:
// absolute paths, every module on its own line, all of its dependencies
// transitively, listed in the reverse of load order as modprobe of that
// era loads them from the end of the list.
func installModules(root, release string, mods map[string]*module) error {
	base := "/lib/modules/" + release
	dir := filepath.Join(root, base)
	names := make([]string, 0, len(mods))
	for n, m := range mods {
		names = append(names, n)
		if err := copyFile(m.Src, filepath.Join(dir, m.Rel), 0o744); err != nil {
			return err
		}
	}
	sort.Slice(names, func(i, j int) bool { return mods[names[i]].Rel < mods[names[j]].Rel })
	var dep bytes.Buffer
	for _, n := range names {
		order, err := loadOrder(mods, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(&dep, "%s/%s:", base, mods[n].Rel)
		for i := len(order) - 2; i >= 0; i-- {
			fmt.Fprintf(&dep, " %s/%s", base, order[i].Rel)
		}
		dep.WriteString("\n")
	}
	return os.WriteFile(filepath.Join(dir, "modules.dep"), dep.Bytes(), 0o644)
}
