package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/warm"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// Result is what a migration did or, for a dry run, would do.
type Result struct {
	// Report is the full account of the migration; it is also written to
	// OutDir as NAME.report.json when the migration succeeds.
	Report *report.Guest
	// Files are the absolute paths of the files written to OutDir.
	Files []string
}

// Sentinel errors callers branch on.
var (
	// ErrBlocked: the conversion found a problem that stops the migration
	// (convert's sentinel, so either package's name matches).
	ErrBlocked = convert.ErrBlocked
	// ErrValidation: the written output failed a check.
	ErrValidation = errors.New("output failed validation")
	// ErrBoot: the migrated guest did not reach its login prompt.
	ErrBoot = errors.New("boot check failed")
	// ErrNoQEMU: a boot check was required but QEMU is not installed.
	ErrNoQEMU = errors.New("qemu-system-x86_64 not found")
)

// ErrInterrupted: the migration was cancelled (SIGINT, SIGTERM) before
// it finished; nothing that looks complete was left.
var ErrInterrupted = errors.New("interrupted")

// interruptedError says "interrupted" where the cancellation surfaced as
// "copying disk xvda: context canceled"; it matches ErrInterrupted and
// context.Canceled.
type interruptedError struct{ err error }

func (e *interruptedError) Error() string   { return "interrupted" }
func (e *interruptedError) Unwrap() []error { return []error{ErrInterrupted, e.err} }

// BlockedError lists the blockers that stop a migration.
type BlockedError struct {
	Name     string
	Blockers []string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("%s cannot be migrated: %s", e.Name, strings.Join(e.Blockers, "; "))
}

func (e *BlockedError) Unwrap() error { return ErrBlocked }

// DiskError is a source disk that could not be opened.
type DiskError struct {
	Target string // Xen device, e.g. xvda
	Path   string // the path read, after DiskMap
	Err    error
}

func (e *DiskError) Error() string { return fmt.Sprintf("disk %s: %v", e.Target, e.Err) }
func (e *DiskError) Unwrap() error { return e.Err }

// Migrate migrates the Xen guest described by the config file at cfgPath.
// It returns the Result also on failure when it got far enough to have
// something to report; its Report then says what went wrong.
//
// cfgPath may be ssh://[USER@]HOST[:PORT]/NAME: the guest's config is
// then read from the Xen toolstack on that host and its disks over SFTP
// (see package xenhost), and the report records the host and the bytes
// read.
func Migrate(ctx context.Context, cfgPath string, opts Options) (*Result, error) {
	p, closeHosts := withHosts(ctx, realParts(), opts.RunOptions)
	defer closeHosts()
	return migrate(ctx, p, cfgPath, opts)
}

func migrate(ctx context.Context, p parts, cfgPath string, opts Options) (*Result, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rep := &report.Guest{
		Name:     strings.TrimSuffix(filepath.Base(cfgPath), filepath.Ext(cfgPath)),
		Config:   cfgPath,
		DryRun:   opts.DryRun,
		Started:  time.Now().UTC(),
		Edits:    []report.Edit{},
		Disks:    []report.Disk{},
		Warnings: []string{},
		Blockers: []string{},
	}
	res := &Result{Report: rep}
	var remote *guestSource
	if hs, ok := p.source.(*hostSource); ok && xenhost.IsURL(cfgPath) {
		gs, err := hs.guest(cfgPath)
		if err != nil {
			rep.Status, rep.Error = report.StatusFailed, err.Error()
			return res, err
		}
		if opts.Warm != nil {
			gs.zeroMap = false // pass 1's hashes find the zero blocks
		}
		p.source, remote = gs, gs
	}
	var sess *warm.Session
	var err error
	if opts.Warm != nil {
		switch {
		case remote == nil:
			err = fmt.Errorf("%s: %w", cfgPath, ErrWarmLocal)
		case opts.DryRun:
			// Plan from the guest as it is, running or not; report what
			// pass 1 would copy (m.planWarm).
			p.source = &warmPlanSource{guestSource: remote}
		default:
			var ws *warmSource
			if ws, sess, err = runWarm(ctx, remote, opts, rep); err == nil {
				p.source = ws
			}
		}
	}
	m := &migration{p: p, opts: opts, log: log, rep: rep, res: res}
	if err == nil {
		err = m.run(ctx, cfgPath)
	}
	if opts.Warm != nil && opts.DryRun && remote != nil && m.dom != nil {
		m.planWarm(opts.Warm)
	}
	if remote != nil {
		rep.Host = remote.report()
		for _, dk := range m.disks {
			if ri, ok := dk.src.(*remoteImage); ok && dk.rep != nil {
				dk.rep.BytesRead = ri.BytesRead()
			}
		}
		if rep.Warm != nil {
			rep.Host.BytesRead += rep.Warm.Pass1.BytesRead + rep.Warm.Pass2.BytesRead
		}
	}
	m.close()
	if sess != nil {
		if err == nil {
			// The copies were the source; the migration is done.
			if rerr := sess.Remove(); rerr != nil {
				log.Warn("removing the warm copies", "dir", sess.Dir, "err", rerr)
			}
		} else {
			sess.Close() // kept: a re-run resumes from pass 2
		}
	}
	rep.Finished = time.Now().UTC()
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		err = &interruptedError{err}
	}
	if err != nil {
		if errors.Is(err, ErrBlocked) {
			rep.Status = report.StatusBlocked
		} else {
			rep.Status = report.StatusFailed
		}
		rep.Error = err.Error()
		return res, err
	}
	return res, nil
}

