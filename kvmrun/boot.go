package kvmrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/scratch"
)

// Sentinel errors a *BootError wraps.
var (
	// ErrBootTimeout: the expected pattern did not appear in time.
	ErrBootTimeout = errors.New("boot timed out")
	// ErrQEMUExited: QEMU exited before the pattern appeared.
	ErrQEMUExited = errors.New("qemu exited")
	// ErrKernelPanic: the guest kernel panicked before the pattern.
	ErrKernelPanic = errors.New("guest kernel panic")
	// ErrRebootLoop: the guest rebooted more often than WithMaxReboots
	// allows before the pattern.
	ErrRebootLoop = errors.New("guest reboot loop")
)

// Boot stages, from the start of QEMU to the guest's own programs, as
// BootError.Stage names the furthest one the serial console shows.
const (
	StageQEMUStart  = "qemu-start" // QEMU did not start, or exited at once with an error
	StageFirmware   = "firmware"   // BIOS, no output from a boot loader or kernel yet
	StageBootloader = "bootloader" // GRUB or another boot loader printed its menu
	StageKernel     = "kernel"     // the kernel printed, but its initrd did not run
	StageInitrd     = "initrd"     // the initrd's init ran (nash, dracut, an initramfs /init)
	StageUserspace  = "userspace"  // the real root's init started services
)

// tailLines is how much of the serial console a BootError keeps.
const tailLines = 50

// BootError is a guest that did not reach the expected pattern.
type BootError struct {
	// Stage is the furthest boot stage the serial output shows.
	Stage string
	// SerialTail is the last 50 lines of serial output.
	SerialTail []string
	// Clue is the serial line most likely to explain the failure (a
	// kernel panic, a missing root device), if any.
	Clue string
	// SerialLog is the file holding the whole serial output.
	SerialLog string
	// Accel is the accelerator the guest ran under, when it ran.
	Accel string
	// Err wraps ErrBootTimeout, ErrKernelPanic, ErrQEMUExited, a QEMU
	// start error or ctx's error.
	Err error
}

func (e *BootError) Error() string {
	msg := fmt.Sprintf("guest stopped in stage %s: %v", e.Stage, e.Err)
	if e.Clue != "" {
		msg += fmt.Sprintf(" (serial console: %q)", e.Clue)
	}
	return msg
}

func (e *BootError) Unwrap() error { return e.Err }

// Hint suggests where to look, for the CLI's hint line.
func (e *BootError) Hint() string {
	log := "the serial log"
	if e.SerialLog != "" {
		log = e.SerialLog
	}
	if e.Accel == AccelKVM && len(e.SerialTail) == 0 && errors.Is(e.Err, ErrBootTimeout) {
		return "not a line of output under KVM: on hosts where KVM guests hang (nested virtualisation), --accel auto finds out and uses TCG; --accel tcg forces it"
	}
	switch e.Stage {
	case StageQEMUStart:
		return "QEMU refused to run the guest: its message is above; rerun the logged command line to reproduce"
	case StageFirmware:
		return "nothing reached the serial console: the disk may have no boot loader (a PV guest booted by pygrub needs direct kernel boot), or the boot loader and kernel do not use ttyS0 (add console=ttyS0)"
	case StageBootloader:
		return "the boot loader ran but no kernel output followed: check the default entry of grub.conf and that the kernel logs to ttyS0; see " + log
	case StageKernel:
		return "the kernel started but its initrd did not take over: the initrd may lack the drivers for the new disk bus (virtio_blk, ata_piix), or root= names a Xen device (xvda); see " + log
	case StageInitrd:
		return "the initrd ran but did not mount the root filesystem: check root= and /etc/fstab device names and the initrd's drivers; see " + log
	case StageUserspace:
		return "the guest's init ran but no login prompt appeared on ttyS0: check /etc/inittab (a getty on ttyS0) and /etc/securetty; see " + log
	}
	return ""
}

