package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

func init() { register(newMigrateCommand) }

// migrateFlags are the flags migrate and batch share.
type migrateFlags struct {
	dryRun      bool
	json        bool
	report      string
	accel       string
	bootTimeout time.Duration
	skipRules   []string

	ssh          sshFlags
	forceRunning bool
	allowDrift   bool
	netPort      int

	shutdownSource  bool
	shutdownTimeout time.Duration
	warmHash        string
	hostZeroMap     string
}

func (f *migrateFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.dryRun, "dry-run", false, "plan the migration and report it; write nothing")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON on stdout")
	fl.StringVar(&f.report, "report", "", "also write the report to `FILE`: .html gives a self-contained page, .json JSON, anything else text")
	fl.StringVar(&f.accel, "accel", "auto", "accelerator of the boot check: kvm, tcg or auto (KVM when it really works, else TCG)")
	fl.DurationVar(&f.bootTimeout, "boot-timeout", 5*time.Minute, "how long the boot check waits for the login prompt")
	fl.BoolVar(&f.allowDrift, "allow-drift", false, "let the boot check pass when the guest's first boot changed its network config, fstab, grub.conf or modprobe.conf, or its console named Xen drivers or disks or a debug kernel (a warning instead)")
	fl.IntVar(&f.netPort, "net-check-port", 22, "TCP `PORT` the boot check's network proof connects to on the guest (0 turns the network proof off)")
	var rules []string
	for _, r := range convert.Rules() {
		rules = append(rules, r.Name)
	}
	fl.StringSliceVar(&f.skipRules, "skip-rule", nil, "leave the conversion rule `NAME` out, one of "+strings.Join(rules, ", ")+
		" (for finding which rule a guest trips on; the result may not boot)")
	fl.BoolVar(&f.forceRunning, "force-running", false, "ssh:// sources: copy a guest its Xen host reports as running, or whose disk a process there has open for writing (only crash-consistent; the report warns)")
	fl.BoolVar(&f.shutdownSource, "shutdown-source", false, "warm migrations: after the first pass, shut the guest down on its host (xm shutdown -w NAME) instead of waiting for it to stop")
	fl.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 10*time.Minute, "warm migrations, with --shutdown-source: how long to wait for the guest to shut down")
	fl.StringVar(&f.warmHash, "warm-hash", "auto", "warm migrations: how the host hashes blocks: python (RHEL 5's python 2.4), dd (coreutils dd and md5sum or sha1sum) or auto")
	fl.StringVar(&f.hostZeroMap, "host-zero-map", "off", "ssh:// sources, cold migrations: before copying a raw disk, run the read-only helper --warm runs on the host to find its all-zero blocks and never read those over SSH: python, dd (dd and md5sum), auto, or off (read every block; nothing runs on the host beyond xm)")
	f.ssh.add(cmd)
}

// warmOptions are the options of warm migrations, saying on con what the
// user should know.
func (f *migrateFlags) warmOptions(con *console) pipeline.WarmOptions {
	m := xenhost.HashMethod(f.warmHash)
	if f.warmHash == "auto" {
		m = xenhost.HashAuto
	}
	return pipeline.WarmOptions{ShutdownSource: f.shutdownSource, ShutdownTimeout: f.shutdownTimeout, HashMethod: m,
		Say: func(msg string) { fmt.Fprintf(con, "xen2kvm: %s\n", msg) }}
}

// remote adds the ssh:// source options to o.
func (f *migrateFlags) remote(cmd *cobra.Command, o pipeline.RunOptions) pipeline.RunOptions {
	o.SSH, o.ForceRunning = f.ssh.options(cmd), f.forceRunning
	if f.hostZeroMap != "off" {
		o.HostZeroMap = true
		if f.hostZeroMap != "auto" {
			o.HostZeroMapMethod = xenhost.HashMethod(f.hostZeroMap)
		}
	}
	return o
}

// runOptions are the pipeline options the flags give, drawing progress
// and log lines on con.
func (f *migrateFlags) runOptions(workers int, con *console) pipeline.RunOptions {
	return pipeline.RunOptions{
		DryRun: f.dryRun, Accel: f.accel, BootTimeout: f.bootTimeout, Workers: workers, SkipRules: f.skipRules,
		AllowDrift: f.allowDrift, NetCheckPort: netCheckPort(f.netPort),
		Progress: con.progress, Logger: con.logger(),
	}
}

