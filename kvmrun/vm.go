package kvmrun

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/scratch"
)

// Option configures Start and Boot.
type Option func(*settings)

type settings struct {
	qemu      string
	qopts     config.QEMUOptions
	dir       string
	serialLog string
	console   io.Writer
	logger    *slog.Logger
	accel     string
	probe     ProbeOptions
	expect    *regexp.Regexp
	timeout   time.Duration
	grace     time.Duration
	snapshot  bool
	bootFS    BootFSOpener
	netCheck  *NetCheck
	reboots   int
}

func newSettings(opts []Option) *settings {
	s := &settings{
		qemu:     DefaultQEMU,
		logger:   discard,
		accel:    AccelAuto,
		expect:   DefaultExpect,
		timeout:  DefaultTimeout,
		grace:    DefaultShutdownGrace,
		snapshot: true,
		bootFS:   OpenBootFS,
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Defaults of Boot.
var (
	DefaultExpect        = regexp.MustCompile(`login:`)
	DefaultTimeout       = 5 * time.Minute
	DefaultShutdownGrace = 30 * time.Second
)

// WithQEMU sets the qemu-system-x86_64 binary (default: the one on PATH).
func WithQEMU(path string) Option { return func(s *settings) { s.qemu = path } }

// WithQEMUOptions sets the runtime knobs of the QEMU command line
// (networking, display, ...). The launcher fills in its own serial log,
// QMP socket, accelerator and VNC password file.
func WithQEMUOptions(o config.QEMUOptions) Option { return func(s *settings) { s.qopts = o } }

// WithDir sets the runtime folder for the QMP socket, the serial log, the
// VNC password file and a kernel extracted from the guest's disk. By
// default a temporary folder is made and removed by VM.Close.
func WithDir(dir string) Option { return func(s *settings) { s.dir = dir } }

// WithSerialLog writes the guest's serial console to path instead of the
// runtime folder, so it outlives the VM.
func WithSerialLog(path string) Option { return func(s *settings) { s.serialLog = path } }

// WithConsole copies the serial console to w as it comes (--console).
func WithConsole(w io.Writer) Option { return func(s *settings) { s.console = w } }

// WithLogger sets where the launcher logs the QEMU command line, the
// accelerator verdict and the shutdown. The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *settings) {
		if l != nil {
			s.logger = l
		}
	}
}

// WithAccel sets the accelerator mode: AccelAuto (the default for Boot),
// AccelKVM or AccelTCG.
func WithAccel(mode string) Option { return func(s *settings) { s.accel = mode } }

// WithProbe configures the accelerator probe of AccelAuto. Its QEMU and
// Logger default to the launcher's.
func WithProbe(o ProbeOptions) Option { return func(s *settings) { s.probe = o } }

// WithExpect sets the pattern on the serial console that proves the
// guest booted (DefaultExpect: "login:"). It is matched within a line.
func WithExpect(re *regexp.Regexp) Option { return func(s *settings) { s.expect = re } }

// WithTimeout bounds the wait for the pattern (DefaultTimeout).
func WithTimeout(d time.Duration) Option { return func(s *settings) { s.timeout = d } }

// WithShutdownGrace is how long the guest gets to power off after an ACPI
// power-button press before QEMU is told to quit (DefaultShutdownGrace).
func WithShutdownGrace(d time.Duration) Option { return func(s *settings) { s.grace = d } }

// WithSnapshot tells whether Boot runs the disks on a throw-away snapshot
// (the default), leaving the images as they were.
func WithSnapshot(on bool) Option { return func(s *settings) { s.snapshot = on } }

// WithMaxReboots lets the guest reboot up to n times on its own before
// Boot sees the expected pattern (an SELinux relabel, a fsck that
// repaired something): QEMU runs without -no-reboot and the reboots are
// counted from QMP RESET events. One more fails the boot with
// ErrRebootLoop. The default, 0, makes a reboot end QEMU and so fail the
// boot.
func WithMaxReboots(n int) Option { return func(s *settings) { s.reboots = n } }

// WithBootFS sets how Start and Boot open the boot filesystem of a guest that
// boots from its disk's grub config (default OpenBootFS).
func WithBootFS(open BootFSOpener) Option { return func(s *settings) { s.bootFS = open } }