// stagePatterns recognise each stage in serial output, latest first.
var stagePatterns = []struct {
	stage string
	re    *regexp.Regexp
}{
	{StageUserspace, regexp.MustCompile(`INIT: version|Run /sbin/init|Welcome to |Entering runlevel|Starting udev|Setting hostname|Checking filesystems|Remounting root filesystem|systemd\[1\]|Starting system logger|\[  OK  \]`)},
	{StageInitrd, regexp.MustCompile(`Red Hat nash|Run /init as init process|Creating root device|Mounting root filesystem|Switching to new root|switchroot|dracut|Begin: Loading essential drivers|Loading \S+\.ko module`)},
	{StageKernel, regexp.MustCompile(`Linux version |Command line: |Decompressing Linux|Probing EDD|early console|^\[ *[0-9]+\.[0-9]+\] |Uncompressing Linux|BIOS-provided physical RAM map`)},
	{StageBootloader, regexp.MustCompile(`GNU GRUB|GRUB |Booting '|grub>|Booting the kernel|ISOLINUX|SYSLINUX`)},
	{StageFirmware, regexp.MustCompile(`SeaBIOS|iPXE|Booting from |Press F12|Press ESC`)},
}

// GuessStage names the furthest boot stage the serial output shows.
// Without any sign, a direct kernel boot is in StageKernel (its kernel
// prints nothing without console=ttyS0) and a BIOS boot in StageFirmware.
func GuessStage(lines []string, directBoot bool) string {
	for _, sp := range stagePatterns {
		for _, l := range lines {
			if sp.re.MatchString(l) {
				return sp.stage
			}
		}
	}
	if directBoot {
		return StageKernel
	}
	return StageFirmware
}

var clueRe = regexp.MustCompile(`Warning: /dev/\S+ does not exist|Could not boot|Volume group ".*" not found|mount: mounting .* failed|error mounting|Kernel panic|Unable to mount root|VFS: Cannot open root device|No root device|not syncing|mount: could not find filesystem|Gave up waiting for root|can't find|No init found|Attempted to kill init|switchroot: mount failed|ALERT!|BUG: |Oops`)

