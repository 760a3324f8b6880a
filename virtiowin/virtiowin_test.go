package virtiowin_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
	"github.com/xen2kvm/xen2kvm/virtiowin"
)

// mtools reads the FAT disk back (the oracle): the partition starts at 1 MiB.
func mtools(t *testing.T, tool, img string, args ...string) string {
	t.Helper()
	testutil.NeedTool(t, tool)
	cmd := exec.Command(tool, append([]string{"-i", img + "@@1048576"}, args...)...)
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", tool, args, err, out)
	}
	return string(out)
}

func TestFolderDisk(t *testing.T) {
	src, err := virtiowin.Open(wintest.VirtioWinTree(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d, err := src.Drivers("6.0", "AMD64")
	if err != nil {
		t.Fatal(err)
	}
	if d.Viostor != "viostor/2k8/amd64" || d.NetKVM != "NetKVM/2k8/amd64" || d.ViostorSys != "viostor/2k8/amd64/viostor.sys" {
		t.Errorf("drivers %+v", d)
	}
	if strings.Join(d.Installers, ",") != "virtio-win-gt-x64.msi,virtio-win-guest-tools.exe" {
		t.Errorf("installers %q", d.Installers)
	}
	if m := d.Method(); !strings.Contains(m, "pnputil -i -a") || !strings.Contains(m, "not used: virtio-win-gt-x64.msi, virtio-win-guest-tools.exe") {
		t.Errorf("method: %s", m)
	}
	img := filepath.Join(t.TempDir(), "setup.raw")
	if err := virtiowin.WriteDisk(img, src, d); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(img); fi.Size() != virtiowin.DiskSize {
		t.Errorf("disk is %d bytes", fi.Size())
	}
	dump := string(testutil.Run(t, "sfdisk", "--dump", img))
	if !strings.Contains(dump, "start=        2048") || !strings.Contains(dump, "type=c") {
		t.Errorf("partition table:\n%s", dump)
	}
	if out := mtools(t, "minfo", img); !strings.Contains(out, "XEN2KVM") || !strings.Contains(out, `disk type="FAT32   "`) {
		t.Errorf("minfo:\n%s", out)
	}
	fsck(t, img)
	script := mtools(t, "mtype", img, "::XEN2KVM/FIRSTBOOT.CMD")
	for _, want := range []string{`pnputil -i -a "%SRC%viostor\2k8\amd64\viostor.inf"`, `pnputil -i -a "%SRC%NetKVM\2k8\amd64\netkvm.inf"`, `\XEN2KVM\DRIVERS\viostor\2k8\amd64 set SRC=`, "\r\n",
		`copy /y "%SRC%viostor\2k8\amd64\viostor.sys" "%SystemRoot%\system32\drivers\viostor.sys"`,
		"if errorlevel 1 goto novio\r\n" + `reg add "HKLM\SYSTEM\CurrentControlSet\Services\viostor" /v Start /t REG_DWORD /d 0 /f`} {
		if !strings.Contains(script, want) {
			t.Errorf("FIRSTBOOT.CMD lacks %q:\n%s", want, script)
		}
	}
	if got := mtools(t, "mtype", img, "::XEN2KVM/DRIVERS/viostor/2k8/amd64/viostor.sys"); got != "viostor 2k8 amd64.sys\r\n" {
		t.Errorf("copied viostor.sys = %q", got)
	}
	if got := mtools(t, "mtype", img, "::XEN2KVM/DRIVERS/NetKVM/2k8/amd64/netkvmco.dll"); got != "netkvmco\r\n" {
		t.Errorf("copied netkvmco.dll = %q", got)
	}
	if out := mtools(t, "mdir", img, "-/", "::XEN2KVM/DRIVERS"); strings.Contains(out, "2k3") || strings.Contains(out, "w10") || strings.Contains(strings.ToLower(out), "balloon") {
		t.Errorf("drivers for other Windows or other devices copied:\n%s", out)
	}
	if p := filepath.Join(t.TempDir(), "x"); virtiowin.WriteDisk(img, src, d) == nil {
		t.Errorf("WriteDisk over an existing file succeeded (%s)", p)
	}
}

func TestISO(t *testing.T) {
	geniso := testutil.NeedTool(t, "genisoimage")
	iso := filepath.Join(t.TempDir(), "virtio-win.iso")
	if out, err := exec.Command(geniso, "-quiet", "-J", "-R", "-V", "virtio-win", "-o", iso, wintest.VirtioWinTree(t)).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v\n%s", err, out)
	}
	src, err := virtiowin.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !src.ISO {
		t.Error("ISO not recognised")
	}
	d, err := src.Drivers("5.2", "x86")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(d.Viostor, "viostor/2k3/x86") || !strings.EqualFold(d.ViostorSys, "viostor/2k3/x86/viostor.sys") {
		t.Errorf("viostor %q, %q", d.Viostor, d.ViostorSys)
	}
	if m := d.Method(); !strings.Contains(m, "no pnputil") || !strings.Contains(m, "DevicePath") || !strings.Contains(m, "not used") {
		t.Errorf("2003 method: %s", m)
	}
	img := filepath.Join(t.TempDir(), "setup.raw")
	if err := virtiowin.WriteDisk(img, src, d); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	script := mtools(t, "mtype", img, "::XEN2KVM/FIRSTBOOT.CMD")
	for _, want := range []string{`xcopy /e /i /y "%SRC%viostor\2k3\x86" "%SystemRoot%\xen2kvm\viostor"`,
		`('reg query "HKLM\SOFTWARE\Microsoft\Windows\CurrentVersion" /v DevicePath ^| find "REG_EXPAND_SZ"') do set "DP=%%b"`,
		`/v DevicePath /t REG_EXPAND_SZ /d "%DP%;%%SystemRoot%%\xen2kvm\viostor;%%SystemRoot%%\xen2kvm\netkvm" /f`,
		`copy /y "%SRC%viostor\2k3\x86\viostor.sys" "%SystemRoot%\system32\drivers\viostor.sys"`} {
		if !strings.Contains(script, want) {
			t.Errorf("2003 FIRSTBOOT.CMD lacks %q:\n%s", want, script)
		}
	}
	if strings.Contains(script, "pnputil") || strings.Contains(script, `XEN2KVM\DRIVERS`) {
		t.Errorf("2003 script from an ISO:\n%s", script)
	}
	if out := mtools(t, "mdir", img, "-b", "::XEN2KVM"); strings.Contains(strings.ToUpper(out), "DRIVERS") {
		t.Errorf("an ISO's drivers were copied:\n%s", out)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := virtiowin.Open(dir); !errors.Is(err, virtiowin.ErrNotVirtioWin) {
		t.Errorf("empty folder: %v", err)
	}
	notISO := filepath.Join(dir, "x.iso")
	if err := os.WriteFile(notISO, make([]byte, 1<<16), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := virtiowin.Open(notISO); !errors.Is(err, virtiowin.ErrNotVirtioWin) || !strings.Contains(err.Error(), notISO) {
		t.Errorf("zeros: %v", err)
	}
	if _, err := virtiowin.Open(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing: %v", err)
	}
	tree := wintest.VirtioWinTree(t)
	if err := os.RemoveAll(filepath.Join(tree, "NetKVM", "2k3")); err != nil {
		t.Fatal(err)
	}
	src, err := virtiowin.Open(tree)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Drivers("5.2", "x86"); !errors.Is(err, virtiowin.ErrNoDrivers) {
		t.Errorf("no 2003 NetKVM: %v", err)
	}
	if err := os.Remove(filepath.Join(tree, "viostor", "2k8", "x86", "viostor.sys")); err != nil {
		t.Fatal(err)
	}
	if _, err := src.Drivers("6.0", "x86"); !errors.Is(err, virtiowin.ErrNoDrivers) || !strings.Contains(err.Error(), "viostor.sys") {
		t.Errorf("no viostor.sys: %v", err)
	}
	if _, err := src.Drivers("6.1", "AMD64"); !errors.Is(err, virtiowin.ErrNoDrivers) || !strings.Contains(err.Error(), "viostor/2k8R2/amd64/viostor.inf") {
		t.Errorf("2008 R2 (the fixture has no 2k8R2 or w7): %v", err)
	}
	if _, err := src.Drivers("6.2", "AMD64"); !errors.Is(err, virtiowin.ErrNoDrivers) || !strings.Contains(err.Error(), tree) {
		t.Errorf("2012: %v", err)
	}
}

// fsck checks the FAT partition with fsck.fat -n.
func fsck(t *testing.T, img string) {
	t.Helper()
	testutil.NeedTool(t, "fsck.fat")
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	part := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(part, b[1<<20:], 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("fsck.fat", "-n", part).CombinedOutput()
	if err != nil || strings.Contains(string(out), "Invalid") || strings.Contains(string(out), "Truncating") {
		t.Errorf("fsck.fat -n: %v\n%s", err, out)
	}
}