// migration is the state of one Migrate call.
type migration struct {
	p    parts
	opts Options
	log  *slog.Logger
	rep  *report.Guest
	res  *Result

	dom     *config.Domain
	disks   []*disk
	conv    *conversion
	closers []func() error
}

// disk is one disk of the guest that is copied.
type disk struct {
	xen     config.Disk
	index   int // in Domain.Disks
	src     source
	dev     diskimg.Device // the overlay above src
	rep     *report.Disk
	kvm     *config.KVMDisk
	outName string
	// warmPatched: the output image is the one the warm passes wrote,
	// patched with this many bytes of the conversion's changes.
	warmPatched *int64
}

func (m *migration) close() {
	for i := len(m.closers) - 1; i >= 0; i-- {
		if err := m.closers[i](); err != nil {
			m.log.Warn("closing", "err", err)
		}
	}
}

func (m *migration) run(ctx context.Context, cfgPath string) error {
	format := m.opts.Format
	if format == "" {
		format = "qcow2"
	}
	if format != "qcow2" && format != "raw" {
		return fmt.Errorf("unknown output format %q (want qcow2 or raw)", format)
	}
	if !m.opts.DryRun && m.opts.OutDir == "" {
		return errors.New("no output folder given")
	}

	d, err := m.p.source.ParseConfig(cfgPath)
	if err != nil {
		return err
	}
	m.dom = d
	m.rep.Name = d.Name
	if err := d.CheckName(); err != nil {
		return err
	}
	m.rep.Source = summarize(d)
	m.rep.Warnings = append(m.rep.Warnings, d.Warnings...)
	m.log.Info("read config", "guest", d.Name, "file", cfgPath, "type", d.Type, "disks", len(d.Disks))

	var outDir string
	var old []string
	if !m.opts.DryRun {
		if outDir, err = filepath.Abs(m.opts.OutDir); err != nil {
			return err
		}
		m.rep.OutDir = outDir
		unlock, err := lockGuest(outDir, d.Name)
		if err != nil {
			return err
		}
		m.closers = append(m.closers, func() error { unlock(); return nil })
		st, err := readOutput(outDir, d.Name)
		if err != nil {
			return fmt.Errorf("reading output folder: %w", err)
		}
		if !m.opts.Force && (st.Complete || len(st.Foreign) > 0) {
			files := append(append([]string{}, st.Owned...), st.Foreign...)
			return &ExistsError{OutDir: outDir, Name: d.Name, Files: files, Complete: st.Complete}
		}
		// Only what a migration recorded as its own is removed: an
		// interrupted commit's files always, a finished one's with
		// --force. Other files named like outputs are replaced when
		// this run writes the same name, and otherwise left alone.
		old = st.Owned
		if st.Interrupted {
			m.log.Info("removing what an interrupted migration left", "guest", d.Name, "files", old)
		}
	}

	if err := m.openDisks(); err != nil {
		return err
	}
	m.estimate(ctx, format)
	devs := make([]diskimg.Device, len(m.disks))
	for i, dk := range m.disks {
		devs[i] = dk.dev
	}
	conv, err := m.p.converter.Plan(ctx, d, devs, planOptions{Skip: m.opts.SkipRules, KernelRPM: m.opts.KernelRPM, VirtioWin: m.opts.VirtioWin, To: m.opts.To})
	if err != nil {
		return fmt.Errorf("inspecting %s: %w", d.Name, err)
	}
	m.conv = conv
	if conv.close != nil {
		m.closers = append(m.closers, conv.close)
	}
	m.rep.OS = conv.OS
	m.rep.Edits = append(m.rep.Edits, conv.Edits...)
	m.rep.Warnings = append(m.rep.Warnings, conv.Warnings...)
	m.rep.Blockers = append(m.rep.Blockers, conv.Blockers...)
	m.rep.Notes = append(m.rep.Notes, conv.Notes...)
	m.log.Info("planned conversion", "guest", d.Name, "edits", len(conv.Edits), "warnings", len(conv.Warnings), "blockers", len(conv.Blockers))

	k, err := m.p.target.Target(d, conv)
	if err != nil {
		return fmt.Errorf("building the KVM domain: %w", err)
	}
	if err := m.placeImages(k, outDir, format); err != nil {
		return err
	}
	if xml, err := m.p.target.XML(k); err == nil {
		m.rep.TargetXML = string(xml)
	} else {
		return fmt.Errorf("writing libvirt XML: %w", err)
	}
	if len(conv.Blockers) > 0 {
		return &BlockedError{Name: d.Name, Blockers: conv.Blockers}
	}
	if conv.apply != nil {
		if err := conv.apply(); err != nil {
			return fmt.Errorf("applying the conversion: %w", err)
		}
	}
	m.estimate(ctx, format)
	if m.opts.DryRun {
		m.rep.Status = report.StatusPlanned
		return nil
	}
	return m.write(ctx, k, outDir, format, old)
}

