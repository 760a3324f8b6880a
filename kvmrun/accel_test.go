package kvmrun

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestProbeFirmwareAssembles checks the probe's bytes against their
// assembly source in testdata/probe.S.
func TestProbeFirmwareAssembles(t *testing.T) {
	as := testutil.NeedTool(t, "as")
	ld := testutil.NeedTool(t, "ld")
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "probe.o"), filepath.Join(dir, "probe.bin")
	for _, argv := range [][]string{
		{as, "--64", "-o", obj, "testdata/probe.S"},
		{ld, "-Ttext=0", "--oformat", "binary", "-o", bin, obj},
	} {
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	want, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(probeFirmware, want) {
		t.Errorf("probeFirmware differs from testdata/probe.S:\n got % x\nwant % x", probeFirmware, want)
	}
	img := probeBIOS()
	if len(img) != 64<<10 || !bytes.Equal(img[0xfff0:0xfff5], []byte{0xea, 0, 0, 0, 0xf0}) {
		t.Errorf("probe BIOS image: size %d, reset vector % x", len(img), img[0xfff0:0xfff5])
	}
}

// TestProbeTCG runs the probe firmware on the real QEMU under TCG: it
// must reach long mode and exit with the firmware's status.
func TestProbeTCG(t *testing.T) {
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	start := time.Now()
	if err := runProbe(context.Background(), qemu, AccelTCG, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	t.Logf("TCG probe took %v", time.Since(start))
}

// TestProbeKVMReal probes the real KVM of this host. On the project's
// machines KVM guests hang, which the probe must find within its
// deadline; XEN2KVM_EXPECT_KVM=works|hang makes the verdict an assertion.
func TestProbeKVMReal(t *testing.T) {
	if testing.Short() {
		t.Skip("spends the probe's deadline on a host where KVM hangs")
	}
	qemu := testutil.NeedTool(t, "qemu-system-x86_64")
	const deadline = 4 * time.Second
	start := time.Now()
	err := ProbeKVM(context.Background(), qemu, deadline)
	took := time.Since(start)
	t.Logf("KVM probe: %v after %v", err, took)
	if err != nil && !errors.Is(err, ErrKVMUnusable) {
		t.Fatalf("probe error is not ErrKVMUnusable: %v", err)
	}
	if took > deadline+6*time.Second {
		t.Errorf("probe took %v, deadline %v", took, deadline)
	}
	switch os.Getenv("XEN2KVM_EXPECT_KVM") {
	case "works":
		if err != nil {
			t.Errorf("KVM expected to work: %v", err)
		}
	case "hang":
		if err == nil || !strings.Contains(err.Error(), "hung") {
			t.Errorf("KVM expected to hang, probe says: %v", err)
		}
	}
}

func TestChooseAccel(t *testing.T) {
	tests := []struct {
		name      string
		mode      string
		kvm, tcg  string // fake qemu behaviour
		want      string
		wantErr   bool
		reason    string
		maxTime   time.Duration
		probeRuns bool
	}{
		{name: "kvm works", mode: AccelAuto, kvm: "works", want: AccelKVM, probeRuns: true},
		{name: "kvm hangs", mode: AccelAuto, kvm: "hang", want: AccelTCG, reason: "hung", maxTime: 2*time.Second + 3*time.Second, probeRuns: true},
		{name: "kvm fails", mode: "", kvm: "fail", want: AccelTCG, reason: "no accelerator found", probeRuns: true},
		{name: "qemu broken", mode: AccelAuto, kvm: "fail", tcg: "fail", wantErr: true, probeRuns: true},
		{name: "tcg forced", mode: AccelTCG, kvm: "works", want: AccelTCG},
		{name: "kvm forced", mode: AccelKVM, kvm: "hang", want: AccelKVM},
		{name: "unknown mode", mode: "xen", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			argv := filepath.Join(t.TempDir(), "argv")
			scenario(t, map[string]string{"FAKEQEMU_KVM": tc.kvm, "FAKEQEMU_TCG": tc.tcg, "FAKEQEMU_ARGV": argv})
			start := time.Now()
			v, err := ChooseAccel(context.Background(), tc.mode, ProbeOptions{QEMU: fakeQEMU, Timeout: 2 * time.Second, NoCache: true})
			took := time.Since(start)
			if tc.wantErr {
				if err == nil {
					t.Fatalf("want an error, got %+v", v)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Accel != tc.want || !strings.Contains(v.Reason, tc.reason) {
				t.Errorf("got %+v, want accel %s with reason containing %q", v, tc.want, tc.reason)
			}
			if tc.maxTime > 0 && took > tc.maxTime {
				t.Errorf("took %v, want at most %v", took, tc.maxTime)
			}
			if _, err := os.Stat(argv); (err == nil) != tc.probeRuns {
				t.Errorf("probe ran: %v, want %v", err == nil, tc.probeRuns)
			}
		})
	}
}

// TestChooseAccelCache: a verdict is reused within one host boot, and
// probed again after a reboot (another boot_id).
func TestChooseAccelCache(t *testing.T) {
	dir := t.TempDir()
	bootID := filepath.Join(dir, "boot_id")
	old := bootIDFile
	bootIDFile = bootID
	t.Cleanup(func() { bootIDFile = old })
	os.WriteFile(bootID, []byte("11111111-2222-3333-4444-555555555555\n"), 0o644)

	argv := filepath.Join(dir, "argv")
	scenario(t, map[string]string{"FAKEQEMU_KVM": "hang", "FAKEQEMU_ARGV": argv})
	o := ProbeOptions{QEMU: fakeQEMU, Timeout: time.Second, CacheDir: filepath.Join(dir, "cache")}
	choose := func() (AccelVerdict, bool) {
		t.Helper()
		os.Remove(argv)
		v, err := ChooseAccel(context.Background(), AccelAuto, o)
		if err != nil {
			t.Fatal(err)
		}
		_, serr := os.Stat(argv)
		return v, serr == nil
	}

	v, probed := choose()
	if v.Accel != AccelTCG || v.Cached || !probed {
		t.Fatalf("first call: %+v probed=%v, want a fresh TCG verdict", v, probed)
	}
	start := time.Now()
	v, probed = choose()
	if v.Accel != AccelTCG || !v.Cached || probed {
		t.Fatalf("second call: %+v probed=%v, want the cached TCG verdict", v, probed)
	}
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("cached verdict took %v", took)
	}
	if !strings.Contains(v.Reason, "hung") {
		t.Errorf("cached reason %q", v.Reason)
	}

	// After a reboot KVM may work (a module loaded, a BIOS setting changed).
	os.WriteFile(bootID, []byte("99999999-2222-3333-4444-555555555555\n"), 0o644)
	t.Setenv("FAKEQEMU_KVM", "works")
	v, probed = choose()
	if v.Accel != AccelKVM || v.Cached || !probed {
		t.Fatalf("after reboot: %+v probed=%v, want a fresh KVM verdict", v, probed)
	}
	// A corrupt cache is ignored, not fatal.
	os.WriteFile(filepath.Join(o.CacheDir, "accel.json"), []byte("{not json"), 0o644)
	if v, _ := choose(); v.Accel != AccelKVM || v.Cached {
		t.Fatalf("corrupt cache: %+v", v)
	}
}

func TestProbeContextCancel(t *testing.T) {
	scenario(t, map[string]string{"FAKEQEMU_KVM": "hang"})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := ProbeKVM(ctx, fakeQEMU, time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want the context's error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("cancel took %v", took)
	}
}
