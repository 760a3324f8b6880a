package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var (
	fakeQEMUOnce sync.Once
	fakeQEMUPath string
	fakeQEMUErr  error
)

// fakeQEMU builds kvmrun's fake qemu-system-x86_64 once per test binary.
func fakeQEMU(t *testing.T) string {
	t.Helper()
	fakeQEMUOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xen2kvm-fakeqemu-")
		if err != nil {
			fakeQEMUErr = err
			return
		}
		fakeQEMUPath = filepath.Join(dir, "qemu-system-x86_64")
		out, err := exec.Command("go", "build", "-o", fakeQEMUPath, "../../kvmrun/internal/fakeqemu").CombinedOutput()
		if err != nil {
			fakeQEMUErr = err
			t.Logf("%s", out)
		}
	})
	if fakeQEMUErr != nil {
		t.Fatalf("building the fake qemu: %v", fakeQEMUErr)
	}
	return fakeQEMUPath
}

// writeOutdir writes a migrate-like OUTDIR holding NAME.xml of a small
// guest, and returns it.
func writeOutdir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	img := filepath.Join(dir, "testvm-vda.qcow2")
	os.WriteFile(img, nil, 0o644)
	k := &config.KVMDomain{
		Name: "testvm", MemoryMiB: 256, MaxMemoryMiB: 256, VCPUs: 1, MaxVCPUs: 1, Machine: "pc", OS: "linux",
		ACPI: true, Serial: true, Kernel: filepath.Join(dir, "vmlinuz"), Cmdline: "console=ttyS0",
		Disks: []config.KVMDisk{{Path: img, Format: "qcow2", Target: "vda", Bus: "virtio", Device: "disk"}},
		NICs:  []config.KVMNIC{{MAC: "00:16:3e:01:02:03", Model: "virtio"}},
	}
	x, err := k.LibvirtXML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "testvm.xml"), x, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func setFake(t *testing.T, serial, after string) {
	t.Helper()
	t.Setenv("TMPDIR", t.TempDir()) // runtime folders kept after a failure
	f := filepath.Join(t.TempDir(), "serial.txt")
	os.WriteFile(f, []byte(serial), 0o644)
	for k, v := range map[string]string{"FAKEQEMU_SERIAL": f, "FAKEQEMU_AFTER": after, "FAKEQEMU_KVM": "", "FAKEQEMU_POWERDOWN": "", "FAKEQEMU_LINE_DELAY": "1ms"} {
		t.Setenv(k, v)
	}
}

func TestBootCommand(t *testing.T) {
	qemu := fakeQEMU(t)
	dir := writeOutdir(t)
	setFake(t, "Linux version 2.6.18-419.el5\nINIT: version 2.86 booting\n\ntestvm login: ", "run")
	code, stdout, stderr := runCLI(t, "boot", dir, "--qemu", qemu, "--accel", "tcg", "--console", "--net-check-port", "0")
	if code != exitOK {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	if !strings.Contains(stdout, "INIT: version 2.86 booting") {
		t.Errorf("--console: serial output missing from stdout %q", stdout)
	}
	if !strings.Contains(stdout, "testvm booted under TCG in ") || !strings.Contains(stdout, "stopped by powerdown") {
		t.Errorf("stdout %q", stdout)
	}
	if !strings.Contains(stderr, "cmdline=") || !strings.Contains(stderr, qemu+" -name guest=testvm") {
		t.Errorf("the QEMU command line is not logged: %q", stderr)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "testvm.boot.log")); err != nil || !strings.Contains(string(b), "testvm login:") {
		t.Errorf("serial log: %q %v", b, err)
	}
}

