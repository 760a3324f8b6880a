package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/firstboot"
	"github.com/xen2kvm/xen2kvm/internal/scratch"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

func init() { register(newBootCommand) }

type bootFlags struct {
	expect     string
	timeout    time.Duration
	console    bool
	accel      string
	json       bool
	qemu       string
	serialLog  string
	noSnapshot bool
	net        string
	display    string
	grace      time.Duration
	allowDrift bool
	netPort    int
}

func newBootCommand() *cobra.Command {
	var f bootFlags
	cmd := &cobra.Command{
		Use:   "boot OUTDIR|DOMAIN.xml",
		Short: "Boot a migrated guest under QEMU and wait for its login prompt",
		Long: `Boot a migrated guest under QEMU/KVM and prove it reaches its login prompt.

The argument is a migrate OUTDIR (the single *.xml in it) or a libvirt
domain XML written by xen2kvm. boot starts qemu-system-x86_64 with the
guest's disks on a throw-away snapshot (--no-snapshot keeps the guest's
writes), its serial console in a log file and QMP on a unix socket, then
waits for --expect on the serial console. When it appears the guest is
shut down cleanly: the ACPI power button, then QEMU's quit after a grace
period. The QEMU command line is logged, so you can rerun it yourself.

A PV guest that Xen booted with pygrub has no boot loader of its own:
its kernel, initrd and command line are read from the default entry of
the grub config on its first disk and booted directly.

--accel auto (the default) uses KVM only when a tiny probe guest proves
it works on this host (on some hosts, such as nested virtualisation, KVM
guests hang); otherwise TCG, with a warning. The verdict is kept until
the host reboots (in ~/.cache/xen2kvm/accel.json: delete it to probe
again).

The serial console is written to NAME.boot.log next to the XML (or
--serial-log FILE); --console also copies it to the terminal. If the
guest does not get there, boot exits 1 naming the stage it reached
(firmware, bootloader, kernel, initrd, userspace) with the last lines of
its serial console.

Unless --no-snapshot, boot also proves the guest's first boot as migrate's
boot check does: the guest runs on throw-away qcow2 overlays above its
images and may reboot on its own a few times (an SELinux relabel); its
first NIC gets a user-mode network shaped to its own ifcfg-eth0, and a
TCP connection to --net-check-port (forwarded from the host), or an ARP
or ICMP answer in a capture of that network, proves its network stack;
after the power-off the overlays are read back and every file the boot
changed under /etc and /boot is shown as a diff. A rewritten or moved
ifcfg file, a new udev interface name, a changed fstab, grub.conf or
modprobe.conf, a /.autorelabel left behind, and console lines that name
a Xen PV driver or disk or show a debug kernel booted while a production
one is installed fail the check unless --allow-drift; the guest's own
failure lines ([FAILED], panics, fsck)
are listed with their line and time.`,
		Example: `  # Prove the migrated web01 boots:
  xen2kvm boot /srv/kvm/web01

  # Watch it boot, under TCG, with a longer timeout:
  xen2kvm boot /srv/kvm/web01/web01.xml --console --accel tcg --timeout 10m

  # A guest whose prompt reads differently, result as JSON:
  xen2kvm boot /srv/kvm/db02 --expect 'db02 login:|Password:' --json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runBoot(cmd, args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.expect, "expect", "login:", "`REGEX` on the serial console that proves the guest booted")
	fl.DurationVar(&f.timeout, "timeout", 5*time.Minute, "how long to wait for --expect")
	fl.BoolVar(&f.console, "console", false, "copy the guest's serial console to the terminal")
	fl.StringVar(&f.accel, "accel", "auto", "accelerator: kvm, tcg or auto (KVM when it really works, else TCG)")
	fl.BoolVar(&f.json, "json", false, "print the result as JSON on stdout")
	fl.StringVar(&f.qemu, "qemu", kvmrun.DefaultQEMU, "the QEMU `BINARY` to run")
	fl.StringVar(&f.serialLog, "serial-log", "", "write the serial console to `FILE` (default NAME.boot.log next to the XML)")
	fl.BoolVar(&f.noSnapshot, "no-snapshot", false, "let the guest write to its disk images (default: a throw-away snapshot)")
	fl.StringVar(&f.net, "net", "user", "networking: user (no privileges needed), bridge (each NIC on its bridge, via qemu-bridge-helper), tap or none")
	fl.StringVar(&f.display, "display", "", "graphics: none, or a QEMU -display value such as vnc=:5 or gtk (default: the guest's own VNC settings)")
	fl.DurationVar(&f.grace, "shutdown-grace", kvmrun.DefaultShutdownGrace, "how long the guest gets to power off after the ACPI power button")
	fl.BoolVar(&f.allowDrift, "allow-drift", false, "pass even when the first boot changed the guest's network config, fstab, grub.conf or modprobe.conf, or its console named Xen drivers or disks or a debug kernel (a warning instead)")
	fl.IntVar(&f.netPort, "net-check-port", 22, "TCP `PORT` the network proof connects to on the guest (0: no network proof)")
	return cmd
}

// bootJSON is boot's --json output: the result's own JSON (see
// kvmrun.BootResult) with "ok" and, on failure, "error", "stage" and
// "serial_tail".
func bootJSON(res *kvmrun.BootResult, fb *report.Boot, err error) ([]byte, error) {
	m := map[string]any{}
	if res != nil {
		raw, err := json.Marshal(res)
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &m); err != nil {
			return nil, err
		}
	}
	m["ok"] = err == nil
	if fb != nil {
		m["boot"] = fb
	}
	if err != nil {
		m["error"] = err.Error()
		var be *kvmrun.BootError
		if errors.As(err, &be) {
			m["stage"], m["serial_tail"] = be.Stage, be.SerialTail
		}
	}
	return json.MarshalIndent(m, "", "  ")
}

func runBoot(cmd *cobra.Command, arg string, f bootFlags) error {
	switch f.accel {
	case kvmrun.AccelKVM, kvmrun.AccelTCG, kvmrun.AccelAuto:
	default:
		return usagef("--accel %q: want kvm, tcg or auto", f.accel)
	}
	switch f.net {
	case "user", "bridge", "tap", "none":
	default:
		return usagef("--net %q: want user, bridge, tap or none", f.net)
	}
	re, err := regexp.Compile(f.expect)
	if err != nil {
		return usagef("--expect: %v", err)
	}
	if f.timeout <= 0 {
		return usagef("--timeout must be positive")
	}
	if f.netPort < 0 || f.netPort > 65535 {
		return usagef("--net-check-port %d: want a TCP port, or 0 for no network proof", f.netPort)
	}
	xmlPath, err := findDomainXML(arg)
	if err != nil {
		return err
	}
	dom, err := readKVMDomain(xmlPath)
	if err != nil {
		return err
	}
	// The name makes the serial log's and the runtime folder's names.
	if err := config.CheckName(dom.Name); err != nil {
		var ne *config.NameError
		if errors.As(err, &ne) {
			ne.File = xmlPath
		}
		return err
	}
	if dom.OS == "windows" && !cmd.Flags().Changed("expect") {
		return withHint(fmt.Errorf("%s: a Windows guest prints no login prompt on its serial console, so booting it cannot prove it works", xmlPath),
			"start it with its launch script or virsh and look at its display; --expect REGEX boots it anyway and waits for REGEX on COM1")
	}
	serialLog := f.serialLog
	if serialLog == "" {
		serialLog = filepath.Join(filepath.Dir(xmlPath), dom.Name+".boot.log")
	}

	stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
	log := newConsole(stderr).logger()
	// The runtime folder holds the kernel and initrd a PV guest boots
	// with and the VNC password file: kept when the boot fails, so the
	// logged command line can be rerun as it is.
	// A boot killed before it could clean up leaves its folder; the next
	// boot of the same guest removes it (scratch).
	run, err := scratch.New("xen2kvm-boot-" + dom.Name + "-")
	if err != nil {
		return err
	}
	runDir := run.Path
	opts := []kvmrun.Option{
		kvmrun.WithDir(runDir),
		kvmrun.WithQEMU(f.qemu),
		kvmrun.WithAccel(f.accel),
		kvmrun.WithExpect(re),
		kvmrun.WithTimeout(f.timeout),
		kvmrun.WithSerialLog(serialLog),
		kvmrun.WithSnapshot(!f.noSnapshot),
		kvmrun.WithShutdownGrace(f.grace),
		kvmrun.WithQEMUOptions(config.QEMUOptions{Net: f.net, Display: f.display}),
		kvmrun.WithLogger(log),
	}
	if f.console {
		// The guest's console is the output, unless JSON is.
		var w io.Writer = stdout
		if f.json {
			w = stderr
		}
		opts = append(opts, kvmrun.WithConsole(w))
	}
	var res *kvmrun.BootResult
	var fb *report.Boot
	if f.noSnapshot {
		// The guest writes its own images: no overlay to read back, but
		// its own reboots (a relabel) are followed all the same.
		res, err = kvmrun.Boot(cmd.Context(), dom, append(opts, kvmrun.WithMaxReboots(firstboot.DefaultMaxReboots))...)
	} else {
		var fr *firstboot.Result
		fr, err = firstboot.Check(cmd.Context(), dom, firstboot.Options{
			Boot: opts, QEMU: config.QEMUOptions{Net: f.net, Display: f.display},
			AllowDrift: f.allowDrift, NetCheckPort: netCheckPort(f.netPort), Logger: log,
			Dir: runDir, // the overlays too: a killed boot leaves them where the next one removes them
		})
		res, fb = fr.Boot, fr.Report
	}
	if err == nil || res == nil {
		run.Remove()
	} else {
		run.Keep()
		log.Info("runtime files kept for rerunning the command line", "dir", runDir)
	}
	if f.json {
		b, jerr := bootJSON(res, fb, err)
		if jerr != nil {
			return jerr
		}
		fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	if err != nil {
		if fb != nil && res != nil && res.Match != "" {
			report.WriteBoot(stderr, fb)
		}
		var be *kvmrun.BootError
		if errors.As(err, &be) && len(be.SerialTail) > 0 {
			fmt.Fprintf(stderr, "xen2kvm: last lines of the serial console (%s):\n", serialLog)
			for _, l := range be.SerialTail {
				fmt.Fprintf(stderr, "  | %s\n", l)
			}
		}
		if res != nil {
			fmt.Fprintf(stderr, "xen2kvm: rerun with: %s\n", config.ShellJoin(res.Cmdline))
		}
		return err
	}
	if f.console {
		fmt.Fprintln(stdout)
	}
	fmt.Fprintf(stdout, "%s booted under %s in %.1fs (%q seen on the serial console); stopped by %s\n",
		dom.Name, strings.ToUpper(res.Accel.Accel), res.BootTime.Seconds(), res.Match, res.Shutdown)
	if fb != nil {
		return report.WriteBoot(stdout, fb)
	}
	return nil
}

// findDomainXML returns arg when it is a file, or the single *.xml in the
// folder arg.
func findDomainXML(arg string) (string, error) {
	st, err := os.Stat(arg)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return arg, nil
	}
	matches, err := filepath.Glob(filepath.Join(arg, "*.xml"))
	if err != nil {
		return "", err
	}
	switch len(matches) {
	case 1:
		return matches[0], nil
	case 0:
		return "", usagef("%s holds no domain XML (*.xml): give a migrate OUTDIR or the XML itself", arg)
	default:
		for i, m := range matches {
			matches[i] = filepath.Base(m)
		}
		return "", usagef("%s holds several XML files (%s): name the one to boot", arg, strings.Join(matches, ", "))
	}
}

// readKVMDomain reads a KVM domain XML; disk paths relative to the XML's
// folder are made absolute.
func readKVMDomain(path string) (*config.KVMDomain, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dom, err := config.ParseKVMXML(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dir := filepath.Dir(path)
	for i, d := range dom.Disks {
		if d.Path != "" && !filepath.IsAbs(d.Path) {
			dom.Disks[i].Path = filepath.Join(dir, d.Path)
		}
	}
	return dom, nil
}