// VM is a running QEMU.
type VM struct {
	argv       []string
	dir        string
	ownDir     *scratch.Dir // the runtime folder when the VM made it
	serialLog  string
	qmpPath    string
	started    time.Time
	directBoot bool
	boot       *DirectBoot

	cmd    *exec.Cmd
	stderr syncBuffer
	done   chan struct{} // closed when QEMU has exited
	err    error         // QEMU's exit, valid after done

	serial *serialWatcher
	log    *slog.Logger

	qmpMu sync.Mutex
	qmp   *QMP
}

// Start runs QEMU for the domain and returns at once; the guest boots in
// the background. The accelerator is the one of WithAccel: AccelAuto runs
// ChooseAccel. A BootFromDisk domain is booted from the default entry of
// the grub config on its first disk (see PyGrub). Close the VM when done
// with it.
func Start(ctx context.Context, dom *config.KVMDomain, opts ...Option) (*VM, error) {
	s := newSettings(opts)
	qo := s.qopts
	switch s.accel {
	case AccelKVM, AccelTCG:
		qo.Accel = s.accel
	default:
		v, err := ChooseAccel(ctx, s.accel, s.probeOptions())
		if err != nil {
			return nil, &BootError{Stage: StageQEMUStart, Err: err}
		}
		qo.Accel = v.Accel
	}
	return start(ctx, dom, s, qo)
}

func (s *settings) probeOptions() ProbeOptions {
	p := s.probe
	if p.QEMU == "" {
		p.QEMU = s.qemu
	}
	if p.Logger == nil {
		p.Logger = s.logger
	}
	return p
}

// start runs QEMU with the accelerator already in qo.
func start(ctx context.Context, dom *config.KVMDomain, s *settings, qo config.QEMUOptions) (*VM, error) {
	vm := &VM{dir: s.dir, log: s.logger, done: make(chan struct{})}
	if vm.dir == "" {
		// scratch: a run killed before removing it leaves a folder that
		// the next run removes.
		d, err := scratch.New("xen2kvm-run-")
		if err != nil {
			return nil, &BootError{Stage: StageQEMUStart, Err: fmt.Errorf("making runtime folder: %w", err)}
		}
		vm.dir, vm.ownDir = d.Path, d
	} else if err := os.MkdirAll(vm.dir, 0o755); err != nil {
		return nil, &BootError{Stage: StageQEMUStart, Err: fmt.Errorf("making runtime folder: %w", err)}
	}
	fail := func(err error) (*VM, error) {
		vm.removeDir()
		return nil, &BootError{Stage: StageQEMUStart, Err: err}
	}

	vm.serialLog = s.serialLog
	if vm.serialLog == "" {
		vm.serialLog = filepath.Join(vm.dir, "serial.log")
	}
	// Empty it now, so nothing of an earlier run is read as this one's.
	if err := os.WriteFile(vm.serialLog, nil, 0o644); err != nil {
		return fail(fmt.Errorf("creating serial log: %w", err))
	}
	vm.qmpPath = filepath.Join(vm.dir, "qmp.sock")
	if len(vm.qmpPath) > maxSocketPath {
		return fail(fmt.Errorf("QMP socket path %s is longer than a unix socket allows (%d bytes): give a shorter runtime folder", vm.qmpPath, maxSocketPath))
	}
	os.Remove(vm.qmpPath)
	qo.SerialLog, qo.QMPSocket = vm.serialLog, vm.qmpPath
	if g := dom.Graphics; g != nil && g.Password != "" && qo.VNCPasswordFile == "" {
		qo.VNCPasswordFile = filepath.Join(vm.dir, "vnc.pass")
		if err := os.WriteFile(qo.VNCPasswordFile, []byte(g.Password), 0o600); err != nil {
			return fail(fmt.Errorf("writing VNC password file: %w", err))
		}
	}
	if dom.BootFromDisk && qo.Kernel == "" && dom.Kernel == "" {
		db, err := PyGrubDisk(ctx, dom, vm.dir, s.bootFS)
		if err != nil {
			vm.removeDir()
			return nil, &BootError{Stage: StageBootloader, Err: err}
		}
		vm.log.Info("booting the default grub entry of the guest's disk", "title", db.Title, "kernel", db.KernelPath, "initrd", db.InitrdPath, "append", db.Append)
		qo.Kernel, qo.Initrd, qo.Append = db.Kernel, db.Initrd, db.Append
		vm.boot = db
	}
	if qo.Accel == AccelTCG {
		tcgTimerWorkaround(dom, &qo)
	}
	vm.directBoot = qo.Kernel != "" || dom.Kernel != ""

	vm.argv = append([]string{s.qemu}, config.QEMUArgs(dom, qo)...)
	vm.log.Info("starting QEMU", "guest", dom.Name, "accel", qo.Accel, "cmdline", config.ShellJoin(vm.argv))

	cmd := exec.Command(vm.argv[0], vm.argv[1:]...)
	cmd.Stdout = &vm.stderr // QEMU prints nothing there with the serial port in a file
	cmd.Stderr = &vm.stderr
	// Its own process group: a ^C at the terminal is for xen2kvm, which
	// then stops QEMU itself. And no QEMU outlives a killed xen2kvm.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting %s: %w", s.qemu, err))
	}
	vm.cmd = cmd
	vm.started = time.Now()
	go func() {
		vm.err = cmd.Wait()
		close(vm.done)
	}()
	vm.serial = newSerialWatcher(vm.serialLog, s.console)
	vm.serial.scan.start = vm.started
	go vm.serial.run(vm.done)
	return vm, nil
}

