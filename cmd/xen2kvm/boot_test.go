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
	code, stdout, stderr := runCLI(t, "boot", dir, "--qemu", qemu, "--accel", "tcg", "--console")
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
	code, stdout, stderr := runCLI(t, "boot", filepath.Join(dir, "testvm.xml"), "--qemu", qemu, "--accel", "tcg", "--json")
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
	if !strings.Contains(stderr, "xen2kvm: error: guest stopped in stage initrd") || !strings.Contains(stderr, "xen2kvm: hint: ") {
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
