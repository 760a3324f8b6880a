package kvmrun

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// realGuest builds the test guest: Debian's kernel and an initramfs whose
// /init prints "testvm login:" on ttyS0.
func realGuest(t *testing.T) (kernel, initrd string) {
	t.Helper()
	k := testkernel.ForTest(t)
	busybox := testutil.NeedTool(t, "busybox")
	initrd = filepath.Join(t.TempDir(), "initrd.img")
	buildInitramfs(t, initrd, busybox, map[string]string{
		"1-evdev.ko":  filepath.Join(k.ModulesDir, "kernel/drivers/input/evdev.ko"),
		"2-button.ko": filepath.Join(k.ModulesDir, "kernel/drivers/acpi/button.ko"),
	})
	return k.Vmlinuz, initrd
}

// TestRealBoot boots a real kernel under the accelerator the auto probe
// picks (TCG on hosts where KVM hangs) and waits for the login prompt.
func TestRealBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a real kernel")
	}
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	kernel, initrd := realGuest(t)
	dom := &config.KVMDomain{
		Name: "testvm", MemoryMiB: 256, VCPUs: 1, Machine: "pc", OS: "linux", ACPI: true, Serial: true,
		Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1",
	}
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	serialLog := filepath.Join(t.TempDir(), "serial.log")
	res, err := Boot(context.Background(), dom,
		WithQEMU(qemu), WithAccel(AccelAuto), WithProbe(ProbeOptions{Timeout: 5 * time.Second, CacheDir: t.TempDir()}),
		WithExpect(regexp.MustCompile(`testvm login:`)), WithTimeout(3*time.Minute),
		WithShutdownGrace(30*time.Second), WithSerialLog(serialLog), WithLogger(logger))
	t.Logf("launcher log:\n%s", logs.String())
	if res != nil {
		t.Logf("rerun with: %s", config.ShellJoin(res.Cmdline))
	}
	if err != nil {
		if be, ok := err.(*BootError); ok {
			t.Logf("serial tail:\n%s", strings.Join(be.SerialTail, "\n"))
		}
		t.Fatal(err)
	}
	t.Logf("booted under %s in %v (accel reason: %s), stopped by %s", res.Accel.Accel, res.BootTime, res.Accel.Reason, res.Shutdown)
	if res.Match != "testvm login:" {
		t.Errorf("match %q", res.Match)
	}
	serial, _ := os.ReadFile(serialLog)
	if lines := serialLines(string(serial)); len(lines) > 15 {
		t.Logf("serial log ends:\n%s", strings.Join(lines[len(lines)-15:], "\n"))
	}
	for _, want := range []string{"Linux version", "xen2kvm test guest: /init running"} {
		if !strings.Contains(string(serial), want) {
			t.Errorf("serial log lacks %q", want)
		}
	}
	// The guest's /init powers off on the ACPI power button.
	if res.Shutdown != ShutdownPowerdown {
		t.Errorf("shutdown by %s, want %s: the guest should obey system_powerdown", res.Shutdown, ShutdownPowerdown)
	}
	if os.Getenv("XEN2KVM_EXPECT_KVM") == "hang" && res.Accel.Accel != AccelTCG {
		t.Errorf("accel %s on a host where KVM hangs", res.Accel.Accel)
	}
}

// TestRealBootFallback gives the auto probe a "KVM" that hangs (the fake
// qemu as the probe's binary) and the real QEMU for the guest: the probe
// must give up within its deadline and the guest boot under TCG.
func TestRealBootFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a real kernel")
	}
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	kernel, initrd := realGuest(t)
	scenario(t, map[string]string{"FAKEQEMU_KVM": "hang"})
	dom := &config.KVMDomain{
		Name: "testvm", MemoryMiB: 256, VCPUs: 1, Machine: "pc", OS: "linux", ACPI: true, Serial: true,
		Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0 panic=-1",
	}
	const deadline = 3 * time.Second
	start := time.Now()
	v, err := ChooseAccel(context.Background(), AccelAuto, ProbeOptions{QEMU: fakeQEMU, Timeout: deadline, NoCache: true})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); v.Accel != AccelTCG || took > deadline+3*time.Second {
		t.Fatalf("verdict %+v after %v, want TCG within %v", v, took, deadline)
	}
	res, err := Boot(context.Background(), dom, WithQEMU(qemu), WithAccel(v.Accel),
		WithExpect(regexp.MustCompile(`testvm login:`)), WithTimeout(3*time.Minute), WithShutdownGrace(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(strings.Join(res.Cmdline, " "), "-accel tcg") {
		t.Errorf("guest not run under TCG: %q", res.Cmdline)
	}
	t.Logf("booted under TCG in %v", res.BootTime)
}
