package kvmrun

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
	"github.com/xen2kvm/xen2kvm/internal/scratch"
)

// Accelerator modes for ChooseAccel and the --accel flag.
const (
	AccelAuto = "auto" // use KVM when the probe proves it works, else TCG
	AccelKVM  = "kvm"  // KVM, without probing
	AccelTCG  = "tcg"  // QEMU's emulator: slow, works everywhere
)

// ErrKVMUnusable is wrapped by ProbeKVM when KVM cannot run a guest on
// this host: no /dev/kvm, QEMU refuses it, or the probe guest hangs (as
// it does under some nested virtualisation).
var ErrKVMUnusable = errors.New("kvm unusable")

// DefaultProbeTimeout bounds one run of the accelerator probe. The probe
// guest needs well under a second; the rest is slack for a loaded host.
const DefaultProbeTimeout = 10 * time.Second

// probeExit is QEMU's exit status when the probe firmware reaches its end:
// isa-debug-exit exits with (value<<1)|1 and the firmware writes 0x31.
const probeExit = 0x31<<1 | 1

// probeMarker is what the probe firmware prints on COM1: one letter per
// CPU mode reached.
const probeMarker = "RPL\n"

// probeFirmware is the code at the start of the probe's 64 KiB -bios
// image (testdata/probe.S is its source). It does what the start of a
// Linux boot does to the CPU: real mode, a GDT and 32-bit protected mode,
// page tables, PAE and long mode, printing a letter to COM1 in each, then
// exits QEMU through isa-debug-exit. Merely opening /dev/kvm proves
// nothing: on hosts where KVM is broken (nested virtualisation) guests
// hang exactly at these mode switches.
var probeFirmware = []byte{
	// real mode, CS base 0xF0000
	0xfa,             // 00: cli
	0xba, 0xf8, 0x03, // 01: mov $0x3f8,%dx
	0xb0, 0x52, // 04: mov $0x52,%al
	0xee,                                     // 06: out %al,(%dx)
	0x2e, 0x66, 0x0f, 0x01, 0x16, 0xc8, 0x00, // 07: lgdtl %cs:0xc8
	0x0f, 0x20, 0xc0, // 0e: mov %cr0,%eax
	0x66, 0x83, 0xc8, 0x01, // 11: or $0x1,%eax
	0x0f, 0x22, 0xc0, // 15: mov %eax,%cr0
	0x66, 0xea, 0x20, 0x00, 0x0f, 0x00, 0x08, 0x00, // 18: ljmpl $0x8,$0xf0020
	0x66, 0xb8, 0x10, 0x00, // 20: mov $0x10,%ax
	0x8e, 0xd8, // 24: mov %eax,%ds
	0x8e, 0xc0, // 26: mov %eax,%es
	0x8e, 0xd0, // 28: mov %eax,%ss
	0x66, 0xba, 0xf8, 0x03, // 2a: mov $0x3f8,%dx
	0xb0, 0x50, // 2e: mov $0x50,%al
	0xee,                         // 30: out %al,(%dx)
	0xbf, 0x00, 0x10, 0x00, 0x00, // 31: mov $0x1000,%edi
	0x31, 0xc0, // 36: xor %eax,%eax
	0xb9, 0x00, 0x0c, 0x00, 0x00, // 38: mov $0xc00,%ecx
	0xf3, 0xab, // 3d: rep stos %eax,%es:(%edi)
	0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00, // 3f: movl $0x2003,0x1000
	0xc7, 0x05, 0x00, 0x20, 0x00, 0x00, 0x03, 0x30, 0x00, 0x00, // 49: movl $0x3003,0x2000
	0xc7, 0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00, // 53: movl $0x83,0x3000
	0xb8, 0x00, 0x10, 0x00, 0x00, // 5d: mov $0x1000,%eax
	0x0f, 0x22, 0xd8, // 62: mov %eax,%cr3
	0x0f, 0x20, 0xe0, // 65: mov %cr4,%eax
	0x83, 0xc8, 0x20, // 68: or $0x20,%eax
	0x0f, 0x22, 0xe0, // 6b: mov %eax,%cr4
	0xb9, 0x80, 0x00, 0x00, 0xc0, // 6e: mov $0xc0000080,%ecx
	0x0f, 0x32, // 73: rdmsr
	0x0d, 0x00, 0x01, 0x00, 0x00, // 75: or $0x100,%eax
	0x0f, 0x30, // 7a: wrmsr
	0x0f, 0x20, 0xc0, // 7c: mov %cr0,%eax
	0x0d, 0x00, 0x00, 0x00, 0x80, // 7f: or $0x80000000,%eax
	0x0f, 0x22, 0xc0, // 84: mov %eax,%cr0
	0xea, 0x8e, 0x00, 0x0f, 0x00, 0x18, 0x00, // 87: ljmp $0x18,$0xf008e
	0x66, 0xba, 0xf8, 0x03, // 8e: mov $0x3f8,%dx
	0xb0, 0x4c, // 92: mov $0x4c,%al
	0xee,       // 94: out %al,(%dx)
	0xb0, 0x0a, // 95: mov $0xa,%al
	0xee,                   // 97: out %al,(%dx)
	0x66, 0xba, 0xf4, 0x00, // 98: mov $0xf4,%dx
	0xb0, 0x31, // 9c: mov $0x31,%al
	0xee,       // 9e: out %al,(%dx)
	0xf4,       // 9f: hlt
	0xeb, 0xfd, // a0: jmp 0x9f
	0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00, // a2: padding to 8 (a 6-byte nop)
	// a8: GDT: null, 0x08 32-bit code, 0x10 data, 0x18 64-bit code
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
	0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00,
	0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00,
	0x1f, 0x00, 0xa8, 0x00, 0x0f, 0x00, // c8: GDTR: limit 31, base 0xF00A8
}