func TestBootCommandJSONFailure(t *testing.T) {
	qemu := fakeQEMU(t)
	dir := writeOutdir(t)
	setFake(t, "Linux version 2.6.18-419.el5\nRed Hat nash version 5.1.19.6 starting\nKernel panic - not syncing: Attempted to kill init!\n", "exit:0")
	code, stdout, stderr := runCLI(t, "boot", filepath.Join(dir, "testvm.xml"), "--qemu", qemu, "--accel", "tcg", "--json", "--net-check-port", "0")
	if code != exitFail {
		t.Fatalf("exit %d, want %d\nstderr: %s", code, exitFail, stderr)
	}
	var out struct {
		OK         bool     `json:"ok"`
		Stage      string   `json:"stage"`
		Error      string   `json:"error"`
		SerialTail []string `json:"serial_tail"`
		Cmdline    []string `json:"cmdline"`
		Name       string   `json:"name"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("stdout is not JSON: %v\n%s", err, stdout)
	}
	if out.OK || out.Stage != "initrd" || len(out.SerialTail) != 3 || out.Name != "testvm" || len(out.Cmdline) == 0 || !strings.Contains(out.Error, "Kernel panic") {
		t.Errorf("JSON %+v", out)
	}
	if !strings.Contains(stderr, "xen2kvm: error: guest stopped in stage initrd") || !strings.Contains(stderr, "xen2kvm: hint: ") ||
		!strings.Contains(stderr, "runtime files kept") {
		t.Errorf("stderr %q", stderr)
	}
}

func TestBootCommandUsage(t *testing.T) {
	dir := writeOutdir(t)
	two := writeOutdir(t)
	os.WriteFile(filepath.Join(two, "other.xml"), []byte("<domain/>"), 0o644)
	for _, args := range [][]string{
		{"boot"},
		{"boot", dir, "--accel", "xen"},
		{"boot", dir, "--expect", "("},
		{"boot", dir, "--net", "vde"},
		{"boot", dir, "--timeout", "0s"},
		{"boot", dir, "--net-check-port", "70000"},
		{"boot", t.TempDir()},
		{"boot", two},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitUsage || !strings.HasPrefix(stderr, "xen2kvm: error: ") {
			t.Errorf("%v: exit %d, stderr %q; want usage error", args, code, stderr)
		}
	}
	if code, _, _ := runCLI(t, "boot", filepath.Join(dir, "missing.xml")); code != exitFail {
		t.Errorf("missing XML: exit %d, want %d", code, exitFail)
	}
}

// TestBootCommandReal boots, with the real QEMU, a guest whose XML says
// to boot from its disk: the CLI reads the XML back, the built-in pygrub
// finds the Debian test kernel through the grub.conf on the qcow2 disk's
// /boot partition, and the kernel's banner appears on the serial console.
func TestBootCommandReal(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a real kernel")
	}
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	sfdisk := testutil.NeedTool(t, "sfdisk")
	mke2fs := testutil.NeedTool(t, "mke2fs")
	k := testkernel.ForTest(t)

	dir := t.TempDir()
	boot := filepath.Join(dir, "boot")
	os.MkdirAll(filepath.Join(boot, "grub"), 0o755)
	kernel, err := os.ReadFile(k.Vmlinuz)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(boot, "vmlinuz-"+k.Release), kernel, 0o644)
	os.WriteFile(filepath.Join(boot, "grub", "grub.conf"), []byte("default=0\ntimeout=5\ntitle Debian\n\troot (hd0,0)\n\tkernel /vmlinuz-"+k.Release+" console=ttyS0 panic=-1\n"), 0o644)
	raw := filepath.Join(dir, "disk.raw")
	for _, c := range []struct {
		stdin string
		argv  []string
	}{
		{"", []string{"truncate", "-s", "64M", raw}},
		{"label: dos\nstart=2048, type=83, bootable\n", []string{sfdisk, "-q", raw}},
		{"", []string{mke2fs, "-q", "-F", "-t", "ext3", "-d", boot, "-E", "offset=1048576", raw, "32768k"}},
	} {
		cmd := exec.Command(c.argv[0], c.argv[1:]...)
		cmd.Stdin = strings.NewReader(c.stdin)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%v: %v\n%s", c.argv, err, out)
		}
	}
	out := filepath.Join(dir, "out")
	os.Mkdir(out, 0o755)
	vda := filepath.Join(out, "debian-vda.qcow2")
	if b, err := exec.Command(qemuImg, "convert", "-O", "qcow2", raw, vda).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, b)
	}
	dom := &config.KVMDomain{
		Name: "debian", MemoryMiB: 256, MaxMemoryMiB: 256, VCPUs: 1, MaxVCPUs: 1, Machine: "pc", OS: "linux",
		ACPI: true, Serial: true, BootFromDisk: true,
		Disks: []config.KVMDisk{{Path: vda, Format: "qcow2", Target: "vda", Bus: "virtio", Device: "disk"}},
	}
	x, err := dom.LibvirtXML()
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(out, "debian.xml"), x, 0o644)

	code, stdout, stderr := runCLI(t, "boot", out, "--qemu", qemu, "--accel", "tcg", "--expect", `Linux version 6\.`,
		"--timeout", "3m", "--shutdown-grace", "1s", "--json")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	var res struct {
		OK         bool `json:"ok"`
		DirectBoot struct {
			Title      string `json:"title"`
			KernelPath string `json:"kernel_path"`
			Append     string `json:"append"`
		} `json:"direct_boot"`
		Accel struct {
			Accel string `json:"accel"`
		} `json:"accel"`
		BootSeconds float64 `json:"boot_seconds"`
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if !res.OK || res.DirectBoot.Title != "Debian" || res.DirectBoot.KernelPath != "vmlinuz-"+k.Release ||
		res.DirectBoot.Append != "console=ttyS0 panic=-1" || res.Accel.Accel != "tcg" || res.BootSeconds <= 0 {
		t.Errorf("result %s", stdout)
	}
	if b, _ := os.ReadFile(filepath.Join(out, "debian.boot.log")); !strings.Contains(string(b), "Linux version 6.") {
		t.Errorf("serial log lacks the kernel banner")
	}
}

// TestBootCommandRefusesHostileNames: the domain's name makes the serial
// log's file name; a name that is not a plain file name is refused
// before anything is written, and the error names the XML file.
func TestBootCommandRefusesHostileNames(t *testing.T) {
	for _, name := range []string{"../../escape", "..", ".hidden", "-x", "a b", "a/b"} {
		dir := writeOutdir(t)
		xmlPath := filepath.Join(dir, "testvm.xml")
		data, _ := os.ReadFile(xmlPath)
		os.WriteFile(xmlPath, []byte(strings.Replace(string(data), "<name>testvm</name>", "<name>"+name+"</name>", 1)), 0o644)
		before := testutil.TreeDigest(t, filepath.Dir(dir))
		code, _, stderr := runCLI(t, "boot", xmlPath, "--qemu", "/nonexistent/qemu", "--accel", "tcg")
		if code != exitFail || !strings.Contains(stderr, xmlPath+": guest name") {
			t.Errorf("%q: exit %d, stderr %q", name, code, stderr)
		}
		if after := testutil.TreeDigest(t, filepath.Dir(dir)); after != before {
			t.Errorf("%q: the tree around OUTDIR changed", name)
		}
	}
}

// TestBootRemovesKilledRunsFolders: a boot killed before it could clean
// up left its runtime folder in $TMPDIR (marker still there, its lock
// gone with the process); the next boot of the guest removes it, and
// keeps a folder a failed boot kept on purpose.
func TestBootRemovesKilledRunsFolders(t *testing.T) {
	qemu := fakeQEMU(t)
	dir := writeOutdir(t)
	setFake(t, "Linux version 2.6.18-419.el5\n\ntestvm login: ", "run")
	tmp := os.Getenv("TMPDIR")
	killed := filepath.Join(tmp, "xen2kvm-boot-testvm-111")
	os.Mkdir(killed, 0o755)
	os.WriteFile(filepath.Join(killed, ".xen2kvm-in-use"), nil, 0o600)
	os.WriteFile(filepath.Join(killed, "vmlinuz"), []byte("k"), 0o644)
	kept := filepath.Join(tmp, "xen2kvm-boot-testvm-222")
	os.Mkdir(kept, 0o755)
	os.WriteFile(filepath.Join(kept, "vmlinuz"), []byte("k"), 0o644)
	if code, _, stderr := runCLI(t, "boot", dir, "--qemu", qemu, "--accel", "tcg", "--net-check-port", "0"); code != exitOK {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(killed); !os.IsNotExist(err) {
		t.Error("the killed boot's folder is still there")
	}
	ents, _ := os.ReadDir(tmp)
	if len(ents) != 1 || ents[0].Name() != filepath.Base(kept) {
		t.Errorf("$TMPDIR holds %v, want only the kept folder", ents)
	}
}

// TestBootCommandWindows: a Windows guest has no login prompt to wait
// for, and boot says so instead of timing out.
func TestBootCommandWindows(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "w2k3-hda.raw")
	os.WriteFile(img, nil, 0o644)
	k := &config.KVMDomain{
		Name: "w2k3", MemoryMiB: 256, MaxMemoryMiB: 256, VCPUs: 1, MaxVCPUs: 1, Machine: "pc", OS: "windows",
		ACPI: true, APIC: true, Localtime: true, Video: "cirrus",
		Disks: []config.KVMDisk{{Path: img, Format: "raw", Target: "hda", Bus: "ide", Device: "disk"}},
	}
	x, err := k.LibvirtXML()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "w2k3.xml"), x, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "boot", dir, "--qemu", "/nonexistent/qemu")
	if code != exitFail || !strings.Contains(stderr, "prints no login prompt") || !strings.Contains(stderr, "hint:") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}
