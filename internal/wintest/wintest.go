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
	return writeTree(t, "virtio-win", perDriverFiles(""))
}

// perDriverFiles are VirtioWinTree's files, their paths under prefix.
func perDriverFiles(prefix string) map[string]string {
	files := map[string]string{}
	write := func(p, content string) { files[prefix+p] = content }
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
	if prefix == "" {
		write("guest-agent/qemu-ga-x86_64.msi", "msi\r\n")
		write("virtio-win-gt-x64.msi", "msi\r\n")
		write("virtio-win-guest-tools.exe", "exe\r\n")
		write("virtio-win_license.txt", "license\r\n")
	}
	return files
}

// VirtioWinRPMNew writes a folder shaped like /usr/share/virtio-win of
// the later virtio-win RPMs (Fedora, RHEL 8 and later) without their ISO:
// drivers/by-driver in VirtioWinTree's layout (viostor/2k8/amd64) and
// drivers/by-os/ARCH/OS (amd64/2k8, i386/2k3) holding each Windows's
// drivers flat.
func VirtioWinRPMNew(t testing.TB) string {
	t.Helper()
	files := perDriverFiles("drivers/by-driver/")
	for _, a := range []string{"i386", "amd64"} {
		for _, o := range []string{"2k3", "2k8", "2k8R2", "w10"} {
			if o == "2k8R2" && a == "i386" {
				continue
			}
			flatDrivers(files, "drivers/by-os/"+a+"/"+o, "by-os "+o+" "+a, map[string]string{"i386": "x86", "amd64": "amd64"}[a], "viostor", "netkvm", "balloon")
		}
	}
	return writeTree(t, "virtio-win", files)
}

