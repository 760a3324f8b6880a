// Package wintest builds the Windows guests the tests use
// (guestgen.BuildWindows), skipping a test (failing it under CI) when the
// tools or root are missing.
package wintest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// Build builds w into a temporary folder of t.
func Build(t testing.TB, w guestgen.WindowsSpec) *guestgen.Guest {
	t.Helper()
	for _, tool := range guestgen.WindowsTools {
		testutil.NeedTool(t, tool)
	}
	testutil.NeedTool(t, "ntfsinfo")
	testutil.NeedRoot(t, "building an NTFS fixture needs root for the ntfs-3g mount")
	g, err := guestgen.BuildWindows(context.Background(), t.TempDir(), w)
	if err != nil {
		t.Fatalf("building Windows guest %s: %v", w.Name, err)
	}
	return g
}

// VirtioWinTree writes a folder shaped like the virtio-win ISO of the
// builds that still carry Windows 2003 (0.1.100 to 0.1.190): per driver
// and OS folder (2k3, 2k8, w10), x86 and amd64, the files virtio-win
// ships there (.inf, .sys, .cat, .pdb; netkvmco.dll for 2k8), other
// drivers beside them (Balloon, vioscsi) and the installers at the top,
// which need Windows 8 or later. The files hold short placeholder text,
// the .inf files the hardware IDs and service of the real ones.
func VirtioWinTree(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "virtio-win")
	write := func(p, content string) {
		p = filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	type drv struct{ folder, base string }
	for _, d := range []drv{{"viostor", "viostor"}, {"NetKVM", "netkvm"}, {"Balloon", "balloon"}, {"vioscsi", "vioscsi"}} {
		for _, o := range []string{"2k3", "2k8", "w10"} {
			if d.folder == "vioscsi" && o == "2k3" {
				continue // vioscsi was never built for 2003
			}
			for _, a := range []string{"x86", "amd64"} {
				p := d.folder + "/" + o + "/" + a + "/" + d.base
				write(p+".inf", virtioINF(d.base, o, a))
				for _, ext := range []string{".sys", ".cat", ".pdb"} {
					write(p+ext, d.base+" "+o+" "+a+ext+"\r\n")
				}
				if d.base == "netkvm" && o != "2k3" {
					write(d.folder+"/"+o+"/"+a+"/netkvmco.dll", "netkvmco\r\n")
				}
			}
		}
	}
	write("guest-agent/qemu-ga-x86_64.msi", "msi\r\n")
	write("virtio-win-gt-x64.msi", "msi\r\n")
	write("virtio-win-guest-tools.exe", "exe\r\n")
	write("virtio-win_license.txt", "license\r\n")
	return dir
}

// virtioINF is a short .inf naming the driver's service and the PCI IDs
// of its device, as virtio-win's own do.
func virtioINF(base, osName, arch string) string {
	ids := map[string]string{
		"viostor": `PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4`,
		"netkvm":  `PCI\VEN_1AF4&DEV_1000&SUBSYS_00011AF4`,
		"balloon": `PCI\VEN_1AF4&DEV_1002&SUBSYS_00051AF4`,
		"vioscsi": `PCI\VEN_1AF4&DEV_1004&SUBSYS_00081AF4`,
	}
	section := map[string]string{"x86": "NTx86", "amd64": "NTamd64"}[arch]
	return strings.Join([]string{
		"; " + base + " for " + osName + " " + arch + " (test fixture)",
		"[Version]",
		`Signature="$Windows NT$"`,
		"CatalogFile=" + base + ".cat",
		"[Manufacturer]",
		"%RHEL% = RHEL," + section,
		"[RHEL." + section + "]",
		"%Desc% = " + base + "_inst, " + ids[base],
		"[" + base + "_inst.Services]",
		"AddService = " + base + ", 0x00000002, " + base + "_service",
		"[Strings]",
		`RHEL = "Red Hat, Inc."`,
		`Desc = "` + base + `"`,
	}, "\r\n") + "\r\n"
}
