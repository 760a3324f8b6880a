package virtiowin_test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
	"github.com/xen2kvm/xen2kvm/virtiowin"
)

// genISO writes dir as an ISO 9660 image with Joliet and Rock Ridge names,
// as virtio-win's ISOs have.
func genISO(t *testing.T, dir, iso string) {
	t.Helper()
	geniso := testutil.NeedTool(t, "genisoimage")
	if out, err := exec.Command(geniso, "-quiet", "-J", "-R", "-V", "virtio-win", "-o", iso, dir).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v\n%s", err, out)
	}
}

// mdirFiles lists the files of a folder on the first-boot disk, lower
// case, by their base name.
func mdirFiles(t *testing.T, img, dir string) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(mtools(t, "mdir", img, "-b", "::"+dir), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			names = append(names, strings.ToLower(l[strings.LastIndex(l, "/")+1:]))
		}
	}
	slices.Sort(names)
	return names
}

func TestRPMDriversTree(t *testing.T) {
	dir := wintest.VirtioWinRPM(t)
	for _, p := range []string{dir, filepath.Join(dir, "drivers")} {
		src, err := virtiowin.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		if src.ISO || src.Layout != virtiowin.RPMTree || src.Path != filepath.Join(dir, "drivers") {
			t.Errorf("Open(%s): ISO %v, layout %v, path %s", p, src.ISO, src.Layout, src.Path)
		}
		src.Close()
	}
	src, err := virtiowin.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ version, arch, want string }{
		{"5.2", "x86", "i386/Win2003"}, {"5.2", "AMD64", "amd64/Win2003"},
		{"6.0", "x86", "i386/Win2008"}, {"6.0", "AMD64", "amd64/Win2008"},
		{"6.1", "AMD64", "amd64/Win2008R2"}, {"6.1", "x86", "i386/Win7"},
	} {
		d, err := src.Drivers(c.version, c.arch)
		if err != nil {
			t.Errorf("%s %s: %v", c.version, c.arch, err)
			continue
		}
		if d.Viostor != c.want || d.NetKVM != c.want || d.ViostorSys != c.want+"/viostor.sys" || !d.Shared {
			t.Errorf("%s %s: %+v, want %s", c.version, c.arch, d, c.want)
		}
	}

	d, err := src.Drivers("6.0", "AMD64")
	if err != nil {
		t.Fatal(err)
	}
	if m := d.Method(); !strings.Contains(m, "amd64/Win2008/viostor.inf") || !strings.Contains(m, "only the viostor* and netkvm* files") {
		t.Errorf("method: %s", m)
	}
	img := filepath.Join(t.TempDir(), "setup.raw")
	if err := virtiowin.WriteDisk(img, src, d); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	want := []string{"netkvm.cat", "netkvm.inf", "netkvm.pdb", "netkvm.sys", "viostor.cat", "viostor.inf", "viostor.pdb", "viostor.sys"}
	if got := mdirFiles(t, img, "XEN2KVM/DRIVERS/amd64/Win2008"); !slices.Equal(got, want) {
		t.Errorf("copied from the shared folder: %q, want %q", got, want)
	}
	if got := mtools(t, "mtype", img, "::XEN2KVM/DRIVERS/amd64/Win2008/viostor.sys"); got != "viostor Win2008 amd64.sys\r\n" {
		t.Errorf("copied viostor.sys = %q", got)
	}
	script := mtools(t, "mtype", img, "::XEN2KVM/FIRSTBOOT.CMD")
	for _, w := range []string{`pnputil -i -a "%SRC%amd64\Win2008\viostor.inf"`, `pnputil -i -a "%SRC%amd64\Win2008\netkvm.inf"`,
		`if exist %%d:\XEN2KVM\DRIVERS\amd64\Win2008 set SRC=`,
		`copy /y "%SRC%amd64\Win2008\viostor.sys" "%SystemRoot%\system32\drivers\viostor.sys"`} {
		if !strings.Contains(script, w) {
			t.Errorf("FIRSTBOOT.CMD lacks %q:\n%s", w, script)
		}
	}

	d, err = src.Drivers("5.2", "x86")
	if err != nil {
		t.Fatal(err)
	}
	s3 := virtiowin.Script(d, true)
	for _, w := range []string{`xcopy /i /y "%SRC%i386\Win2003\viostor*" "%SystemRoot%\xen2kvm\viostor\"`,
		`xcopy /i /y "%SRC%i386\Win2003\netkvm*" "%SystemRoot%\xen2kvm\netkvm\"`} {
		if !strings.Contains(s3, w) {
			t.Errorf("2003 script lacks %q:\n%s", w, s3)
		}
	}
	if strings.Contains(s3, "xcopy /e") || strings.Contains(s3, "pnputil") {
		t.Errorf("2003 script from a shared folder copies it whole or uses pnputil:\n%s", s3)
	}

	if err := os.RemoveAll(filepath.Join(dir, "drivers", "amd64", "Win2003")); err != nil {
		t.Fatal(err)
	}
	_, err = src.Drivers("5.2", "AMD64")
	if !errors.Is(err, virtiowin.ErrNoDrivers) || !strings.Contains(err.Error(), filepath.Join(dir, "drivers")) ||
		!strings.Contains(err.Error(), "amd64/Win2003/viostor.inf") || !strings.Contains(err.Error(), "5.2 AMD64") {
		t.Errorf("no amd64/Win2003: %v", err)
	}
	src.Close()
}

