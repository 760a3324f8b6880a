package convert

import (
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"

	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
)

func TestKernelPackage(t *testing.T) {
	tests := []struct {
		rel, pkg string
		debug    bool
	}{
		{"2.6.18-164.el5", "kernel", false},
		{"2.6.18-164.el5xen", "kernel-xen", false},
		{"2.6.18-164.el5PAE", "kernel-PAE", false},
		{"2.6.18-164.el5debug", "kernel-debug", true},
		{"2.6.18-164.el5kdump", "kernel-kdump", true},
		{"2.6.18-164.el5PAE-debug", "kernel-PAE-debug", true},
		{"2.6.32-71.el6.x86_64.kdump", "kernel-kdump", true},
		{"2.6.9-89.EL", "kernel", false},
		{"2.6.9-89.ELsmp", "kernel-smp", false},
		{"2.6.9-89.ELxenU", "kernel-xenU", false},
		{"2.6.32-71.el6.x86_64", "kernel", false},
		{"2.6.32-71.el6.x86_64.debug", "kernel-debug", true},
		{"2.6.32-71.el6.i686", "kernel", false},
	}
	for _, tc := range tests {
		pkg, debug := kernelPackage(tc.rel)
		if pkg != tc.pkg || debug != tc.debug {
			t.Errorf("kernelPackage(%q) = %q, %v; want %q, %v", tc.rel, pkg, debug, tc.pkg, tc.debug)
		}
	}
}

func TestChooseKernelNotDebug(t *testing.T) {
	k := func(rel string, virtio bool) Kernel {
		pkg, debug := kernelPackage(rel)
		return Kernel{Release: rel, Package: pkg, Debug: debug, Xen: xenRelease(rel), VirtioBlk: virtio, VirtioNet: virtio}
	}
	tests := []struct {
		name    string
		kernels []Kernel
		want    string
	}{
		{"debug of the same version", []Kernel{k("2.6.18-164.el5debug", true), k("2.6.18-164.el5", true), k("2.6.18-164.el5xen", false)}, "2.6.18-164.el5"},
		{"kdump of the same version", []Kernel{k("2.6.18-164.el5kdump", true), k("2.6.18-164.el5", true)}, "2.6.18-164.el5"},
		{"newer debug", []Kernel{k("2.6.18-194.el5debug", true), k("2.6.18-164.el5", true)}, "2.6.18-164.el5"},
		{"rhel6 debug", []Kernel{k("2.6.32-71.el6.x86_64.debug", true), k("2.6.32-71.el6.x86_64", true)}, "2.6.32-71.el6.x86_64"},
		{"newer PAE", []Kernel{k("2.6.18-164.el5PAE", true), k("2.6.18-194.el5PAE", true)}, "2.6.18-194.el5PAE"},
		{"only debug", []Kernel{k("2.6.18-164.el5debug", true), k("2.6.18-164.el5xen", false)}, "2.6.18-164.el5debug"},
	}
	for _, tc := range tests {
		got, blocker := chooseKernel(&Guest{Kernels: tc.kernels}, true)
		if blocker != "" || got.Release != tc.want {
			t.Errorf("%s: chooseKernel = %v %q, want %s", tc.name, got, blocker, tc.want)
		}
		if got != nil && tc.want == "2.6.18-164.el5" && got.Package != "kernel" {
			t.Errorf("%s: package %s: DEFAULTKERNEL would not stay kernel", tc.name, got.Package)
		}
	}
}

// TestChooseKernelRuleDisabled: without the kernel-choice rule the
// highest release wins, flavour and all: kernel-debug of the same version
// is chosen, as before the rule.
func TestChooseKernelRuleDisabled(t *testing.T) {
	ks := []Kernel{{Release: "2.6.18-164.el5", Package: "kernel", VirtioBlk: true, VirtioNet: true},
		{Release: "2.6.18-164.el5debug", Package: "kernel-debug", Debug: true, VirtioBlk: true, VirtioNet: true},
		{Release: "2.6.18-164.el5xen", Package: "kernel-xen", Xen: true}}
	if got, _ := chooseKernel(&Guest{Kernels: ks}, false); got == nil || got.Release != "2.6.18-164.el5debug" {
		t.Errorf("without the rule: %+v, want the debug kernel", got)
	}
	if got, _ := chooseKernel(&Guest{Kernels: ks}, true); got == nil || got.Release != "2.6.18-164.el5" {
		t.Errorf("with the rule: %+v, want the plain kernel", got)
	}
}

func TestCompareVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"2.6.18-164.el5", "2.6.18-128.el5", 1},
		{"2.6.18-8.el5", "2.6.18-128.el5", -1},
		{"2.6.18-164.el5", "2.6.18-164.el5", 0},
		{"2.6.18-164.2.1.el5", "2.6.18-164.el5", 1},
		{"2.6.32-71.el6.x86_64", "2.6.18-164.el5", 1},
		{"2.6.9-89.EL", "2.6.9-89.ELsmp", -1},
		{"1.010", "1.9", 1},
	}
	for _, tc := range tests {
		if got := compareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
		if got := compareVersions(tc.b, tc.a); got != -tc.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tc.b, tc.a, got, -tc.want)
		}
	}
}

