package kvmrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
)

// testDomain is a small Linux guest; the fake qemu ignores its disks.
func testDomain() *config.KVMDomain {
	return &config.KVMDomain{
		Name: "rhel5pv", MemoryMiB: 256, VCPUs: 1, Machine: "pc", OS: "linux", ACPI: true,
		Kernel: "/boot/vmlinuz", Cmdline: "console=ttyS0",
		Disks:  []config.KVMDisk{{Path: "/nonexistent/rhel5pv-vda.qcow2", Format: "qcow2", Target: "vda", Bus: "virtio", Device: "disk"}},
		NICs:   []config.KVMNIC{{MAC: "00:16:3e:12:34:56", Model: "virtio"}},
		Serial: true,
	}
}

// syncWriter is a console the serial watcher writes to while the test
// reads it.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func TestBootWithFakeQEMU(t *testing.T) {
	longLog := filepath.Join(t.TempDir(), "long.txt")
	var long strings.Builder
	long.WriteString("Linux version 6.1.0\n")
	for i := 1; i <= 80; i++ {
		fmt.Fprintf(&long, "[    %d.000000] line %d\n", i, i)
	}
	os.WriteFile(longLog, []byte(long.String()), 0o644)

	tests := []struct {
		name     string
		serial   string
		after    string // FAKEQEMU_AFTER
		power    string // FAKEQEMU_POWERDOWN
		timeout  time.Duration
		wantErr  error
		stage    string
		clue     string
		shutdown string
		qmp      []string // QMP commands the fake saw, in order
		tail     int      // len(SerialTail)
		lastLine string
		maxTime  time.Duration
		expect   string
	}{
		{name: "login seen, guest powers off", serial: "testdata/serial/rhel5-login.txt", after: "run",
			shutdown: ShutdownPowerdown, qmp: []string{"qmp_capabilities", "system_powerdown"}},
		{name: "login seen, guest ignores the power button", serial: "testdata/serial/rhel5-login.txt", after: "run", power: "ignore",
			shutdown: ShutdownQuit, qmp: []string{"qmp_capabilities", "system_powerdown", "quit"}},
		{name: "kernel panic, qemu exits", serial: "testdata/serial/rhel5-no-root.txt", after: "exit:0",
			wantErr: ErrKernelPanic, stage: StageInitrd, clue: "mount: could not find filesystem '/dev/root'", tail: 13,
			lastLine: "Kernel panic - not syncing: Attempted to kill init!"},
		{name: "kernel panic, qemu keeps running", serial: "testdata/serial/rhel5-no-root.txt", after: "run",
			wantErr: ErrKernelPanic, stage: StageInitrd, clue: "mount: could not find filesystem '/dev/root'", tail: 13,
			lastLine: "Kernel panic - not syncing: Attempted to kill init!", maxTime: panicSettle + 3*time.Second},
		{name: "guest powers off before the prompt", serial: "testdata/serial/rhel5-login.txt", after: "exit:0",
			expect: "never printed", wantErr: ErrQEMUExited, stage: StageUserspace, tail: 21, lastLine: "rhel5pv login: "},
		{name: "timeout in the kernel", serial: longLog, after: "run", timeout: 2 * time.Second,
			wantErr: ErrBootTimeout, stage: StageKernel, tail: 50, lastLine: "[    80.000000] line 80"},
		{name: "qemu exits at once", after: "exit:1",
			wantErr: ErrQEMUExited, stage: StageQEMUStart},
		{name: "no output at all", after: "run", timeout: time.Second,
			wantErr: ErrBootTimeout, stage: StageKernel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			qmpLog := filepath.Join(dir, "qmp.log")
			scenario(t, map[string]string{"FAKEQEMU_SERIAL": tc.serial, "FAKEQEMU_AFTER": tc.after,
				"FAKEQEMU_POWERDOWN": tc.power, "FAKEQEMU_QMP_LOG": qmpLog, "FAKEQEMU_LINE_DELAY": "5ms"})
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 20 * time.Second
			}
			console := &syncWriter{}
			serialLog := filepath.Join(dir, "serial.log")
			start := time.Now()
			expect := DefaultExpect
			if tc.expect != "" {
				expect = regexp.MustCompile(tc.expect)
			}
			res, err := Boot(context.Background(), testDomain(), WithExpect(expect),
				WithQEMU(fakeQEMU), WithAccel(AccelTCG), WithTimeout(timeout),
				WithShutdownGrace(300*time.Millisecond), WithConsole(console), WithSerialLog(serialLog))
			took := time.Since(start)

			if tc.wantErr != nil {
				var be *BootError
				if !errors.As(err, &be) || !errors.Is(err, tc.wantErr) {
					t.Fatalf("got %v, want a *BootError wrapping %v", err, tc.wantErr)
				}
				if be.Stage != tc.stage || be.Clue != tc.clue || len(be.SerialTail) != tc.tail {
					t.Errorf("BootError stage %q clue %q tail %d lines, want %q %q %d\n%v", be.Stage, be.Clue, len(be.SerialTail), tc.stage, tc.clue, tc.tail, err)
				}
				if tc.lastLine != "" && be.SerialTail[len(be.SerialTail)-1] != tc.lastLine {
					t.Errorf("last serial line %q, want %q", be.SerialTail[len(be.SerialTail)-1], tc.lastLine)
				}
				if tc.maxTime > 0 && took > tc.maxTime {
					t.Errorf("took %v, want at most %v", took, tc.maxTime)
				}
				if errors.Is(err, ErrBootTimeout) && (took < timeout || took > timeout+5*time.Second) {
					t.Errorf("timed out after %v, timeout %v", took, timeout)
				}
				if be.Hint() == "" {
					t.Errorf("no hint for stage %s", be.Stage)
				}
				if res == nil || len(res.Cmdline) == 0 || res.Cmdline[0] != fakeQEMU {
					t.Errorf("result without the command line: %+v", res)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Match != "login:" || res.Shutdown != tc.shutdown || res.BootTime <= 0 || res.BootTime > took {
				t.Errorf("result %+v, want match login:, shutdown %s", res, tc.shutdown)
			}
			if res.Accel.Accel != AccelTCG {
				t.Errorf("accel %+v", res.Accel)
			}
			want, _ := os.ReadFile(tc.serial)
			if got := console.String(); got != string(want) {
				t.Errorf("console got %d bytes, want the %d of the serial output", len(got), len(want))
			}
			if got, _ := os.ReadFile(serialLog); !bytes.Equal(got, want) {
				t.Errorf("serial log %s has %d bytes, want %d", serialLog, len(got), len(want))
			}
			b, _ := os.ReadFile(qmpLog)
			if got := strings.Fields(string(b)); strings.Join(got, " ") != strings.Join(tc.qmp, " ") {
				t.Errorf("QMP commands %q, want %q", got, tc.qmp)
			}
		})
	}
}