func TestRPMFolderISO(t *testing.T) {
	dir := wintest.VirtioWinRPM(t)
	// An ISO without the 2003 drivers, linked as the RPM links it.
	tree := wintest.VirtioWinTree(t)
	for _, drv := range []string{"viostor", "NetKVM"} {
		if err := os.RemoveAll(filepath.Join(tree, drv, "2k3")); err != nil {
			t.Fatal(err)
		}
	}
	genISO(t, tree, filepath.Join(dir, "virtio-win-0.1.173.iso"))
	if err := os.Symlink("virtio-win-0.1.173.iso", filepath.Join(dir, "virtio-win.iso")); err != nil {
		t.Fatal(err)
	}

	src, err := virtiowin.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !src.ISO || src.Path != filepath.Join(dir, "virtio-win.iso") || src.Layout != virtiowin.PerDriver {
		t.Errorf("RPM folder with an ISO: ISO %v, path %s, layout %v", src.ISO, src.Path, src.Layout)
	}
	d, err := src.Drivers("6.0", "AMD64")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.EqualFold(d.Viostor, "viostor/2k8/amd64") || d.Shared || !src.ISO {
		t.Errorf("2008 from the RPM's ISO: %+v (ISO %v)", d, src.ISO)
	}
	src.Close()

	src, err = virtiowin.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	d, err = src.Drivers("5.2", "x86")
	if err != nil {
		t.Fatal(err)
	}
	if src.ISO || src.Path != filepath.Join(dir, "drivers") || d.Viostor != "i386/Win2003" || d.NetKVM != "i386/Win2003" {
		t.Errorf("2003, not in the ISO, from the drivers/ tree: %+v (ISO %v, path %s)", d, src.ISO, src.Path)
	}
	img := filepath.Join(t.TempDir(), "setup.raw")
	if err := virtiowin.WriteDisk(img, src, d); err != nil {
		t.Fatal(err)
	}
	if got := mtools(t, "mtype", img, "::XEN2KVM/DRIVERS/i386/Win2003/netkvm.inf"); !strings.Contains(got, "netkvm for Win2003 i386 x86") {
		t.Errorf("copied netkvm.inf = %q", got)
	}
	src.Close()

	// Without drivers/, the ISO's missing 2003 is an error naming the ISO.
	if err := os.RemoveAll(filepath.Join(dir, "drivers")); err != nil {
		t.Fatal(err)
	}
	src, err = virtiowin.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := src.Drivers("5.2", "x86"); !errors.Is(err, virtiowin.ErrNoDrivers) || !strings.Contains(err.Error(), filepath.Join(dir, "virtio-win.iso")) ||
		!strings.Contains(err.Error(), "viostor/2k3/x86/viostor.inf") {
		t.Errorf("2003 not in the ISO and no drivers/: %v", err)
	}
	src.Close()

	// Two versioned ISOs and no virtio-win.iso: which one is not guessed.
	if err := os.Remove(filepath.Join(dir, "virtio-win.iso")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "virtio-win-0.1.173.iso"), filepath.Join(dir, "virtio-win-0.1.171.iso")); err != nil {
		t.Fatal(err)
	}
	if _, err := virtiowin.Open(dir); !errors.Is(err, virtiowin.ErrNotVirtioWin) || !strings.Contains(err.Error(), "virtio-win-0.1.171.iso, virtio-win-0.1.173.iso") {
		t.Errorf("two ISOs: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "virtio-win-0.1.171.iso")); err != nil {
		t.Fatal(err)
	}
	if src, err := virtiowin.Open(dir); err != nil || src.Path != filepath.Join(dir, "virtio-win-0.1.173.iso") {
		t.Errorf("the only versioned ISO: %v", err)
	} else {
		src.Close()
	}
}