// Cmdline is QEMU's argv, the program first; config.ShellJoin makes it a
// command a person can paste.
func (vm *VM) Cmdline() []string { return append([]string(nil), vm.argv...) }

// DirectBoot is the grub entry read from the guest's disk for a
// BootFromDisk domain, nil for others.
func (vm *VM) DirectBoot() *DirectBoot { return vm.boot }

// SerialLog is the file the guest's serial console is written to.
func (vm *VM) SerialLog() string { return vm.serialLog }

// QMPSocket is the path of QEMU's QMP socket.
func (vm *VM) QMPSocket() string { return vm.qmpPath }

// Started is when QEMU was started.
func (vm *VM) Started() time.Time { return vm.started }

// Done is closed when QEMU has exited.
func (vm *VM) Done() <-chan struct{} { return vm.done }

// Serial returns the serial console output so far.
func (vm *VM) Serial() string { return vm.serial.text() }

// Findings returns the problems the guest reported on its serial console
// so far (see Finding).
func (vm *VM) Findings() []Finding {
	vm.serial.mu.Lock()
	defer vm.serial.mu.Unlock()
	return append([]Finding(nil), vm.serial.scan.findings...)
}

// Wait waits for QEMU to exit and returns how it exited.
func (vm *VM) Wait() error {
	<-vm.done
	return vm.exitErr()
}

func (vm *VM) exitErr() error {
	if vm.err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w: %s", filepath.Base(vm.argv[0]), vm.err, strings.TrimSpace(vm.stderr.String()))
}

func (vm *VM) exited() bool {
	select {
	case <-vm.done:
		return true
	default:
		return false
	}
}

// WaitFor waits until re matches a line of the serial console and returns
// the match. It fails with a *BootError wrapping ErrBootTimeout when
// timeout passes first, ErrKernelPanic when the guest kernel panics (a
// moment later, so the panic's trace is in the tail), ErrQEMUExited when
// QEMU exits first, or ctx's error.
func (vm *VM) WaitFor(ctx context.Context, re *regexp.Regexp, timeout time.Duration) (string, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	scanFrom := int64(0) // absolute offset in the serial output
	var settled <-chan time.Time
	panicked := false
	for {
		data, base, changed, eof := vm.serial.snapshot()
		rel := max(scanFrom-base, 0)
		if loc := re.FindIndex(data[rel:]); loc != nil {
			return string(data[rel+int64(loc[0]) : rel+int64(loc[1])]), nil
		}
		if !panicked && panicRe.Match(data[rel:]) {
			panicked = true
			settled = time.After(panicSettle)
		}
		// Rescan only the last, unfinished line next time.
		if i := bytes.LastIndexByte(data, '\n'); i >= 0 {
			scanFrom = base + int64(i) + 1
		}
		if eof {
			if panicked {
				return "", vm.panicError()
			}
			err := fmt.Errorf("%w before %q appeared on the serial console", ErrQEMUExited, re)
			if xerr := vm.exitErr(); xerr != nil {
				err = fmt.Errorf("%w: %v", err, xerr)
			} else {
				err = fmt.Errorf("%w (exit status 0: the guest powered off, rebooted or crashed)", err)
			}
			return "", vm.bootError(err)
		}
		select {
		case <-changed:
		case <-settled:
			return "", vm.panicError()
		case <-timer.C:
			return "", vm.bootError(fmt.Errorf("%w: %q not seen on the serial console within %v", ErrBootTimeout, re, timeout))
		case <-ctx.Done():
			return "", vm.bootError(context.Cause(ctx))
		}
	}
}