// openDisks opens every disk the guest has (not CD-ROMs) read-only and
// puts an overlay above each. Problems with several disks are reported
// together.
func (m *migration) openDisks() error {
	var errs []error
	for i, xd := range m.dom.Disks {
		if xd.Device == "cdrom" || xd.Source == "" {
			continue
		}
		path := config.MapPath(xd.Source, m.opts.DiskMap)
		rd := report.Disk{Source: xd.Source, Path: path, Backend: xd.Backend, Target: xd.Target, Device: xd.Device}
		src, err := m.p.source.Open(path, xd.Format)
		if err != nil {
			errs = append(errs, &DiskError{Target: xd.Target, Path: path, Err: err})
			m.rep.Disks = append(m.rep.Disks, rd)
			continue
		}
		m.closers = append(m.closers, src.Close)
		rd.SourceFormat = src.Format()
		rd.VirtualSize = src.Size()
		if ri, ok := src.(*remoteImage); ok {
			rd.HostZeroBytes = ri.zeroBytes
			if ri.warning != "" {
				m.rep.Warnings = append(m.rep.Warnings, ri.warning)
			}
		}
		ov, err := m.p.converter.Overlay(src)
		if err != nil {
			errs = append(errs, fmt.Errorf("disk %s: overlay: %w", xd.Target, err))
			continue
		}
		if c, ok := ov.(io.Closer); ok {
			m.closers = append(m.closers, c.Close)
		}
		m.rep.Disks = append(m.rep.Disks, rd)
		m.disks = append(m.disks, &disk{xen: xd, index: i, src: src, dev: ov})
		m.log.Info("opened disk", "guest", m.dom.Name, "target", xd.Target, "path", path, "format", rd.SourceFormat, "size", rd.VirtualSize)
	}
	for _, dk := range m.disks {
		for j := range m.rep.Disks {
			if m.rep.Disks[j].Target == dk.xen.Target {
				dk.rep = &m.rep.Disks[j]
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(m.disks) == 0 {
		return errors.New("the guest has no disk to migrate")
	}
	return nil
}

// placeImages names each output image after its KVM target and points the
// KVM domain's disks at them.
func (m *migration) placeImages(k *config.KVMDomain, outDir, format string) error {
	byName := map[string]string{}
	for _, dk := range m.disks {
		for i := range k.Disks {
			kd := &k.Disks[i]
			if kd.Source != nil && kd.Source.Target == dk.xen.Target && kd.Device != "cdrom" {
				dk.kvm = kd
			}
		}
		if dk.kvm == nil {
			return fmt.Errorf("the KVM domain has no disk for %s", dk.xen.Target)
		}
		dk.outName = fmt.Sprintf("%s-%s.%s", m.dom.Name, dk.kvm.Target, format)
		if !writes(m.dom.Name, dk.outName) {
			return fmt.Errorf("%w: image name %q", ErrOutsideOutDir, dk.outName)
		}
		if other, dup := byName[dk.outName]; dup {
			return fmt.Errorf("disks %s and %s would both be written to %s: give each disk its own target", other, dk.xen.Target, dk.outName)
		}
		byName[dk.outName] = dk.xen.Target
		dk.kvm.Path = filepath.Join(outDir, dk.outName)
		if outDir == "" {
			dk.kvm.Path = dk.outName
		}
		dk.kvm.Format = format
		dk.rep.NewTarget = dk.kvm.Target
		dk.rep.Bus = dk.kvm.Bus
		dk.rep.Format = format
		dk.rep.Output = dk.outName
	}
	// Disks xen2kvm adds (the virtio-win first-boot disk) are written
	// into outDir under their own names.
	for i := range k.Disks {
		if kd := &k.Disks[i]; kd.Source == nil && kd.Device != "cdrom" && kd.Path != "" && !filepath.IsAbs(kd.Path) && outDir != "" {
			kd.Path = filepath.Join(outDir, kd.Path)
		}
	}
	// CD-ROM images are not copied; they move like the disks did.
	for i := range k.Disks {
		if kd := &k.Disks[i]; kd.Device == "cdrom" && kd.Path != "" && kd.Source != nil {
			kd.Path = config.MapPath(kd.Path, m.opts.DiskMap)
		}
	}
	// ToKVM keeps the config's NIC order.
	for i, n := range k.NICs {
		if i >= len(m.rep.Source.NICs) {
			break
		}
		r := &m.rep.Source.NICs[i]
		r.NewModel, r.NewMAC = n.Model, n.MAC
		switch {
		case r.MAC != "":
			r.MACFrom = "the Xen config"
		case m.conv != nil && m.conv.macs[i] != "":
			r.MACFrom = "HWADDR of " + m.conv.macFiles[i]
		default:
			r.MACFrom = "made by xen2kvm from the guest's UUID: neither the config nor the guest gives one"
		}
	}
	return nil
}

// estimate fills each disk's allocated bytes and output size and copy
// time estimates.
func (m *migration) estimate(ctx context.Context, format string) {
	rate := m.opts.CopyRate
	if rate <= 0 {
		rate = defaultCopyRate
	}
	for _, dk := range m.disks {
		alloc := allocated(ctx, dk.dev)
		dk.rep.Allocated = alloc
		dk.rep.EstimatedSize = estimateSize(dk.dev.Size(), alloc, format)
		dk.rep.EstimatedCopySeconds = float64(alloc) / rate
	}
}

// write copies the disks and writes the guest's files into the staging
// folder, validates and boots the result, then commits it to outDir.
func (m *migration) write(ctx context.Context, k *config.KVMDomain, outDir, format string, old []string) (err error) {
	if m.opts.To != "" {
		return m.deliver(ctx, k, outDir, format, old)
	}
	stage, err := newStaging(outDir, m.dom.Name)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			stage.discard()
		}
	}()
	if err := m.copyDisks(ctx, stage, format); err != nil {
		return err
	}
	if err := m.writeExtraImages(stage); err != nil {
		return err
	}

	// Validate and boot the staged images: nothing is in OutDir yet. A
	// guest that boots from its disk's grub config is booted that way.
	staged := stagedDomain(k, outDir, stage.dir)
	if err := m.extractKernel(k, outDir, stage); err != nil {
		return err
	}

	xml, err := m.p.target.XML(k)
	if err != nil {
		return fmt.Errorf("writing libvirt XML: %w", err)
	}
	if err := stage.writeFile(m.dom.Name+".xml", xml, 0o644); err != nil {
		return err
	}
	if v, _ := m.conv.virtioDomain(k); v != nil {
		vx, err := m.p.target.XML(v)
		if err != nil {
			return fmt.Errorf("writing the virtio libvirt XML: %w", err)
		}
		if err := stage.writeFile(virtioXMLName(m.dom.Name), vx, 0o644); err != nil {
			return err
		}
	}
	script, err := m.p.target.Script(k, outDir)
	if err != nil {
		return fmt.Errorf("writing the launch script: %w", err)
	}
	if err := stage.writeFile(m.dom.Name+".sh", script, 0o755); err != nil {
		return err
	}

	checks := append([]report.Check{m.checkOutputsApart(k)}, m.p.checker.Validate(ctx, staged, m.conv)...)
	m.rep.Validation = checks
	var bad []string
	for _, c := range checks {
		if !c.OK {
			bad = append(bad, c.Name+": "+c.Detail)
		}
		if c.Warning != "" {
			m.rep.Warnings = append(m.rep.Warnings, c.Warning)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: %s", ErrValidation, strings.Join(bad, "; "))
	}
	m.log.Info("validated output", "guest", m.dom.Name, "checks", len(checks))
	if err := m.bootCheck(ctx, staged, stage); err != nil {
		return err
	}

	if err := m.commit(stage, outDir, old); err != nil {
		return err
	}
	m.log.Info("migrated", "guest", m.dom.Name, "outdir", outDir)
	return nil
}

// commit marks the guest migrated, then moves the staged files and the
// report into outDir in place of an earlier run's files (old), as
// staging.commit does, and records their paths in the result.
func (m *migration) commit(stage *staging, outDir string, old []string) error {
	m.rep.Status = report.StatusMigrated
	m.rep.Files = append(append([]string{}, stage.files...), reportName(m.dom.Name))
	m.rep.Finished = time.Now().UTC()
	m.setDowntime()
	js, err := json.MarshalIndent(m.rep, "", "  ")
	if err != nil {
		return err
	}
	if err := stage.commit(old, append(js, '\n')); err != nil {
		return err
	}
	for _, f := range m.rep.Files {
		m.res.Files = append(m.res.Files, filepath.Join(outDir, f))
	}
	return nil
}

// checkOutputsApart checks that the KVM domain never points a writable
// disk at a source image (or at another disk's image): every copied disk
// has its own image in OutDir, and no disk path is a source's path.
func (m *migration) checkOutputsApart(k *config.KVMDomain) report.Check {
	c := report.Check{Name: "output disks are the copies, not the sources"}
	sources := map[string]string{}
	var srcInfo []os.FileInfo
	copies := map[string]bool{}
	for _, dk := range m.disks {
		p := config.MapPath(dk.xen.Source, m.opts.DiskMap)
		sources[filepath.Clean(p)] = dk.xen.Target
		sources[filepath.Clean(dk.xen.Source)] = dk.xen.Target
		copies[filepath.Clean(filepath.Join(m.rep.OutDir, dk.outName))] = true
		if fi, err := os.Stat(p); err == nil {
			srcInfo = append(srcInfo, fi)
		}
	}
	for _, name := range m.conv.extraImageNames() {
		copies[filepath.Clean(filepath.Join(m.rep.OutDir, name))] = true
	}
	var bad []string
	used := map[string]string{}
	n := 0
	for _, d := range k.Disks {
		if d.Device == "cdrom" || d.Path == "" {
			continue
		}
		n++
		p := filepath.Clean(d.Path)
		if t, ok := sources[p]; ok {
			bad = append(bad, fmt.Sprintf("%s is the source image of %s", d.Target, t))
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			for _, si := range srcInfo {
				if os.SameFile(fi, si) {
					bad = append(bad, fmt.Sprintf("%s (%s) is a source image", d.Target, p))
				}
			}
		}
		if other, ok := used[p]; ok {
			bad = append(bad, fmt.Sprintf("%s and %s share %s", other, d.Target, p))
		} else if !copies[p] {
			bad = append(bad, fmt.Sprintf("%s is %s, not a copy xen2kvm wrote", d.Target, p))
		}
		used[p] = d.Target
	}
	if len(bad) > 0 {
		c.Detail = strings.Join(bad, "; ")
		return c
	}
	c.OK, c.Detail = true, fmt.Sprintf("%d disks, each its own image", n)
	return c
}

// copyDisks copies all disks at the same time into the staging folder.
func (m *migration) copyDisks(ctx context.Context, stage *staging, format string) error {
	err := m.copyAll(ctx, format, diskCopy{
		copy: func(ctx context.Context, dk *disk, workers int, progress func(done, total int64)) error {
			patched, err := m.patchWarmOutput(ctx, dk, stage.path(dk.outName), format)
			if err == nil && !patched {
				err = m.p.copier.Copy(ctx, limit(dk.dev, m.opts.Limit), stage.path(dk.outName), format, workers, progress)
			}
			if err != nil {
				return fmt.Errorf("copying disk %s to %s: %w", dk.xen.Target, dk.outName, err)
			}
			if fi, err := os.Stat(stage.path(dk.outName)); err == nil {
				dk.rep.OutputSize = fi.Size()
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	for _, dk := range m.disks {
		stage.add(dk.outName)
		if w := m.rep.Warm; w != nil && dk.warmPatched != nil {
			w.OutputFromPasses++
			w.PatchedBytes += *dk.warmPatched
		}
	}
	return nil
}

// diskCopy is where copyAll writes each disk.
type diskCopy struct {
	// logArgs are added to the "copying disk" log line: where the disk goes.
	logArgs []any
	// copy writes one disk, reporting through progress; its error says
	// which disk and where.
	copy func(ctx context.Context, dk *disk, workers int, progress func(done, total int64)) error
}

// copyAll copies all disks at the same time with to.copy, logging each
// disk's copy and reporting its progress and its end, with the bytes an
// ssh:// source has read over the network.
func (m *migration) copyAll(ctx context.Context, format string, to diskCopy) error {
	workers := m.opts.Workers
	if workers <= 0 {
		workers = 4
		if m.opts.Limit != nil {
			workers = m.opts.Limit.Size()
		}
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, dk := range m.disks {
		g.Go(func() error {
			start := time.Now()
			m.log.Info("copying disk", append([]any{"guest", m.dom.Name, "target", dk.kvm.Target, "to", dk.outName, "format", format}, to.logArgs...)...)
			var last atomic.Int64
			network := func() int64 { return 0 }
			if ri, ok := dk.src.(*remoteImage); ok {
				network = ri.BytesRead
			}
			progress := func(done, total int64) {
				last.Store(total)
				if m.opts.Progress != nil {
					m.opts.Progress(Progress{Guest: m.dom.Name, Disk: dk.kvm.Target, Done: done, Total: total, Network: network()})
				}
			}
			if err := to.copy(gctx, dk, workers, progress); err != nil {
				return err
			}
			dk.rep.CopySeconds = time.Since(start).Seconds()
			if m.opts.Progress != nil {
				total := last.Load()
				m.opts.Progress(Progress{Guest: m.dom.Name, Disk: dk.kvm.Target, Done: total, Total: total, Finish: true, Network: network()})
			}
			m.log.Info("copied disk", "guest", m.dom.Name, "target", dk.kvm.Target, "seconds", dk.rep.CopySeconds)
			return nil
		})
	}
	return g.Wait()
}

// extractKernel copies the default grub entry's kernel and initrd of a
// guest that booted through pygrub next to its images, and points the KVM
// domain at them, so that NAME.sh and libvirt (which has no pygrub) can
// boot it directly.
func (m *migration) extractKernel(k *config.KVMDomain, outDir string, stage *staging) error {
	if !k.BootFromDisk || k.Kernel != "" || m.conv.bootFiles == nil {
		return nil
	}
	bf, err := m.conv.bootFiles(stage.dir)
	if err != nil {
		return fmt.Errorf("reading the boot entry of the converted guest: %w", err)
	}
	kernel, initrd := m.dom.Name+"-vmlinuz", m.dom.Name+"-initrd.img"
	if err := os.Rename(bf.Kernel, stage.path(kernel)); err != nil {
		return err
	}
	stage.add(kernel)
	k.Kernel, k.Cmdline = filepath.Join(outDir, kernel), bf.Cmdline
	if bf.Initrd != "" {
		if err := os.Rename(bf.Initrd, stage.path(initrd)); err != nil {
			return err
		}
		stage.add(initrd)
		k.Initrd = filepath.Join(outDir, initrd)
	}
	m.log.Info("copied the default boot entry's kernel", "guest", m.dom.Name, "entry", bf.Title, "kernel", kernel, "initrd", initrd)
	m.rep.Notes = append(m.rep.Notes, fmt.Sprintf("the guest booted through pygrub: %s.sh and the libvirt XML boot %s and %s, copied from its default grub entry %q; after a kernel update inside the guest, boot it with xen2kvm boot (which reads grub.conf) or copy the new kernel", m.dom.Name, kernel, initrd, bf.Title))
	return nil
}

// bootCheck boots the staged guest when the options ask for it.
func (m *migration) bootCheck(ctx context.Context, k *config.KVMDomain, stage *staging) error {
	switch {
	case m.opts.Boot == BootNever:
		m.rep.Boot = &report.Boot{Skipped: "disabled (--no-boot-check)"}
		return nil
	case m.conv.windows != nil:
		m.rep.Boot = &report.Boot{Skipped: windowsBootSkip}
		return nil
	case !m.conv.Inspected:
		m.rep.Boot = &report.Boot{Skipped: "not a Linux guest xen2kvm converted: there is no login prompt to wait for"}
		return nil
	case !m.p.checker.QEMUAvailable():
		if m.opts.Boot == BootAlways {
			return ErrNoQEMU
		}
		m.rep.Boot = &report.Boot{Skipped: "qemu-system-x86_64 not found"}
		m.rep.Warnings = append(m.rep.Warnings, "boot check skipped: qemu-system-x86_64 not found")
		return nil
	}
	timeout := m.opts.BootTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	logName := m.dom.Name + ".boot.log"
	m.log.Info("boot check", "guest", m.dom.Name, "accel", m.opts.Accel, "timeout", timeout)
	b, err := m.p.checker.Boot(ctx, k, stage.dir, bootOptions{Accel: m.opts.Accel, Timeout: timeout, LogPath: stage.path(logName),
		AllowDrift: m.opts.AllowDrift, NetCheckPort: m.opts.NetCheckPort})
	if _, serr := os.Stat(stage.path(logName)); serr == nil {
		stage.add(logName)
	}
	if b == nil {
		b = &report.Boot{Ran: true}
	}
	m.rep.Boot = b
	if err != nil {
		b.OK = false
		if b.Detail == "" {
			b.Detail = err.Error()
		}
		// The staging folder goes away: keep the serial log beside it,
		// under a name that does not look like a finished guest.
		failed := filepath.Join(stage.outDir, m.dom.Name+".boot-failed.log")
		if os.Rename(stage.path(logName), failed) != nil {
			failed = ""
		}
		return &bootError{err: err, stagedLog: stage.path(logName), log: failed}
	}
	for _, w := range b.Warnings {
		m.rep.Warnings = append(m.rep.Warnings, "boot check: "+w)
	}
	m.log.Info("boot check passed", "guest", m.dom.Name, "seconds", b.Seconds, "accel", b.Accel)
	return nil
}

// bootError is a failed boot check; its serial log was kept in OutDir.
type bootError struct {
	err       error
	stagedLog string
	log       string // "" when there was none
}

func (e *bootError) Error() string {
	msg := fmt.Sprintf("%v: %v", ErrBoot, e.err)
	if e.log != "" {
		msg += " (serial console log: " + e.log + ")"
	}
	return msg
}

func (e *bootError) Unwrap() []error { return []error{ErrBoot, e.err} }

// Hint passes on the launcher's advice, pointing at the kept log.
func (e *bootError) Hint() string {
	var h interface{ Hint() string }
	if !errors.As(e.err, &h) {
		return ""
	}
	if e.log == "" {
		return h.Hint()
	}
	return strings.ReplaceAll(h.Hint(), e.stagedLog, e.log)
}

// stagedDomain is k with its images in the staging folder.
func stagedDomain(k *config.KVMDomain, outDir, stageDir string) *config.KVMDomain {
	c := *k
	c.Disks = append([]config.KVMDisk(nil), k.Disks...)
	for i := range c.Disks {
		if p := c.Disks[i].Path; p != "" && filepath.Dir(p) == outDir {
			c.Disks[i].Path = filepath.Join(stageDir, filepath.Base(p))
		}
	}
	return &c
}

func summarize(d *config.Domain) report.Source {
	s := report.Source{
		File: d.Source.File, Format: string(d.Source.Format), Type: string(d.Type),
		MemoryMiB: d.MemoryMiB, MaxMemoryMiB: d.MaxMemoryMiB, VCPUs: d.VCPUs,
		Bootloader: d.Bootloader, Kernel: d.Kernel,
	}
	for _, n := range d.NICs {
		s.NICs = append(s.NICs, report.NIC{MAC: n.MAC, Bridge: n.Bridge, Model: n.Model})
	}
	return s
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