func TestOldISOLayout(t *testing.T) {
	tree := wintest.VirtioWinOld(t)
	iso := filepath.Join(t.TempDir(), "virtio-win-0.1-81.iso")
	genISO(t, tree, iso)
	src, err := virtiowin.Open(iso)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if !src.ISO || src.Layout != virtiowin.OldISO {
		t.Errorf("ISO %v, layout %v", src.ISO, src.Layout)
	}
	for _, c := range []struct{ version, arch, viostor, netkvm string }{
		{"5.2", "x86", "WNET/X86", "XP/X86"}, {"5.2", "AMD64", "WNET/AMD64", "XP/AMD64"},
		{"6.0", "x86", "WLH/X86", "VISTA/X86"}, {"6.0", "AMD64", "WLH/AMD64", "VISTA/AMD64"},
		{"6.1", "AMD64", "WIN7/AMD64", "WIN7/AMD64"},
	} {
		d, err := src.Drivers(c.version, c.arch)
		if err != nil {
			t.Errorf("%s %s: %v", c.version, c.arch, err)
			continue
		}
		if d.Viostor != c.viostor || d.NetKVM != c.netkvm || !d.Shared {
			t.Errorf("%s %s: viostor %s netkvm %s, want %s %s", c.version, c.arch, d.Viostor, d.NetKVM, c.viostor, c.netkvm)
		}
	}
	d, err := src.Drivers("5.2", "AMD64")
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), "setup.raw")
	if err := virtiowin.WriteDisk(img, src, d); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	script := mtools(t, "mtype", img, "::XEN2KVM/FIRSTBOOT.CMD")
	for _, w := range []string{`if exist %%d:\WNET\AMD64 set SRC=%%d:\`,
		`xcopy /i /y "%SRC%WNET\AMD64\viostor*" "%SystemRoot%\xen2kvm\viostor\"`,
		`xcopy /i /y "%SRC%XP\AMD64\netkvm*" "%SystemRoot%\xen2kvm\netkvm\"`,
		`copy /y "%SRC%WNET\AMD64\viostor.sys" "%SystemRoot%\system32\drivers\viostor.sys"`} {
		if !strings.Contains(script, w) {
			t.Errorf("FIRSTBOOT.CMD lacks %q:\n%s", w, script)
		}
	}

	// Plain ISO 9660 names (upper case, no Joliet or Rock Ridge).
	plain := filepath.Join(t.TempDir(), "plain.iso")
	if out, err := exec.Command(testutil.NeedTool(t, "genisoimage"), "-quiet", "-o", plain, tree).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v\n%s", err, out)
	}
	psrc, err := virtiowin.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	defer psrc.Close()
	if d, err := psrc.Drivers("6.0", "AMD64"); err != nil || d.Viostor != "WLH/AMD64" || d.NetKVM != "VISTA/AMD64" || d.ViostorSys != "WLH/AMD64/VIOSTOR.SYS" {
		t.Errorf("plain ISO 9660: %+v, %v", d, err)
	}

	// The same layout as a folder: only viostor's and netkvm's files go
	// onto the disk.
	fsrc, err := virtiowin.Open(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer fsrc.Close()
	d, err = fsrc.Drivers("6.0", "x86")
	if err != nil {
		t.Fatal(err)
	}
	img = filepath.Join(t.TempDir(), "setup-folder.raw")
	if err := virtiowin.WriteDisk(img, fsrc, d); err != nil {
		t.Fatal(err)
	}
	fsck(t, img)
	if got, want := mdirFiles(t, img, "XEN2KVM/DRIVERS/WLH/X86"), []string{"viostor.cat", "viostor.inf", "viostor.pdb", "viostor.sys"}; !slices.Equal(got, want) {
		t.Errorf("WLH/X86 copied: %q, want %q", got, want)
	}
	if got, want := mdirFiles(t, img, "XEN2KVM/DRIVERS/VISTA/X86"), []string{"netkvm.cat", "netkvm.inf", "netkvm.pdb", "netkvm.sys", "netkvmco.dll"}; !slices.Equal(got, want) {
		t.Errorf("VISTA/X86 copied: %q, want %q", got, want)
	}

	if err := os.RemoveAll(filepath.Join(tree, "WLH", "AMD64")); err != nil {
		t.Fatal(err)
	}
	_, err = fsrc.Drivers("6.0", "AMD64")
	if !errors.Is(err, virtiowin.ErrNoDrivers) || !strings.Contains(err.Error(), tree) || !strings.Contains(err.Error(), "WLH/AMD64/viostor.inf") ||
		!strings.Contains(err.Error(), "before 0.1.100") {
		t.Errorf("no WLH/AMD64: %v", err)
	}
}