func TestRemap(t *testing.T) {
	r := newRemapper(map[string]string{"xvda": "vda", "xvdb": "vdb", "sdc1": "vdc"})
	tests := []struct {
		in, want string
		ok       bool
	}{
		{"/dev/xvda2", "/dev/vda2", true},
		{"xvdb", "vdb", true},
		{"/dev/hda1", "/dev/vda1", true}, // the same disk under the IDE scheme
		{"/dev/sdc1", "/dev/vdc", true},  // a partition exported as a disk
		{"/dev/sdc2", "/dev/sdc2", false},
		{"/dev/xvdc", "/dev/xvdc", false},
		{"/dev/vda2", "/dev/vda2", false},
		{"LABEL=/", "LABEL=/", false},
		{"UUID=abc", "UUID=abc", false},
		{"/dev/VolGroup00/LogVol00", "/dev/VolGroup00/LogVol00", false},
		{"/dev/mapper/cryptdata", "/dev/mapper/cryptdata", false},
	}
	for _, tc := range tests {
		got, ok := r.remap(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("remap(%q) = %q, %v; want %q, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// TestModulesDepFromModinfo writes modules.dep for Debian's real virtio
// modules from their .modinfo, as depmod would for an RPM's payload.
func TestModulesDepFromModinfo(t *testing.T) {
	if testing.Short() {
		t.Skip("needs the test kernel")
	}
	k := testkernel.ForTest(t)
	files := map[string][]byte{}
	const dir = "lib/modules/2.6.18-164.el5"
	for _, rel := range []string{"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/block/virtio_blk.ko"} {
		b, err := os.ReadFile(filepath.Join(k.ModulesDir, rel))
		if err != nil {
			t.Fatal(err)
		}
		files[dir+"/"+rel] = b
	}
	dep, err := initrd.ParseModulesDep(modulesDep(files, dir))
	if err != nil {
		t.Fatal(err)
	}
	pci, _ := dep.Path("virtio_pci")
	var deps []string
	for _, d := range dep.Deps(pci) {
		deps = append(deps, initrd.ModuleName(d))
	}
	sort.Strings(deps)
	want := []string{"virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_ring"}
	if !slices.Equal(deps, want) {
		t.Errorf("virtio_pci depends on %v, want %v", deps, want)
	}
	if _, err := dep.LoadOrder("virtio_pci", "virtio_blk"); err != nil {
		t.Error(err)
	}
}

func TestPlannerRecord(t *testing.T) {
	c := &planner{files: map[string]*Edit{}, rule: "a"}
	c.record("f", Remove, []byte("old"), nil, 0, "removed")
	c.record("f", Create, nil, []byte("new"), 0o644, "written again")
	if e := c.files["f"]; e.Kind != Modify || string(e.Before) != "old" || string(e.After) != "new" {
		t.Errorf("remove then write: %+v", e)
	}
	c.record("g", Create, nil, []byte("x"), 0o644, "made")
	c.rule = "b"
	c.record("g", Remove, nil, nil, 0, "unmade")
	if e := c.files["g"]; e.Kind != Modify || e.After != nil || e.Rule != "a+b" {
		t.Errorf("create then remove: %+v", e)
	}
}

func TestRewriteLVMFilters(t *testing.T) {
	tests := []struct{ in, want string }{
		{`filter = [ "a/xvd/", "r/.*/" ]` + "\n", `filter = [ "a/xvd/", "a/vd/", "r/.*/" ]` + "\n"},
		{`  global_filter=["a|^/dev/xvda[0-9]$|","r|.*|"]`, `  global_filter=["a|^/dev/xvda[0-9]$|", "a|^/dev/vda[0-9]$|","r|.*|"]`},
		// Reject patterns, comments and other settings stay.
		{`filter = [ "r|/dev/xvdc|", "a|.*|" ]` + "\n", `filter = [ "r|/dev/xvdc|", "a|.*|" ]` + "\n"},
		{`# filter = [ "a/xvd/", "r/.*/" ]` + "\n", `# filter = [ "a/xvd/", "r/.*/" ]` + "\n"},
		{`preferred_names = [ "a/xvd/" ]` + "\n", `preferred_names = [ "a/xvd/" ]` + "\n"},
		// Already rewritten: unchanged.
		{`filter = [ "a/xvd/", "a/vd/", "r/.*/" ]` + "\n", `filter = [ "a/xvd/", "a/vd/", "r/.*/" ]` + "\n"},
		// A list over several lines.
		{"filter = [\n  \"a|xvd|\",\n  \"r|.*|\" ]\nscan = [ \"a|xvd|\" ]\n", "filter = [\n  \"a|xvd|\", \"a|vd|\",\n  \"r|.*|\" ]\nscan = [ \"a|xvd|\" ]\n"},
	}
	for _, tc := range tests {
		got, _ := rewriteLVMFilters([]byte(tc.in), "vd")
		if string(got) != tc.want {
			t.Errorf("rewriteLVMFilters(%q) =\n%q\nwant\n%q", tc.in, got, tc.want)
		}
	}
}