// writeTree writes files (slash-separated path to content) under a new
// folder dir of t's temporary folder and returns it.
func writeTree(t testing.TB, dir string, files map[string]string) string {
	t.Helper()
	dir = filepath.Join(t.TempDir(), dir)
	for p, content := range files {
		p = filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// flatDrivers adds, in folder, the files of the drivers bases (viostor,
// netkvm, balloon, vioscsi, vioser) side by side, as the folders that hold
// several drivers do; tag goes into the contents so that a test can tell
// which folder a copied file came from.
func flatDrivers(files map[string]string, folder, tag, arch string, bases ...string) {
	for _, b := range bases {
		files[folder+"/"+b+".inf"] = virtioINF(b, tag, arch)
		for _, ext := range []string{".sys", ".cat", ".pdb"} {
			files[folder+"/"+b+ext] = b + " " + tag + ext + "\r\n"
		}
	}
}

// VirtioWinRPM writes a folder shaped like /usr/share/virtio-win of the
// RHEL 6 and 7 virtio-win RPMs without their ISO: drivers/ARCH/WinOS,
// ARCH i386 or amd64 and WinOS Win2003, Win2008, Win2008R2 (amd64 only:
// there is no 32-bit 2008 R2), Win7 and Win8, each holding viostor,
// netkvm, vioscsi and balloon flat, as the RPM's spec copies them from the
// ISO; the guest-agent MSIs beside drivers/. A test adds virtio-win.iso
// (a link to the versioned ISO, as in the RPM) when it needs one.
func VirtioWinRPM(t testing.TB) string {
	t.Helper()
	files := map[string]string{
		"guest-agent/qemu-ga-x86.msi":    "msi\r\n",
		"guest-agent/qemu-ga-x86_64.msi": "msi\r\n",
	}
	for _, a := range []string{"i386", "amd64"} {
		for _, o := range []string{"Win2003", "Win2008", "Win2008R2", "Win7", "Win8"} {
			if o == "Win2008R2" && a == "i386" {
				continue
			}
			bases := []string{"viostor", "netkvm", "vioscsi", "balloon"}
			if o == "Win2003" {
				bases = []string{"viostor", "netkvm", "balloon"}
			}
			flatDrivers(files, "drivers/"+a+"/"+o, o+" "+a, map[string]string{"i386": "x86", "amd64": "amd64"}[a], bases...)
		}
	}
	return writeTree(t, "virtio-win", files)
}

// VirtioWinOld writes a folder shaped like the virtio-win ISOs before
// 0.1.100 (0.1-22 to 0.1-81): top folders named after the Windows builds,
// each with X86 and AMD64 holding several drivers flat. viostor for 2003
// is in WNET, for Vista/2008 in WLH, for XP (32-bit) in WXP; NetKVM for
// XP and 2003 in XP, for Vista and 2008 in VISTA; WIN7 holds Windows 7 and
// 2008 R2's drivers, all of them.
func VirtioWinOld(t testing.TB) string {
	t.Helper()
	files := map[string]string{}
	for _, a := range []string{"X86", "AMD64"} {
		arch := strings.ToLower(a)
		flatDrivers(files, "WNET/"+a, "WNET "+a, arch, "viostor", "vioscsi", "balloon", "vioser")
		flatDrivers(files, "WLH/"+a, "WLH "+a, arch, "viostor", "vioscsi", "balloon", "vioser")
		flatDrivers(files, "XP/"+a, "XP "+a, arch, "netkvm")
		flatDrivers(files, "VISTA/"+a, "VISTA "+a, arch, "netkvm")
		flatDrivers(files, "WIN7/"+a, "WIN7 "+a, arch, "viostor", "netkvm", "vioscsi", "balloon", "vioser")
		files["VISTA/"+a+"/netkvmco.dll"] = "netkvmco VISTA\r\n"
	}
	flatDrivers(files, "WXP/X86", "WXP X86", "x86", "viostor", "balloon", "vioser")
	files["readme.txt"] = "virtio-win\r\n"
	return writeTree(t, "virtio-win-0.1-81", files)
}

// VirtioWinEarly writes a folder shaped like the earliest virtio-win ISOs
// (0.1-22 and about), as the RPM specs that repacked them into
// drivers/ARCH/Win2003 and Win2008 show: only XP (XP and 2003) and WIN7
// (Vista, 2008 and 7), each with X86 and AMD64 holding viostor and netkvm
// flat.
func VirtioWinEarly(t testing.TB) string {
	t.Helper()
	files := map[string]string{}
	for _, o := range []string{"XP", "WIN7"} {
		for _, a := range []string{"X86", "AMD64"} {
			flatDrivers(files, o+"/"+a, o+" "+a, strings.ToLower(a), "viostor", "netkvm")
		}
	}
	return writeTree(t, "virtio-win-0.1-22", files)
}

// virtioINF is a short .inf naming the driver's service and the PCI IDs
// of its device, as virtio-win's own do (viostor's as viostor.inx does
// since 2018: the transitional and the modern device, each with its
// compatible ID).
func virtioINF(base, osName, arch string) string {
	ids := map[string][]string{
		"viostor": {`PCI\VEN_1AF4&DEV_1001&SUBSYS_00021AF4&REV_00, PCI\VEN_1AF4&DEV_1001`, `PCI\VEN_1AF4&DEV_1042&SUBSYS_11001AF4&REV_01, PCI\VEN_1AF4&DEV_1042`},
		"netkvm":  {`PCI\VEN_1AF4&DEV_1000&SUBSYS_00011AF4`},
		"balloon": {`PCI\VEN_1AF4&DEV_1002&SUBSYS_00051AF4`},
		"vioscsi": {`PCI\VEN_1AF4&DEV_1004&SUBSYS_00081AF4`},
	}
	section := map[string]string{"x86": "NTx86", "amd64": "NTamd64"}[arch]
	lines := []string{
		"; " + base + " for " + osName + " " + arch + " (test fixture)",
		"[Version]",
		`Signature="$Windows NT$"`,
		"CatalogFile=" + base + ".cat",
		"[Manufacturer]",
		"%RHEL% = RHEL," + section,
		"[RHEL." + section + "]",
	}
	for _, id := range ids[base] {
		lines = append(lines, "%Desc% = "+base+"_inst, "+id)
	}
	return strings.Join(append(lines,
		"["+base+"_inst.Services]",
		"AddService = "+base+", 0x00000002, "+base+"_service",
		"[Strings]",
		`RHEL = "Red Hat, Inc."`,
		`Desc = "`+base+`"`,
	), "\r\n") + "\r\n"
}