func TestOpenNamesLayouts(t *testing.T) {
	dir := t.TempDir()
	_, err := virtiowin.Open(dir)
	if !errors.Is(err, virtiowin.ErrNotVirtioWin) {
		t.Fatalf("empty folder: %v", err)
	}
	for _, w := range []string{dir, "viostor and NetKVM", "WNET, WLH", "drivers/i386", "virtio-win.iso"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

func TestEarliestISOFolders(t *testing.T) {
	src, err := virtiowin.Open(wintest.VirtioWinEarly(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Layout != virtiowin.OldISO {
		t.Errorf("layout %v", src.Layout)
	}
	for _, c := range []struct{ version, arch, want string }{
		{"5.2", "x86", "XP/X86"}, {"5.2", "AMD64", "XP/AMD64"}, {"6.0", "x86", "WIN7/X86"}, {"6.0", "AMD64", "WIN7/AMD64"},
	} {
		d, err := src.Drivers(c.version, c.arch)
		if err != nil || d.Viostor != c.want || d.NetKVM != c.want {
			t.Errorf("%s %s: %+v, %v; want %s", c.version, c.arch, d, err, c.want)
		}
	}
}

// The later RPMs: drivers/by-driver is taken from the RPM's folder;
// drivers/by-os can be given.
func TestRPMByDriverByOS(t *testing.T) {
	dir := wintest.VirtioWinRPMNew(t)
	src, err := virtiowin.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.ISO || src.Layout != virtiowin.PerDriver || src.Path != filepath.Join(dir, "drivers", "by-driver") {
		t.Errorf("RPM folder: ISO %v, layout %v, path %s", src.ISO, src.Layout, src.Path)
	}
	if d, err := src.Drivers("6.0", "AMD64"); err != nil || d.Viostor != "viostor/2k8/amd64" || d.NetKVM != "NetKVM/2k8/amd64" || d.Shared {
		t.Errorf("by-driver 2008: %+v, %v", d, err)
	}
	byOS, err := virtiowin.Open(filepath.Join(dir, "drivers", "by-os"))
	if err != nil {
		t.Fatal(err)
	}
	defer byOS.Close()
	for _, c := range []struct{ version, arch, want string }{
		{"5.2", "x86", "i386/2k3"}, {"6.0", "AMD64", "amd64/2k8"}, {"6.1", "AMD64", "amd64/2k8R2"},
	} {
		d, err := byOS.Drivers(c.version, c.arch)
		if err != nil || d.Viostor != c.want || d.NetKVM != c.want || !d.Shared {
			t.Errorf("by-os %s %s: %+v, %v; want %s", c.version, c.arch, d, err, c.want)
		}
	}
}
