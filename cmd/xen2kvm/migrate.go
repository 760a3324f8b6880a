package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
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
}

func (f *migrateFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.dryRun, "dry-run", false, "plan the migration and report it; write nothing")
	fl.BoolVar(&f.json, "json", false, "print the report as JSON on stdout")
	fl.StringVar(&f.report, "report", "", "also write the report to `FILE`: .html gives a self-contained page, .json JSON, anything else text")
	fl.StringVar(&f.accel, "accel", "auto", "accelerator of the boot check: kvm, tcg or auto (KVM when it really works, else TCG)")
	fl.DurationVar(&f.bootTimeout, "boot-timeout", 5*time.Minute, "how long the boot check waits for the login prompt")
	var rules []string
	for _, r := range convert.Rules() {
		rules = append(rules, r.Name)
	}
	fl.StringSliceVar(&f.skipRules, "skip-rule", nil, "leave the conversion rule `NAME` out, one of "+strings.Join(rules, ", ")+
		" (for finding which rule a guest trips on; the result may not boot)")
}

// runOptions are the pipeline options the flags give, drawing progress
// and log lines on con.
func (f *migrateFlags) runOptions(workers int, con *console) pipeline.RunOptions {
	return pipeline.RunOptions{
		DryRun: f.dryRun, Accel: f.accel, BootTimeout: f.bootTimeout, Workers: workers, SkipRules: f.skipRules,
		Progress: con.progress, Logger: con.logger(),
	}
}

func (f *migrateFlags) check() error {
	switch f.accel {
	case "kvm", "tcg", "auto":
	default:
		return usagef("--accel %q: want kvm, tcg or auto", f.accel)
	}
	return nil
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
	)
	cmd := &cobra.Command{
		Use:   "migrate CONFIG -o OUTDIR",
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

--dry-run does everything up to the copy, throws the overlay away and
writes nothing but its report: the source config, each disk with its
size and copy estimate, every edit inside the guest as a unified diff,
the target libvirt XML, warnings and blockers.`,
		Example: `  # Migrate web01, whose images moved from the Xen host to /srv/import:
  xen2kvm migrate /srv/import/etc-xen/web01 -o /srv/kvm/web01 \
      --disk-map /var/lib/xen/images=/srv/import/images

  # See what would change, as a page to pass around:
  xen2kvm migrate /etc/xen/web01 --dry-run --report web01.html

  # A guest with only Xen kernels: give it a kernel that boots on KVM:
  xen2kvm migrate /etc/xen/old01 -o /srv/kvm/old01 --kernel-rpm kernel-2.6.18-419.el5.x86_64.rpm

  # Raw images, no boot check, replacing an earlier result:
  xen2kvm migrate /etc/xen/db02 -o /srv/kvm/db02 --format raw --no-boot-check --force

  # Run the result:
  /srv/kvm/web01/web01.sh -display none      # or: virsh define /srv/kvm/web01/web01.xml`,
		Args: wrapArgs(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if format != "qcow2" && format != "raw" {
				return usagef("--format %q: want qcow2 or raw", format)
			}
			if out == "" && !f.dryRun {
				return usagef("missing -o OUTDIR (or use --dry-run)")
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
				RunOptions: f.runOptions(workers, con),
				OutDir:     out, Format: format, DiskMap: maps, Force: force, KernelRPM: kernelRPM,
			}
			switch {
			case bootCheck:
				opts.Boot = pipeline.BootAlways
			case noBootCheck:
				opts.Boot = pipeline.BootNever
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
			return hinted(err)
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&out, "output", "o", "", "write the KVM guest into `OUTDIR` (created if needed)")
	fl.StringVar(&format, "format", "qcow2", "output image format: qcow2 or raw (sparse)")
	fl.StringArrayVar(&diskMaps, "disk-map", nil, "rewrite disk paths starting with `OLD=NEW` prefix OLD to start with NEW (repeatable)")
	fl.BoolVar(&bootCheck, "boot-check", false, "boot the result and wait for its login prompt; fail when QEMU is missing")
	fl.BoolVar(&noBootCheck, "no-boot-check", false, "do not boot the result (default: boot it when QEMU is installed)")
	fl.BoolVar(&force, "force", false, "replace the guest if OUTDIR already holds it")
	fl.IntVar(&workers, "workers", 0, "copy workers per disk (default 4)")
	fl.StringVar(&kernelRPM, "kernel-rpm", "", "install the kernel package `FILE` (kernel or kernel-PAE .rpm) into a guest that has only Xen kernels")
	f.add(cmd)
	return cmd
}

// parseDiskMaps parses --disk-map OLD=NEW values.
func parseDiskMaps(vals []string) ([]pipeline.PathMap, error) {
	var maps []pipeline.PathMap
	for _, v := range vals {
		m, err := config.ParsePathMap(v)
		if err != nil {
			return nil, usagef("--%v (e.g. --disk-map /var/lib/xen/images=/srv/import)", err)
		}
		if m.New, err = filepath.Abs(m.New); err != nil {
			return nil, err
		}
		maps = append(maps, m)
	}
	return maps, nil
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
	fmt.Fprintf(w, "Migrated %s to %s in %s\n", g.Name, g.OutDir, report.Seconds(g.Finished.Sub(g.Started).Seconds()))
	for _, d := range g.Disks {
		fmt.Fprintf(w, "  %s -> %s (%s, %s written)\n", d.Target, d.Output, d.Format, report.Bytes(d.OutputSize))
	}
	if b := g.Boot; b != nil {
		switch {
		case !b.Ran:
			fmt.Fprintf(w, "  boot check skipped: %s\n", b.Skipped)
		case b.OK:
			fmt.Fprintf(w, "  boot check: login prompt reached in %s (%s)\n", report.Seconds(b.Seconds), b.Accel)
		}
	}
	for _, warn := range g.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	fmt.Fprintf(w, "  run it: %s\n", filepath.Join(g.OutDir, g.Name+".sh"))
}

// hintedError adds advice to a pipeline error for the CLI's hint line.
type hintedError struct {
	err  error
	hint string
}

func (e *hintedError) Error() string { return e.err.Error() }
func (e *hintedError) Unwrap() error { return e.err }
func (e *hintedError) Hint() string  { return e.hint }

func hinted(err error) error {
	var h hinter
	switch {
	case err == nil || errors.As(err, &h):
		return err
	case errors.Is(err, pipeline.ErrNoQEMU):
		return &hintedError{err, "install qemu-system-x86 (apt-get install qemu-system-x86) or pass --no-boot-check"}
	case errors.Is(err, pipeline.ErrBlocked):
		return &hintedError{err, "the report lists the blockers; --dry-run shows the whole plan without writing anything"}
	case errors.Is(err, pipeline.ErrBoot):
		return &hintedError{err, "the serial console of the boot check is in the report; boot it yourself with xen2kvm boot OUTDIR --console"}
	case errors.As(err, new(*pipeline.DiskError)) && errors.Is(err, os.ErrNotExist):
		return &hintedError{err, "if the disk images moved off the Xen host, point at them with --disk-map OLD=NEW"}
	}
	return err
}

// console draws per-disk progress bars on a terminal (log lines scroll
// above them), and plain log lines otherwise.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	bars  []*diskBar
	index map[string]*diskBar
}

