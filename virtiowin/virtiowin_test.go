package virtiowin_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/virtiowin"
)

// fakeTree writes a virtio-win-like folder: viostor and NetKVM for 2k3
// and 2k8, x86 and amd64 (files with the drivers' names; the test never
// runs them).
func fakeTree(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "virtio-win")
	for _, drv := range []string{"viostor", "NetKVM"} {
		for _, o := range []string{"2k3", "2k8"} {
			for _, a := range []string{"x86", "amd64"} {
				d := filepath.Join(dir, drv, o, a)
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				base := strings.ToLower(drv)
				for _, ext := range []string{".inf", ".sys", ".cat"} {
					if err := os.WriteFile(filepath.Join(d, base+ext), []byte(drv+" "+o+" "+a+ext+"\r\n"), 0o644); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
	}
	return dir
}

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
	src, err := virtiowin.Open(fakeTree(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	d, err := src.Drivers("6.0", "AMD64")
	if err != nil {
		t.Fatal(err)
	}
	if d.Viostor != "viostor/2k8/amd64" || d.NetKVM != "NetKVM/2k8/amd64" {
		t.Errorf("drivers %+v", d)
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
	for _, want := range []string{`pnputil -i -a "%SRC%viostor\2k8\amd64\*.inf"`, `pnputil -i -a "%SRC%NetKVM\2k8\amd64\*.inf"`, `\XEN2KVM\DRIVERS\viostor\2k8\amd64 set SRC=`, "\r\n"} {
		if !strings.Contains(script, want) {
			t.Errorf("FIRSTBOOT.CMD lacks %q:\n%s", want, script)
		}
	}
	if got := mtools(t, "mtype", img, "::XEN2KVM/DRIVERS/viostor/2k8/amd64/viostor.inf"); got != "viostor 2k8 amd64.inf\r\n" {
		t.Errorf("copied viostor.inf = %q", got)
	}
	if out := mtools(t, "mdir", img, "-/", "::XEN2KVM/DRIVERS"); strings.Contains(out, "2k3") {
		t.Errorf("drivers for other Windows copied:\n%s", out)
	}
	if p := filepath.Join(t.TempDir(), "x"); virtiowin.WriteDisk(img, src, d) == nil {
		t.Errorf("WriteDisk over an existing file succeeded (%s)", p)
	}
}

func TestISO(t *testing.T) {
	geniso := testutil.NeedTool(t, "genisoimage")
	iso := filepath.Join(t.TempDir(), "virtio-win.iso")
	if out, err := exec.Command(geniso, "-quiet", "-J", "-R", "-V", "virtio-win", "-o", iso, fakeTree(t)).CombinedOutput(); err != nil {
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
	if !strings.EqualFold(d.Viostor, "viostor/2k3/x86") {
		t.Errorf("viostor %q", d.Viostor)
	}
	img := filepath.Join(t.TempDir(), "setup.raw")
	if err := virtiowin.WriteDisk(img, src, d); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	script := mtools(t, "mtype", img, "::XEN2KVM/FIRSTBOOT.CMD")
	for _, want := range []string{"xcopy /e /i /y", "DevicePath", `%%SystemRoot%%\xen2kvm\viostor`} {
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
	tree := fakeTree(t)
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
	if _, err := src.Drivers("6.1", "x86"); !errors.Is(err, virtiowin.ErrNoDrivers) {
		t.Errorf("2008 R2: %v", err)
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