func TestStartFailure(t *testing.T) {
	_, err := Boot(context.Background(), testDomain(), WithQEMU(filepath.Join(t.TempDir(), "no-such-qemu")), WithAccel(AccelTCG))
	var be *BootError
	if !errors.As(err, &be) || be.Stage != StageQEMUStart {
		t.Fatalf("got %v, want a BootError in stage %s", err, StageQEMUStart)
	}
}

// TestVMArgv checks what the launcher hands QEMU on top of QEMUArgs: its
// own serial log, QMP socket and VNC password file, and the snapshot.
func TestVMArgv(t *testing.T) {
	dir := t.TempDir()
	argvFile := filepath.Join(dir, "argv")
	scenario(t, map[string]string{"FAKEQEMU_ARGV": argvFile, "FAKEQEMU_AFTER": "run"})
	dom := testDomain()
	dom.Graphics = &config.Graphics{Type: "vnc", Password: "pw123"}
	vm, err := Start(context.Background(), dom, WithQEMU(fakeQEMU), WithAccel(AccelKVM), WithDir(filepath.Join(dir, "run")))
	if err != nil {
		t.Fatal(err)
	}
	q, err := vm.QMP(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := q.Execute(context.Background(), "query-status", nil); err != nil {
		t.Fatal(err)
	}
	var qe *QMPError
	if _, err := q.Execute(context.Background(), "no-such-command", nil); !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Errorf("unknown command: %v", err)
	}
	b, _ := os.ReadFile(argvFile)
	argv := "\n" + string(b)
	for _, want := range []string{
		"\n-accel\nkvm\n",
		"\n-chardev\nfile,id=serial0,path=" + vm.SerialLog() + "\n",
		"\n-chardev\nsocket,id=qmp,path=" + vm.QMPSocket() + ",server=on,wait=off\n",
		"password-secret=vncpass",
	} {
		if !strings.Contains(argv, want) {
			t.Errorf("argv lacks %q:\n%s", want, argv)
		}
	}
	if strings.Contains(argv, "pw123") {
		t.Errorf("VNC password in argv")
	}
	if pw, err := os.ReadFile(filepath.Join(dir, "run", "vnc.pass")); err != nil || string(pw) != "pw123" {
		t.Errorf("VNC password file: %q %v", pw, err)
	}
	if got := strings.Join(vm.Cmdline()[1:], "\n") + "\n"; got != string(b) {
		t.Errorf("Cmdline differs from the argv QEMU got")
	}
	how, err := vm.Shutdown(context.Background(), time.Second)
	if err != nil || how != ShutdownPowerdown {
		t.Errorf("Shutdown = %s, %v", how, err)
	}
	if err := vm.Close(); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "run")); err != nil {
		t.Errorf("WithDir folder removed: %v", err)
	}
}