// probeBIOS returns the probe's -bios image: the firmware at its start
// and, at the reset vector (F000:FFF0), a far jump to it.
func probeBIOS() []byte {
	img := make([]byte, 64<<10)
	copy(img, probeFirmware)
	copy(img[0xFFF0:], []byte{0xea, 0x00, 0x00, 0x00, 0xf0}) // ljmp $0xf000,$0x0
	return img
}

// ProbeKVM proves that qemu (a qemu-system-x86_64 binary; "" means the
// one on PATH) can run a guest under KVM: it runs the probe firmware with
// -accel kvm and waits at most timeout for it to reach long mode and make
// QEMU exit. It returns nil when KVM works and an error wrapping
// ErrKVMUnusable when it does not; other errors mean the probe could not
// run at all (no qemu, ctx done).
func ProbeKVM(ctx context.Context, qemu string, timeout time.Duration) error {
	err := runProbe(ctx, qemu, AccelKVM, timeout)
	var pe *probeFailure
	if errors.As(err, &pe) {
		if _, serr := os.Stat("/dev/kvm"); serr != nil {
			return fmt.Errorf("%w: %v (%v)", ErrKVMUnusable, pe, serr)
		}
		return fmt.Errorf("%w: %v", ErrKVMUnusable, pe)
	}
	return err
}

// probeFailure is a probe guest that ran but did not prove anything: it
// hung, or QEMU exited without the firmware's marker and status.
type probeFailure struct{ msg string }

func (e *probeFailure) Error() string { return e.msg }

// runProbe boots the probe firmware under accel.
func runProbe(ctx context.Context, qemu, accel string, timeout time.Duration) error {
	if qemu == "" {
		qemu = DefaultQEMU
	}
	if timeout <= 0 {
		timeout = DefaultProbeTimeout
	}
	// In a scratch folder: a probe killed before removing its firmware
	// leaves it where the next probe removes it.
	dir, err := scratch.New("xen2kvm-probe-")
	if err != nil {
		return fmt.Errorf("writing probe firmware: %w", err)
	}
	defer dir.Remove()
	f, err := os.Create(filepath.Join(dir.Path, "probe.bin"))
	if err != nil {
		return fmt.Errorf("writing probe firmware: %w", err)
	}
	_, err = f.Write(probeBIOS())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing probe firmware: %w", err)
	}
	argv := []string{qemu,
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", "pc", "-accel", accel, "-m", "16",
		"-bios", f.Name(),
		"-chardev", "stdio,id=com1", "-device", "isa-serial,chardev=com1",
		"-device", "isa-debug-exit,iobase=0xf4,iosize=4",
	}
	var stdout, stderr syncBuffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting accelerator probe: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case err := <-done:
		serial := stdout.String()
		var ee *exec.ExitError
		if errors.As(err, &ee) && ee.ExitCode() == probeExit && strings.Contains(serial, probeMarker) {
			return nil
		}
		return &probeFailure{fmt.Sprintf("probe guest under %s did not finish (%v, serial output %q): %s: %s",
			accel, exitDesc(err), serial, config.ShellJoin(argv), strings.TrimSpace(stderr.String()))}
	case <-timer.C:
		abandon(cmd, done)
		return &probeFailure{fmt.Sprintf("probe guest under %s hung: no exit within %v (serial output %q, R/P/L mark real, protected and long mode)",
			accel, timeout, stdout.String())}
	case <-ctx.Done():
		abandon(cmd, done)
		return ctx.Err()
	}
}

// abandon kills a process and waits a little for it to go; a process
// stuck in the kernel may outlive that, and is then left to be reaped by
// its waiting goroutine.
func abandon(cmd *exec.Cmd, done <-chan error) {
	cmd.Process.Kill()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
	}
}