// panicRe is a guest kernel's last words: after them nothing will come,
// so waiting for the timeout is pointless.
var panicRe = regexp.MustCompile(`Kernel panic - not syncing`)

// panicSettle is how long WaitFor still collects output after a panic
// (the trace and the "end Kernel panic" line).
const panicSettle = 2 * time.Second

func (vm *VM) panicError() *BootError {
	line := "Kernel panic"
	for _, l := range serialLines(vm.serial.text()) {
		if panicRe.MatchString(l) {
			line = strings.TrimSpace(l)
			break
		}
	}
	return vm.bootError(fmt.Errorf("%w: %q", ErrKernelPanic, line))
}

func (vm *VM) bootError(err error) *BootError {
	text := vm.serial.text()
	lines := serialLines(text)
	be := &BootError{Stage: GuessStage(lines, vm.directBoot), Err: err, SerialLog: vm.serialLog}
	if errors.Is(err, ErrQEMUExited) && strings.TrimSpace(text) == "" && vm.err != nil {
		be.Stage = StageQEMUStart
	}
	be.Clue = clue(lines)
	if len(lines) > tailLines {
		lines = lines[len(lines)-tailLines:]
	}
	be.SerialTail = lines
	return be
}

// QMP returns a QMP connection to the VM, made on first use.
func (vm *VM) QMP(ctx context.Context) (*QMP, error) {
	vm.qmpMu.Lock()
	defer vm.qmpMu.Unlock()
	if vm.qmp != nil {
		return vm.qmp, nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-vm.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	q, err := DialQMP(ctx, vm.qmpPath)
	if err != nil {
		if vm.exited() {
			return nil, fmt.Errorf("%w: %v", ErrQEMUExited, vm.exitErr())
		}
		return nil, err
	}
	vm.qmp = q
	return q, nil
}

// How the guest was stopped, as Shutdown reports it.
const (
	ShutdownPowerdown = "powerdown" // the guest powered off after the ACPI power button
	ShutdownQuit      = "quit"      // QEMU quit over QMP after the grace period
	ShutdownKill      = "kill"      // QEMU was killed
	ShutdownExited    = "exited"    // QEMU had already exited
)

// Shutdown stops the guest cleanly: it presses the ACPI power button
// (QMP system_powerdown), waits up to grace for the guest to power off,
// then tells QEMU to quit, and kills it as a last resort. It returns which
// of these stopped it.
func (vm *VM) Shutdown(ctx context.Context, grace time.Duration) (string, error) {
	if vm.exited() {
		return ShutdownExited, nil
	}
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-vm.done:
			return true
		case <-t.C:
			return false
		case <-ctx.Done():
			return false
		}
	}
	// Each QMP exchange gets its own bound: a wedged QEMU must not stall
	// the shutdown.
	execute := func(command string) error {
		qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		q, err := vm.QMP(qctx)
		if err != nil {
			return err
		}
		_, err = q.Execute(qctx, command, nil)
		return err
	}
	err := execute("system_powerdown")
	if err == nil {
		vm.log.Info("pressed the ACPI power button", "grace", grace)
		if wait(grace) {
			return ShutdownPowerdown, nil
		}
		vm.log.Info("the guest did not power off; telling QEMU to quit", "grace", grace)
		err = execute("quit")
		if err == nil && wait(10*time.Second) {
			return ShutdownQuit, nil
		}
	}
	if vm.exited() {
		return ShutdownExited, nil
	}
	vm.log.Warn("killing QEMU", "err", err)
	if kerr := vm.Kill(); kerr != nil {
		return ShutdownKill, kerr
	}
	if err != nil {
		return ShutdownKill, fmt.Errorf("qmp shutdown: %w", err)
	}
	return ShutdownKill, nil
}