// clue returns the first serial line that names a fatal problem.
func clue(lines []string) string {
	for _, l := range lines {
		if clueRe.MatchString(l) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

// BootResult is a successful boot check.
type BootResult struct {
	Name  string       `json:"name"`
	Accel AccelVerdict `json:"accel"`
	// Cmdline is the QEMU command line; config.ShellJoin makes it one a
	// person can paste.
	Cmdline []string `json:"cmdline"`
	// BootTime is from QEMU's start to the pattern on the serial console.
	BootTime time.Duration `json:"-"`
	Match    string        `json:"match"`
	// SerialLog is the serial console's file; it is gone after Boot
	// unless WithSerialLog or WithDir named it.
	SerialLog string `json:"serial_log,omitempty"`
	// Shutdown is how the guest was stopped: ShutdownPowerdown, ...
	Shutdown string `json:"shutdown"`
	// DirectBoot is the grub entry booted for a BootFromDisk guest.
	DirectBoot *DirectBoot `json:"direct_boot,omitempty"`
	// Reboots counts the reboots the guest made on its own before the
	// pattern (WithMaxReboots).
	Reboots int `json:"reboots"`
	// Findings are the problems the guest reported on its serial console.
	Findings []Finding `json:"findings,omitempty"`
	// Network is the outcome of WithNetCheck.
	Network *NetProof `json:"network,omitempty"`
}

// MarshalJSON adds boot_seconds.
func (r BootResult) MarshalJSON() ([]byte, error) {
	type plain BootResult
	return json.Marshal(struct {
		plain
		BootSeconds float64 `json:"boot_seconds"`
	}{plain(r), r.BootTime.Seconds()})
}

// Boot proves the domain boots: it picks the accelerator, finds the
// kernel in the guest's grub config when the domain boots from its disk,
// starts QEMU (on a disk snapshot unless WithSnapshot(false)), waits for
// the expected pattern on the serial console and shuts the guest down.
// A guest that does not get there fails with a *BootError. The result is
// returned with the command line whenever QEMU was started.
func Boot(ctx context.Context, dom *config.KVMDomain, opts ...Option) (*BootResult, error) {
	s := newSettings(opts)
	verdict, err := ChooseAccel(ctx, s.accel, s.probeOptions())
	if err != nil {
		return nil, &BootError{Stage: StageQEMUStart, Err: err}
	}
	qo := s.qopts
	qo.Accel = verdict.Accel
	// Without WithMaxReboots a reboot during the check is a failure to see.
	qo.NoReboot = s.reboots <= 0
	if s.reboots > 0 && dom.OnReboot == "destroy" {
		// The check follows the guest's own reboots whatever the domain
		// does on a reboot later.
		d := *dom
		d.OnReboot = "restart"
		dom = &d
	}
	qo.Snapshot = s.snapshot
	res := &BootResult{Name: dom.Name, Accel: verdict}

	var np *netPlan
	tempCapture := false
	if s.netCheck != nil {
		if s.dir == "" {
			tempCapture = true
			// The capture lives in the runtime folder: make it now.
			d, err := scratch.New("xen2kvm-run-")
			if err != nil {
				return nil, &BootError{Stage: StageQEMUStart, Err: fmt.Errorf("making runtime folder: %w", err)}
			}
			defer d.Remove()
			s.dir = d.Path
		}
		np = planNetCheck(*s.netCheck, dom, &qo, s.dir)
	}
	vm, err := start(ctx, dom, s, qo)
	if err != nil {
		return nil, err
	}
	defer vm.Close()
	res.DirectBoot = vm.DirectBoot()
	res.Cmdline = vm.Cmdline()
	if s.serialLog != "" {
		res.SerialLog = vm.SerialLog()
	}
	wctx, cancel := context.WithCancelCause(ctx)
	counted := make(chan int, 1)
	if s.reboots > 0 {
		go vm.countReboots(wctx, s.reboots, cancel, counted)
	} else {
		counted <- 0
	}
	match, err := vm.WaitFor(wctx, s.expect, s.timeout)
	cancel(nil)
	res.Reboots = <-counted
	res.Findings = vm.Findings()
	if err != nil {
		var be *BootError
		if errors.As(err, &be) {
			be.Accel = qo.Accel
		}
		return res, err
	}
	res.BootTime = time.Since(vm.Started())
	res.Match = match
	s.logger.Info("guest booted", "guest", dom.Name, "seconds", res.BootTime.Seconds(), "match", match, "reboots", res.Reboots)
	if np != nil {
		res.Network = np.prove(ctx, vm)
		s.logger.Info("network check", "guest", dom.Name, "ok", res.Network.OK, "method", res.Network.Method, "detail", res.Network.Detail)
		if tempCapture {
			res.Network.Capture = ""
		}
	}
	res.Shutdown, err = vm.Shutdown(ctx, s.grace)
	res.Findings = vm.Findings()
	if err != nil {
		return res, fmt.Errorf("shutting down %s: %w", dom.Name, err)
	}
	s.logger.Info("guest stopped", "guest", dom.Name, "how", res.Shutdown)
	return res, nil
}

// countReboots counts the guest's own reboots from QMP RESET events,
// asking QEMU for its status every half second so the events arrive. More
// than max cancels ctx with ErrRebootLoop. The count goes to out when ctx
// is done.
func (vm *VM) countReboots(ctx context.Context, max int, cancel context.CancelCauseFunc, out chan<- int) {
	n := 0
	defer func() { out <- n }()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	poll := func() {
		qctx, qcancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer qcancel()
		q, err := vm.QMP(qctx)
		if err != nil {
			return
		}
		q.Execute(qctx, "query-status", nil)
		n = countResets(q.Events())
	}
	for {
		select {
		case <-ctx.Done():
			if !vm.exited() {
				poll() // the events that came with the last output
			}
			return
		case <-vm.done:
			return
		case <-tick.C:
			poll()
			if n > max {
				vm.log.Warn("the guest keeps rebooting", "reboots", n, "max", max)
				cancel(fmt.Errorf("%w: %d reboots (at most %d allowed) before the expected pattern", ErrRebootLoop, n, max))
				return
			}
		}
	}
}

// resetBurst is how close RESET events come from one reboot: the
// firmware resets the machine again as it starts (SeaBIOS makes a second
// and third reset after a guest's reboot), no guest boots this fast.
const resetBurst = 3 * time.Second

// countResets counts the guest's reboots in QMP events: its RESET
// events, those within resetBurst of the one before counted once.
func countResets(events []QMPEvent) int {
	n := 0
	var last time.Time
	for _, e := range events {
		if e.Name != "RESET" || !guestReset(e.Data) {
			continue
		}
		if n > 0 && !e.Time.IsZero() && !last.IsZero() && e.Time.Sub(last) < resetBurst {
			last = e.Time
			continue
		}
		n++
		last = e.Time
	}
	return n
}

// guestReset tells whether a RESET event's data says the guest asked
// for it (QEMU 6+: "guest": true; older QEMU sends no data).
func guestReset(data json.RawMessage) bool {
	var d struct {
		Guest *bool `json:"guest"`
	}
	if json.Unmarshal(data, &d) != nil || d.Guest == nil {
		return true
	}
	return *d.Guest
}
