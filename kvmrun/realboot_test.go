package kvmrun

import (
	"context"
	"errors"
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
// /init prints "testvm login:" on ttyS0 and powers off on the ACPI power
// button.
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

// pvDisk makes the disk of a PV guest booted by pygrub: an MBR disk (by
// sfdisk) with an ext3 /boot partition (by mke2fs -d) holding grub.conf,
// whose default entry is the test kernel and initramfs, and an LVM
// partition; as qcow2 (by qemu-img). It has no boot loader in its MBR.
func pvDisk(t *testing.T, kernel, initrd string) string {
	t.Helper()
	qemuImg := testutil.NeedTool(t, "qemu-img")
	sfdisk := testutil.NeedTool(t, "sfdisk")
	mke2fs := testutil.NeedTool(t, "mke2fs")
	dir := t.TempDir()
	boot := filepath.Join(dir, "boot")
	os.MkdirAll(filepath.Join(boot, "grub"), 0o755)
	copyFile(t, kernel, filepath.Join(boot, "vmlinuz-6.1.0-test"))
	copyFile(t, initrd, filepath.Join(boot, "initramfs-6.1.0-test.img"))
	os.WriteFile(filepath.Join(boot, "grub", "grub.conf"), []byte(`default=1
timeout=5
title Old Xen kernel
	root (hd0,0)
	kernel /vmlinuz-2.6.18-419.el5xen ro root=/dev/xvda2 console=xvc0
	initrd /initrd-2.6.18-419.el5xen.img
title Test kernel
	root (hd0,0)
	kernel /vmlinuz-6.1.0-test console=ttyS0 panic=-1
	initrd /initramfs-6.1.0-test.img
`), 0o644)
	raw := filepath.Join(dir, "disk.raw")
	run(t, "", "truncate", "-s", "96M", raw)
	run(t, "label: dos\nstart=2048, size=131072, type=83, bootable\nstart=133120, type=8e\n", sfdisk, "-q", raw)
	run(t, "", mke2fs, "-q", "-F", "-t", "ext3", "-d", boot, "-E", "offset=1048576", raw, "65536k")
	vda := filepath.Join(dir, "testvm-vda.qcow2")
	run(t, "", qemuImg, "convert", "-O", "qcow2", raw, vda)
	return vda
}

// TestRealBoot is the launcher's acceptance test, with one real boot:
//   - the probe given a KVM that hangs (the fake qemu) falls back to TCG
//     within its deadline;
//   - Boot with AccelAuto probes this host's real KVM (which hangs on the
//     project's machines: XEN2KVM_EXPECT_KVM=hang asserts TCG);
//   - the built-in pygrub finds the kernel through the grub.conf of the
//     qcow2 disk's /boot partition (OpenBootFS, diskimg, extfs);
//   - the login prompt appears on the serial console, the guest powers
//     off on system_powerdown, and the image is unchanged (snapshot).
func TestRealBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a real kernel")
	}
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")

	t.Run("probe falls back from a hanging KVM", func(t *testing.T) {
		scenario(t, map[string]string{"FAKEQEMU_KVM": "hang"})
		const deadline = 2 * time.Second
		start := time.Now()
		v, err := ChooseAccel(context.Background(), AccelAuto, ProbeOptions{QEMU: fakeQEMU, Timeout: deadline, NoCache: true})
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); v.Accel != AccelTCG || took > deadline+3*time.Second {
			t.Fatalf("verdict %+v after %v, want TCG within %v", v, took, deadline)
		}
	})

	kernel, initrd := realGuest(t)
	vda := pvDisk(t, kernel, initrd)
	dom := &config.KVMDomain{
		Name: "testvm", MemoryMiB: 256, VCPUs: 1, Machine: "pc", OS: "linux", ACPI: true, Serial: true,
		BootFromDisk: true,
		Disks:        []config.KVMDisk{{Path: vda, Format: "qcow2", Target: "vda", Bus: "virtio", Device: "disk"}},
		NICs:         []config.KVMNIC{{MAC: "00:16:3e:01:02:03", Model: "virtio"}},
	}
	sum := testutil.HashFile(t, vda)
	var logs strings.Builder
	serialLog := filepath.Join(t.TempDir(), "serial.log")
	res, err := Boot(context.Background(), dom,
		WithQEMU(qemu), WithAccel(AccelAuto), WithProbe(ProbeOptions{Timeout: 5 * time.Second, CacheDir: t.TempDir()}),
		WithExpect(regexp.MustCompile(`testvm login:`)), WithTimeout(3*time.Minute),
		WithShutdownGrace(30*time.Second), WithSerialLog(serialLog), WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	t.Logf("launcher log:\n%s", logs.String())
	if res != nil {
		t.Logf("rerun with: %s", config.ShellJoin(res.Cmdline))
	}
	if err != nil {
		var be *BootError
		if errors.As(err, &be) {
			t.Logf("serial tail:\n%s", strings.Join(be.SerialTail, "\n"))
		}
		t.Fatal(err)
	}
	t.Logf("booted under %s in %v (accel: %+v), stopped by %s", res.Accel.Accel, res.BootTime, res.Accel, res.Shutdown)
	if res.Match != "testvm login:" {
		t.Errorf("match %q", res.Match)
	}
	if db := res.DirectBoot; db == nil || db.Title != "Test kernel" || db.KernelPath != "vmlinuz-6.1.0-test" ||
		db.InitrdPath != "initramfs-6.1.0-test.img" || db.Append != "console=ttyS0 panic=-1" {
		t.Errorf("DirectBoot %+v", res.DirectBoot)
	}
	serial, _ := os.ReadFile(serialLog)
	for _, want := range []string{"Linux version", "xen2kvm test guest: /init running", "power button pressed"} {
		if !strings.Contains(string(serial), want) {
			t.Errorf("serial log lacks %q", want)
		}
	}
	if res.Shutdown != ShutdownPowerdown {
		t.Errorf("shutdown by %s, want %s: the guest's /init powers off on the ACPI power button", res.Shutdown, ShutdownPowerdown)
	}
	if testutil.HashFile(t, vda) != sum {
		t.Errorf("the boot check changed %s (it runs on a snapshot)", vda)
	}
	if res.Accel.Probed.IsZero() {
		t.Errorf("AccelAuto did not probe: %+v", res.Accel)
	}
	if os.Getenv("XEN2KVM_EXPECT_KVM") == "hang" && res.Accel.Accel != AccelTCG {
		t.Errorf("accel %s on a host where KVM hangs", res.Accel.Accel)
	}
}