// Kill kills QEMU and waits for it to exit.
func (vm *VM) Kill() error {
	if vm.exited() {
		return nil
	}
	if err := vm.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("killing QEMU: %w", err)
	}
	select {
	case <-vm.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("killing QEMU: pid %d still running 10s after SIGKILL", vm.cmd.Process.Pid)
	}
}

// Close kills QEMU if it still runs, closes the QMP connection and
// removes the runtime folder Start made.
func (vm *VM) Close() error {
	err := vm.Kill()
	vm.qmpMu.Lock()
	if vm.qmp != nil {
		vm.qmp.Close()
	}
	vm.qmpMu.Unlock()
	<-vm.serial.stopped
	vm.removeDir()
	return err
}

func (vm *VM) removeDir() {
	if vm.ownDir != nil {
		vm.ownDir.Remove()
	}
}

// serialWatcher follows the serial log file QEMU writes.
type serialWatcher struct {
	path    string
	console io.Writer
	stopped chan struct{}

	mu      sync.Mutex
	buf     []byte
	base    int64         // offset of buf[0] in the whole output
	changed chan struct{} // closed and replaced when buf grows
	eof     bool          // QEMU exited and the file is read to its end
	scan    lineScanner   // line numbers and findings
}

// maxSocketPath is the longest unix socket path Linux takes (sun_path
// is 108 bytes with the terminating NUL).
const maxSocketPath = 107

// maxSerial bounds the serial output kept in memory; older output is
// dropped (the file keeps all of it).
const maxSerial = 4 << 20

func newSerialWatcher(path string, console io.Writer) *serialWatcher {
	return &serialWatcher{path: path, console: console, stopped: make(chan struct{}), changed: make(chan struct{})}
}

func (w *serialWatcher) run(exited <-chan struct{}) {
	defer close(w.stopped)
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	chunk := make([]byte, 64<<10)
	readAll := func() {
		if f == nil {
			var err error
			if f, err = os.Open(w.path); err != nil {
				return
			}
		}
		for {
			n, _ := f.Read(chunk)
			if n == 0 {
				return
			}
			w.add(chunk[:n])
		}
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-exited:
			readAll()
			w.mu.Lock()
			w.eof = true
			close(w.changed)
			w.changed = make(chan struct{})
			w.mu.Unlock()
			return
		case <-tick.C:
			readAll()
		}
	}
}

func (w *serialWatcher) add(p []byte) {
	if w.console != nil {
		w.console.Write(p)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.scan.add(p, time.Now())
	w.buf = append(w.buf, p...)
	if len(w.buf) > maxSerial {
		drop := len(w.buf) - maxSerial/2
		if i := bytes.IndexByte(w.buf[drop:], '\n'); i >= 0 {
			drop += i + 1
		}
		w.buf = append([]byte(nil), w.buf[drop:]...)
		w.base += int64(drop)
	}
	close(w.changed)
	w.changed = make(chan struct{})
}

func (w *serialWatcher) snapshot() (data []byte, base int64, changed <-chan struct{}, eof bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf[:len(w.buf):len(w.buf)], w.base, w.changed, w.eof
}

func (w *serialWatcher) text() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return string(w.buf)
}

// serialLines splits serial output into lines without their CR/LF and
// terminal escape noise at the ends.
func serialLines(text string) []string {
	text = strings.TrimRight(text, "\r\n")
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, "\r")
	}
	return lines
}

// tcgTimerWorkaround adds no_timer_check to a direct kernel boot under TCG.
// On a busy host an emulated CPU can be too slow for the kernel's check that
// the IO-APIC timer ticks, and the kernel panics with "IO-APIC + timer
// doesn't work". The option skips that check for this launch only; the
// guest's own boot configuration is not changed.
func tcgTimerWorkaround(dom *config.KVMDomain, qo *config.QEMUOptions) {
	if qo.Kernel == "" {
		if dom.Kernel == "" {
			return
		}
		qo.Kernel, qo.Initrd, qo.Append = dom.Kernel, dom.Initrd, dom.Cmdline
	}
	for _, w := range strings.Fields(qo.Append) {
		if w == "no_timer_check" {
			return
		}
	}
	qo.Append = strings.TrimSpace(qo.Append + " no_timer_check")
}