type diskBar struct {
	c    *console
	i    int
	bar  *progressbar.ProgressBar
	line string
	step int64 // last 10% step logged, without a terminal
}

func newConsole(w io.Writer) *console {
	c := &console{w: w, index: map[string]*diskBar{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.tty = true
	}
	return c
}

// logger returns a slog.Logger that prints "xen2kvm: message key=value"
// lines through the console.
func (c *console) logger() *slog.Logger {
	return slog.New(&lineHandler{c: c, level: slog.LevelInfo})
}

// Write prints log lines above the progress bars.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tty || len(c.bars) == 0 {
		return c.w.Write(p)
	}
	fmt.Fprintf(c.w, "\x1b[%dA\r\x1b[J", len(c.bars))
	c.w.Write(p)
	for _, b := range c.bars {
		fmt.Fprintf(c.w, "%s\n", b.line)
	}
	return len(p), nil
}

func (c *console) progress(p pipeline.Progress) {
	c.mu.Lock()
	key := p.Guest + "/" + p.Disk
	b := c.index[key]
	if b == nil {
		b = &diskBar{c: c, i: len(c.bars), step: -1}
		c.index[key] = b
		if c.tty {
			c.bars = append(c.bars, b)
			fmt.Fprintln(c.w)
			b.bar = progressbar.NewOptions64(p.Total,
				progressbar.OptionSetWriter(b),
				progressbar.OptionSetDescription(fmt.Sprintf("%-16s", key)),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetPredictTime(true),
			)
		}
	}
	c.mu.Unlock()
	if b.bar != nil {
		b.bar.Set64(p.Done)
		if p.Finish {
			b.bar.Finish()
		}
		return
	}
	if p.Total <= 0 {
		return
	}
	c.mu.Lock()
	step := p.Done * 10 / p.Total
	changed := step > b.step
	if changed {
		b.step = step
	}
	c.mu.Unlock()
	if changed {
		c.Write([]byte(fmt.Sprintf("xen2kvm: %s: %d%% (%s of %s)\n", key, step*10, report.Bytes(p.Done), report.Bytes(p.Total))))
	}
}

// Write receives the bar's rendering and redraws its line.
func (b *diskBar) Write(p []byte) (int, error) {
	s := strings.TrimRight(strings.NewReplacer("\r", "", "\n", "").Replace(string(p)), " ")
	if s == "" {
		return len(p), nil
	}
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	b.line = s
	up := len(c.bars) - b.i
	fmt.Fprintf(c.w, "\x1b[%dA\r\x1b[2K%s\x1b[%dB\r", up, s, up)
	return len(p), nil
}

// done leaves the bars as they are and ends their block.
func (c *console) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bars = nil
}

// lineHandler is a slog.Handler for people: "xen2kvm: msg k=v ...".
type lineHandler struct {
	c     *console
	level slog.Level
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("xen2kvm: ")
	if r.Level >= slog.LevelWarn {
		b.WriteString(strings.ToLower(r.Level.String()) + ": ")
	}
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		v := a.Value.String()
		if strings.ContainsAny(v, " \t\"") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteString("\n")
	_, err := h.c.Write([]byte(b.String()))
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{c: h.c, level: h.level, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