func TestWaitForContextCancel(t *testing.T) {
	scenario(t, map[string]string{"FAKEQEMU_AFTER": "run"})
	vm, err := Start(context.Background(), testDomain(), WithQEMU(fakeQEMU), WithAccel(AccelTCG))
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_, err = vm.WaitFor(ctx, regexp.MustCompile("login:"), time.Minute)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v", err)
	}
	dir := filepath.Dir(vm.SerialLog())
	vm.Close()
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary runtime folder %s left behind: %v", dir, err)
	}
	select {
	case <-vm.Done():
	default:
		t.Error("QEMU still running after Close")
	}
}

func TestGuessStage(t *testing.T) {
	tests := []struct {
		name   string
		serial string
		direct bool
		want   string
	}{
		{"nothing, BIOS boot", "", false, StageFirmware},
		{"nothing, direct boot", "", true, StageKernel},
		{"seabios", "SeaBIOS (version 1.16.2-debian-1.16.2-1)\nBooting from Hard Disk...", false, StageFirmware},
		{"grub menu", "SeaBIOS\n    GNU GRUB  version 0.97  (639K lower / 522240K upper memory)\n Booting 'Red Hat Enterprise Linux Server (2.6.18-419.el5)'", false, StageBootloader},
		{"kernel", "Booting 'CentOS'\nLinux version 2.6.9-89.EL\nVFS: Cannot open root device \"xvda1\"", false, StageKernel},
		{"modern kernel timestamps", "[    0.000000] Linux version 6.1.0-56-amd64\n[    1.234567] Freeing unused kernel image memory", true, StageKernel},
		{"nash", "Linux version 2.6.18\nRed Hat nash version 5.1.19.6 starting\nmount: could not find filesystem '/dev/root'", true, StageInitrd},
		{"initramfs /init", "[    2.0] Run /init as init process", true, StageInitrd},
		{"rc.sysinit", "Red Hat nash version 5.1.19.6 starting\nINIT: version 2.86 booting\nChecking filesystems", true, StageUserspace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := GuessStage(serialLines(tc.serial), tc.direct); got != tc.want {
				t.Errorf("GuessStage = %s, want %s", got, tc.want)
			}
		})
	}
}

// TestBootKVMHangsHint: a guest forced onto a KVM that hangs times out
// without a line of output, and the hint says what to do.
func TestBootKVMHangsHint(t *testing.T) {
	scenario(t, map[string]string{"FAKEQEMU_KVM": "hang"})
	_, err := Boot(context.Background(), testDomain(), WithQEMU(fakeQEMU), WithAccel(AccelKVM), WithTimeout(500*time.Millisecond))
	var be *BootError
	if !errors.As(err, &be) || !errors.Is(err, ErrBootTimeout) {
		t.Fatalf("got %v, want a boot timeout", err)
	}
	if be.Accel != AccelKVM || !strings.Contains(be.Hint(), "--accel tcg") {
		t.Errorf("accel %q, hint %q", be.Accel, be.Hint())
	}
}

func TestStartLongRuntimeDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 100))
	_, err := Start(context.Background(), testDomain(), WithQEMU(fakeQEMU), WithAccel(AccelTCG), WithDir(dir))
	var be *BootError
	if !errors.As(err, &be) || be.Stage != StageQEMUStart || !strings.Contains(err.Error(), "unix socket") {
		t.Fatalf("got %v, want a qemu-start error about the socket path", err)
	}
}