func exitDesc(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// ProbeOptions configure ChooseAccel.
type ProbeOptions struct {
	// QEMU is the qemu-system-x86_64 binary; "" means DefaultQEMU.
	QEMU string
	// Timeout bounds one probe run; 0 means DefaultProbeTimeout.
	Timeout time.Duration
	// CacheDir holds the verdict of this host boot (accel.json); ""
	// means <user cache dir>/xen2kvm.
	CacheDir string
	// NoCache probes even when a verdict is cached, and stores none.
	NoCache bool
	// Logger receives the warning when KVM is unusable. nil discards.
	Logger *slog.Logger
}

// AccelVerdict is the accelerator ChooseAccel picked and why.
type AccelVerdict struct {
	Accel  string `json:"accel"`            // kvm | tcg
	Reason string `json:"reason,omitempty"` // why not KVM
	// Probed is when the probe ran (zero when none did), ProbeTime how
	// long it took; Cached tells that the verdict came from an earlier
	// probe during this host boot.
	Probed    time.Time     `json:"probed,omitzero"`
	ProbeTime time.Duration `json:"probe_time_ns,omitempty"`
	Cached    bool          `json:"cached,omitempty"`
	BootID    string        `json:"boot_id,omitempty"`
}

// ChooseAccel resolves an accelerator mode. "kvm" and "tcg" are taken as
// given; "auto" (or "") uses KVM only when ProbeKVM proves it works, and
// otherwise falls back to TCG with a warning. An auto verdict is kept per
// host boot (keyed by /proc/sys/kernel/random/boot_id) and per QEMU
// binary, so a host where KVM hangs pays for the probe's timeout once.
func ChooseAccel(ctx context.Context, mode string, o ProbeOptions) (AccelVerdict, error) {
	switch mode {
	case AccelKVM:
		return AccelVerdict{Accel: AccelKVM}, nil
	case AccelTCG:
		return AccelVerdict{Accel: AccelTCG, Reason: "TCG requested"}, nil
	case AccelAuto, "":
	default:
		return AccelVerdict{}, fmt.Errorf("unknown accelerator %q (want kvm, tcg or auto)", mode)
	}
	log := o.Logger
	if log == nil {
		log = discard
	}
	qemu := o.QEMU
	if qemu == "" {
		qemu = DefaultQEMU
	}
	if p, err := exec.LookPath(qemu); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			qemu = abs
		}
	}
	bootID := readBootID()
	cacheFile := ""
	if !o.NoCache && bootID != "" {
		dir := o.CacheDir
		if dir == "" {
			if d, err := os.UserCacheDir(); err == nil {
				dir = filepath.Join(d, "xen2kvm")
			}
		}
		if dir != "" {
			cacheFile = filepath.Join(dir, "accel.json")
		}
	}
	if cacheFile != "" {
		if v, ok := loadVerdict(cacheFile, bootID, qemu); ok {
			v.Cached = true
			if v.Accel != AccelKVM {
				log.Warn("KVM is unusable on this host (verdict of an earlier probe during this boot); using TCG, which is much slower", "reason", v.Reason, "cache", cacheFile)
			}
			return v, nil
		}
	}

	start := time.Now()
	err := ProbeKVM(ctx, qemu, o.Timeout)
	v := AccelVerdict{Accel: AccelKVM, Probed: start.UTC(), ProbeTime: time.Since(start), BootID: bootID}
	switch {
	case err == nil:
	case errors.Is(err, ErrKVMUnusable):
		// Make sure it is KVM that fails, not QEMU or the probe itself.
		if terr := runProbe(ctx, qemu, AccelTCG, o.Timeout); terr != nil {
			return AccelVerdict{}, fmt.Errorf("accelerator probe fails under TCG too, so QEMU itself is broken: %w (under KVM: %v)", terr, err)
		}
		v.Accel, v.Reason = AccelTCG, err.Error()
		log.Warn("KVM is unusable on this host; using TCG, which is much slower", "reason", v.Reason)
	default:
		return AccelVerdict{}, err
	}
	if cacheFile != "" {
		if err := storeVerdict(cacheFile, bootID, qemu, v); err != nil {
			log.Debug("not caching the accelerator verdict", "err", err)
		}
	}
	return v, nil
}

// bootIDFile names the current host boot; a var so tests can move it.
var bootIDFile = "/proc/sys/kernel/random/boot_id"

func readBootID() string {
	b, err := os.ReadFile(bootIDFile)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// verdictCache is the content of accel.json.
type verdictCache struct {
	BootID   string                  `json:"boot_id"`
	Verdicts map[string]AccelVerdict `json:"verdicts"` // by QEMU binary
}

func loadVerdict(file, bootID, qemu string) (AccelVerdict, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return AccelVerdict{}, false
	}
	var c verdictCache
	if json.Unmarshal(b, &c) != nil || c.BootID != bootID {
		return AccelVerdict{}, false
	}
	v, ok := c.Verdicts[qemu]
	if !ok || (v.Accel != AccelKVM && v.Accel != AccelTCG) {
		return AccelVerdict{}, false
	}
	return v, true
}

func storeVerdict(file, bootID, qemu string, v AccelVerdict) error {
	var c verdictCache
	if b, err := os.ReadFile(file); err == nil {
		json.Unmarshal(b, &c)
	}
	if c.BootID != bootID || c.Verdicts == nil {
		c = verdictCache{BootID: bootID, Verdicts: map[string]AccelVerdict{}}
	}
	c.Verdicts[qemu] = v
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(file, append(b, '\n'), 0o600)
}

// syncBuffer is a bytes.Buffer safe for one writer (a child process's
// output copier) and concurrent readers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

var discard = slog.New(slog.DiscardHandler)