func (f *migrateFlags) check() error {
	if err := f.ssh.check(); err != nil {
		return err
	}
	switch f.accel {
	case "kvm", "tcg", "auto":
	default:
		return usagef("--accel %q: want kvm, tcg or auto", f.accel)
	}
	switch f.warmHash {
	case "auto", "python", "dd":
	default:
		return usagef("--warm-hash %q: want auto, python or dd", f.warmHash)
	}
	switch f.hostZeroMap {
	case "off", "auto", "python", "dd":
	default:
		return usagef("--host-zero-map %q: want off, auto, python or dd", f.hostZeroMap)
	}
	if err := convert.CheckRuleNames(f.skipRules); err != nil {
		return usagef("--skip-rule: %v", err)
	}
	if f.netPort < 0 || f.netPort > 65535 {
		return usagef("--net-check-port %d: want a TCP port, or 0 for no network proof", f.netPort)
	}
	return nil
}

// netCheckPort is --net-check-port as pipeline.Options and
// firstboot.Options take it (negative: no proof).
func netCheckPort(port int) int {
	if port == 0 {
		return -1
	}
	return port
}

func newMigrateCommand() *cobra.Command {
	var (
		f           migrateFlags
		out, format string
		diskMaps    []string
		bootCheck   bool
		noBootCheck bool
		force       bool
		workers     int
		kernelRPM   string
		virtioWin   string
		dest        destFlags

		warmOn bool
	)
	cmd := &cobra.Command{
		Use:   "migrate CONFIG|ssh://[USER@]HOST[:PORT]/NAME -o OUTDIR",
		Short: "Migrate one Xen guest to KVM",
		Long: `Migrate one Xen guest to KVM.

CONFIG is the guest's Xen domain config (an xm file from /etc/xen, xl.cfg,
xend SXP or libvirt XML). migrate reads the guest's disks read-only,
converts the guest's drivers inside a copy-on-write overlay (the source
disks are never written), copies every disk once into qcow2 or sparse raw,
and writes into OUTDIR:

  NAME-vda.qcow2 ...   one image per disk, named after its new KVM device
  NAME.xml             the libvirt domain (type kvm): virsh define NAME.xml
  NAME.sh              runs the guest with qemu-system-x86_64, from any folder
  NAME.report.json     what was done; written last, it marks a finished guest

Then it re-opens the output read-only and checks it (filesystems, the
default kernel and its initrd with the virtio drivers, /etc/fstab), and
boots it under QEMU until the login prompt appears (when QEMU is
installed; --no-boot-check skips it, --boot-check insists on it).

The disk paths in the config are those of the Xen host; when the images
now sit elsewhere, --disk-map OLD=NEW rewrites the path prefix OLD (whole
path components) to NEW. Give it once per prefix.

NAME is the guest's name from its config, and only names of letters,
digits and _ . - + (up to 64, not starting with . or -) are accepted: a
name that could leave OUTDIR, hide a file or read as an option is refused
with the config line it is on.

A run that fails or is interrupted leaves nothing in OUTDIR that looks
complete, and running it again starts afresh (removing what a run killed
while moving its files into OUTDIR left). An OUTDIR that already holds a
finished migration of the guest, or files with the names it writes that
no xen2kvm run recorded, is refused unless --force. --force removes only
the files an earlier migration recorded as its own (in its report), so
other files in OUTDIR, such as NAME-old.qcow2, stay.

CONFIG may be ssh://[USER@]HOST[:PORT]/NAME: the guest on a Xen host,
with no staging copy. Its config then comes from the Xen toolstack on the
host (xm list -l, xm create --dryrun, or /etc/xen/NAME over SFTP) and its
disks (image files and phy: devices alike) are read over SFTP, read-only,
in concurrent large reads, with zero blocks dropped before they are
written; nothing is installed, written or run on the host beyond those xm
queries. A guest the host reports as running (xm list), or whose disk a
process on the host has open for writing (its /proc/PID/fd, read over
SFTP), is refused with the process named (--force-running copies it
anyway, crash-consistent only). A dropped
connection is re-established and the copy goes on (--ssh-retries times);
a host that is gone fails the guest and leaves nothing that looks
complete. The report records the host, where the config came from and
the bytes read; progress shows the network throughput. SSH keys, agent,
password prompt and host key checks are as for xen2kvm inspect.

--warm (ssh:// sources) keeps the guest's downtime short: pass 1 copies
every disk while the guest still runs into OUTDIR/.NAME.warm (a
crash-consistent copy, recorded as incomplete); then --shutdown-source
shuts the guest down (xm shutdown -w NAME, at most --shutdown-timeout),
or migrate waits for you to stop it and says so. Pass 2 has the host
hash each disk in 1 MiB blocks with a small read-only helper sent over
the SSH session (python, RHEL 5's 2.4 will do, or dd and md5sum; nothing
is installed or written on the host), with MD5 or SHA-1, whichever the
host computes faster, and moves only the blocks whose hashes differ from
those of the copy: with python the helper is given the copy's hashes and
sends the changed blocks itself, read once. The migration then goes on from
the copies as usual, and the report records both passes (bytes moved,
times) and the downtime: from the guest stopping to the converted guest
being ready. An interrupted warm migration resumes from pass 2 when run
again (or redoes pass 1 when its copies are gone); a guest still running
at pass 2 is waited for. The copies are removed once the migration is
done: OUTDIR needs room for them and the output. For a qcow2 output in
OUTDIR, pass 1 also writes the output image and pass 2 patches it, so
that the disks are not copied again while the guest is down. With --to,
pass 2 is followed by the delivery to libvirt as for a cold migration.
--warm --dry-run plans the migration from the guest as it is (running or
not), reports what pass 1 would copy and where, and changes nothing: no
shutdown, no hashing on the host, no copies.

--dry-run does everything up to the copy, throws the overlay away and
writes nothing but its report: the source config, each disk with its
size and copy estimate, every edit inside the guest as a unified diff,
the target libvirt XML, warnings and blockers.

--virtio-win PATH (Windows guests) stages the virtio drivers from the
virtio-win ISO or folder (the layout since 0.1.100, viostor/2k8/amd64;
older ISOs' WNET, WLH, XP, VISTA, WIN7 folders; or the virtio-win RPM's
/usr/share/virtio-win, its ISO or its drivers/amd64/Win2008 tree): the
ISO becomes a CD-ROM, a small FAT disk holds
a script that Windows runs once through RunOnce, at the next logon of an
administrator (console or Remote Desktop; no autologon is set), and the
SYSTEM hive gets viostor's CriticalDeviceDatabase entries and a viostor
service, disabled until the script has copied viostor.sys. The guest
keeps IDE and its emulated NIC for that boot. When the script's log,
%SystemRoot%\xen2kvm-virtio.log, says viostor is boot-start, shut
Windows down and run virsh define OUTDIR/NAME-virtio.xml (written with
NAME.xml: the disks on virtio as vda..., the NICs virtio, without the
CD-ROM and the first-boot disk), then start it.

--to URI delivers the guest into libvirt on a KVM host instead
(qemu:///system, qemu+ssh://root@kvm01/system, qemu+tcp://HOST/system):
each disk is streamed from the copy engine into a new volume of --pool
(no local image), a throw-away copy of the guest boots there on overlays
until its console shows the login prompt, and the domain is defined with
its disks as the pool's volumes (type kvm, or qemu when the host has no
KVM); --start starts it. OUTDIR (default .) gets NAME.xml and the report.
A domain or volume of the guest's name there is refused unless --force;
on a failure the volumes and domain the run made are deleted, and after a
killed run the next one replaces what it left. With --virtio-win the ISO
is one volume that the pool's Windows guests share,
virtio-win-<first 12 hex digits of its SHA-256>.iso: uploaded once,
reused by the next guests, never deleted with one of them.`,
		Example: `  # Migrate web01, whose images moved from the Xen host to /srv/import:
  xen2kvm migrate /srv/import/etc-xen/web01 -o /srv/kvm/web01 \
      --disk-map /var/lib/xen/images=/srv/import/images

  # Straight from the Xen host, no staging copy:
  xen2kvm migrate ssh://root@xen01/web01 -o /srv/kvm/web01

  # Warm: copy while db01 runs, shut it down, move only what changed:
  xen2kvm migrate ssh://root@xen01/db01 -o /srv/kvm/db01 --warm --shutdown-source

  # See what would change, as a page to pass around:
  xen2kvm migrate /etc/xen/web01 --dry-run --report web01.html

  # A guest with only Xen kernels: give it a kernel that boots on KVM:
  xen2kvm migrate /etc/xen/old01 -o /srv/kvm/old01 --kernel-rpm kernel-2.6.18-419.el5.x86_64.rpm

  # A Windows guest, with the virtio drivers staged for after the move:
  xen2kvm migrate /etc/xen/win2k8 -o /srv/kvm/win2k8 --virtio-win /srv/iso/virtio-win.iso
  # ... an administrator logs on once, the log says viostor is boot-start,
  # Windows is shut down; then, to run it on virtio:
  virsh define /srv/kvm/win2k8/win2k8-virtio.xml && virsh start win2k8

  # Raw images, no boot check, replacing an earlier result:
  xen2kvm migrate /etc/xen/db02 -o /srv/kvm/db02 --format raw --no-boot-check --force

  # Deliver straight into the default pool of a KVM host and start it:
  xen2kvm migrate /etc/xen/web01 --to qemu+ssh://root@kvm01/system --start

  # Run the result:
  /srv/kvm/web01/web01.sh -display none      # or: virsh define /srv/kvm/web01/web01.xml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if format != "qcow2" && format != "raw" {
				return usagef("--format %q: want qcow2 or raw", format)
			}
			if out == "" && !f.dryRun {
				if dest.to == "" {
					return usagef("missing -o OUTDIR (or use --dry-run)")
				}
				out = "." // --to: the report and XML land here
			}
			if err := dest.check(); err != nil {
				return err
			}
			if bootCheck && noBootCheck {
				return usagef("--boot-check and --no-boot-check exclude each other")
			}
			maps, err := parseDiskMaps(diskMaps)
			if err != nil {
				return err
			}
			con := newConsole(cmd.ErrOrStderr())
			opts := pipeline.Options{
				RunOptions: f.remote(cmd, f.runOptions(workers, con)),
				OutDir:     out, Format: format, DiskMap: maps, Force: force, KernelRPM: kernelRPM, VirtioWin: virtioWin,
				To: dest.to, Pool: dest.pool, Start: dest.start, Replace: force,
			}
			switch {
			case bootCheck:
				opts.Boot = pipeline.BootAlways
			case noBootCheck:
				opts.Boot = pipeline.BootNever
			}
			if f.shutdownSource && !warmOn {
				return usagef("--shutdown-source goes with --warm")
			}
			if warmOn {
				w := f.warmOptions(con)
				opts.Warm = &w
			}
			res, err := pipeline.Migrate(cmd.Context(), args[0], opts)
			con.done()
			// Report what there is: the plan, the result, or how far a
			// failed migration got (once its config was read).
			if res != nil && (f.dryRun || err == nil || res.Report.Source.File != "") {
				if werr := writeReports(cmd.OutOrStdout(), f, !f.dryRun && err == nil, res.Report); werr != nil && err == nil {
					err = werr
				}
			}
			return pipelineHint(err)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&out, "output", "o", "", "write the KVM guest into `OUTDIR` (created if needed)")
	fl.StringVar(&format, "format", "qcow2", "output image format: qcow2 or raw (sparse)")
	fl.StringArrayVar(&diskMaps, "disk-map", nil, "rewrite disk paths starting with `OLD=NEW` prefix OLD to start with NEW (repeatable)")
	fl.BoolVar(&bootCheck, "boot-check", false, "boot the result and wait for its login prompt; fail when QEMU is missing")
	fl.BoolVar(&noBootCheck, "no-boot-check", false, "do not boot the result (default: boot it when QEMU is installed)")
	fl.BoolVar(&force, "force", false, "replace the guest if OUTDIR already holds it (with --to: a domain and volumes of its name there, unless the domain runs)")
	fl.IntVar(&workers, "workers", 0, "copy workers per disk (default 4)")
	fl.StringVar(&kernelRPM, "kernel-rpm", "", "install the kernel package `FILE` (kernel or kernel-PAE .rpm) into a guest that has only Xen kernels")
	fl.BoolVar(&warmOn, "warm", false, "ssh:// sources: copy the disks while the guest runs, then, once it is stopped, only the blocks that changed (the host hashes its disks with a read-only helper sent over SSH)")
	fl.StringVar(&virtioWin, "virtio-win", "", "Windows guests: stage the virtio drivers from the virtio-win ISO or folder `PATH`, or the virtio-win RPM's /usr/share/virtio-win (the ISO as a CD-ROM, a first-boot disk whose script installs viostor and netkvm at the next administrator logon, through RunOnce; then switch with virsh define OUTDIR/NAME-virtio.xml)")
	dest.add(cmd)
	f.add(cmd)
	return cmd
}

// writeReports prints the report(s) on stdout (text, or JSON with --json)
// and to --report FILE. After a successful real migration stdout gets a
// short summary instead of the whole text report.
func writeReports(stdout io.Writer, f migrateFlags, summary bool, guests ...*report.Guest) error {
	var err error
	switch {
	case f.json:
		err = report.WriteJSON(stdout, guests...)
	case summary:
		for _, g := range guests {
			printSummary(stdout, g)
		}
	default:
		err = report.WriteText(stdout, guests...)
	}
	if err != nil || f.report == "" {
		return err
	}
	file, err := os.Create(f.report)
	if err != nil {
		return err
	}
	switch strings.ToLower(filepath.Ext(f.report)) {
	case ".html", ".htm":
		err = report.WriteHTML(file, guests...)
	case ".json":
		err = report.WriteJSON(file, guests...)
	default:
		err = report.WriteText(file, guests...)
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing report %s: %w", f.report, err)
	}
	return nil
}

func printSummary(w io.Writer, g *report.Guest) {
	if g.Destination != nil {
		printDelivered(w, g)
		return
	}
	fmt.Fprintf(w, "Migrated %s to %s in %s\n", g.Name, g.OutDir, report.Seconds(g.Finished.Sub(g.Started).Seconds()))
	if h := g.Host; h != nil {
		fmt.Fprintf(w, "  read from %s: %s over the network\n", h.URL, report.Bytes(h.BytesRead))
	}
	for _, d := range g.Disks {
		fmt.Fprintf(w, "  %s -> %s (%s, %s written)\n", d.Target, d.Output, d.Format, report.Bytes(d.OutputSize))
	}
	printChecked(w, g, "boot check")
	fmt.Fprintf(w, "  run it: %s\n", filepath.Join(g.OutDir, g.Name+".sh"))
}

// printChecked prints the outcome of the guest's boot check, named by
// check, and its warnings: the lines every migrate summary has.
func printChecked(w io.Writer, g *report.Guest, check string) {
	if b := g.Boot; b != nil {
		switch {
		case !b.Ran:
			fmt.Fprintf(w, "  boot check skipped: %s\n", b.Skipped)
		case b.OK:
			fmt.Fprintf(w, "  %s: login prompt reached in %s (%s)\n", check, report.Seconds(b.Seconds), b.Accel)
			printFirstBoot(w, b)
		}
	}
	for _, warn := range g.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
}

// printFirstBoot summarises a passed boot check's first-boot proof.
func printFirstBoot(w io.Writer, b *report.Boot) {
	if b.Reboots > 0 {
		fmt.Fprintf(w, "  the guest rebooted %d time(s) on its own first\n", b.Reboots)
	}
	if n := b.Network; n != nil && n.OK {
		fmt.Fprintf(w, "  network: proven by %s (%s)\n", n.Proof, n.Detail)
	}
	if d := b.Drift; d != nil {
		var names []string
		for _, f := range d.Files {
			names = append(names, "/"+f.Path)
		}
		fmt.Fprintf(w, "  first boot changed %d files, %d flagged: %s\n", len(d.Files), d.Flagged, strings.Join(names, " "))
	}
}
