package pipeline

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/warm"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// WarmOptions make a migration of an ssh:// guest warm: pass 1 copies
// its disks while it runs, then, once it is stopped, pass 2 moves only
// the blocks that changed (see package warm), and the migration goes on
// from the local copies.
type WarmOptions struct {
	// ShutdownSource asks the Xen host to shut the guest down after pass
	// 1 (xm shutdown -w NAME), waiting at most ShutdownTimeout (10
	// minutes when 0). Without it the migration waits for the guest to
	// stop, at most Wait (forever when 0), and says so.
	ShutdownSource  bool
	ShutdownTimeout time.Duration
	Wait            time.Duration
	// Poll is how often a guest is looked at while waiting (5s when 0).
	Poll time.Duration
	// BlockSize is the block size hashed and moved (1 MiB when 0).
	BlockSize int64
	// HashMethod is how the host hashes blocks: python or dd ("" either).
	HashMethod xenhost.HashMethod
	// Say receives what the user should know (waiting for the guest);
	// nil logs it.
	Say func(string)
}

// ErrWarmLocal: --warm needs a guest on a Xen host.
var ErrWarmLocal = errors.New("warm migration needs an ssh:// source")

// warmDir is where pass 1 keeps the copies of guest name's disks until
// the migration is done.
func warmDir(outDir, name string) string { return filepath.Join(outDir, "."+name+".warm") }

// warmSource reads the guest's config from its host and its disks from
// the local copies the warm passes made.
type warmSource struct {
	*guestSource
	sess *warm.Session
	// guest is what the host said of the guest before pass 1: its config
	// is the one whose disks the passes copied, so it is not read again
	// while the guest is down.
	guest *xenhost.Guest
	host  *xenhost.Host
}

func (s *warmSource) ParseConfig(path string) (*config.Domain, error) {
	if !xenhost.IsURL(path) || s.guest == nil {
		return s.guestSource.ParseConfig(path)
	}
	d := *s.guest.Domain
	d.Warnings = append(append(append([]string{}, d.Warnings...), s.host.Warnings()...), s.guest.Warnings...)
	s.hostSource.mu.Lock()
	s.hostSource.guests[s.u.String()] = s.guest
	s.hostSource.mu.Unlock()
	return &d, nil
}

func (s *warmSource) Open(path, format string) (source, error) {
	local, ok := s.sess.Local(path)
	if !ok {
		return nil, fmt.Errorf("%s: no warm copy of it (the guest's disks changed since pass 1?)", path)
	}
	return s.guestSource.hostSource.localSource.Open(local, format)
}

// warmConfig reads the config of the ssh:// guest at path as ParseConfig
// does, but accepts a running guest: a warm migration copies it running
// and stops it before pass 2.
func (s *hostSource) warmConfig(path string) (*config.Domain, error) {
	u, err := xenhost.ParseURL(path)
	if err != nil {
		return nil, err
	}
	if u.Name == "" {
		return nil, fmt.Errorf("%s: %w", path, ErrNoGuestName)
	}
	h, err := s.host(u)
	if err != nil {
		return nil, err
	}
	g, err := h.Guest(s.ctx, u.Name)
	if err != nil {
		return nil, err
	}
	return g.Domain, nil
}

// runWarm runs the warm passes for the ssh:// guest gs into OutDir and
// returns the source that reads their result, and the session (removed
// by the caller once the migration is done).
func runWarm(ctx context.Context, gs *guestSource, opts Options, rep *report.Guest) (*warmSource, *warm.Session, error) {
	w := opts.Warm
	if opts.OutDir == "" {
		return nil, nil, errors.New("no output folder given")
	}
	outDir, err := filepath.Abs(opts.OutDir)
	if err != nil {
		return nil, nil, err
	}
	h, err := gs.host(gs.u)
	if err != nil {
		return nil, nil, err
	}
	g, err := h.Guest(ctx, gs.u.Name)
	if err != nil {
		return nil, nil, err
	}
	name := g.Domain.Name
	if name == "" {
		name = gs.u.Name
	}
	if err := g.Domain.CheckName(); err != nil {
		return nil, nil, err
	}
	// Refuse a finished output before the long pass 1, as the migration
	// would after it.
	if st, err := readOutput(outDir, name); err != nil {
		return nil, nil, fmt.Errorf("reading output folder: %w", err)
	} else if !opts.Force && (st.Complete || len(st.Foreign) > 0) {
		return nil, nil, &ExistsError{OutDir: outDir, Name: name, Files: append(append([]string{}, st.Owned...), st.Foreign...), Complete: st.Complete}
	}
	var disks []warm.Disk
	for _, d := range g.Domain.Disks {
		if d.Device == "cdrom" || d.Source == "" {
			continue
		}
		disks = append(disks, warm.Disk{Source: d.Source, Target: d.Target})
	}
	if len(disks) == 0 {
		return nil, nil, errors.New("the guest has no disk to migrate")
	}
	log := opts.Logger
	sess := &warm.Session{Host: h, Guest: gs.u.Name, Dir: warmDir(outDir, name), Logger: log, Say: w.Say, Poll: w.Poll,
		Opts: warm.Options{BlockSize: w.BlockSize, Method: w.HashMethod, Workers: opts.Workers}}
	if opts.Progress != nil {
		sess.Progress = func(pass int, target string, done, total, moved int64) {
			opts.Progress(Progress{Guest: name, Disk: fmt.Sprintf("%s (pass %d)", target, pass), Done: done, Total: total,
				Finish: done >= total, Network: moved})
		}
	}
	// Pass 1 writes the output image too, and pass 2 patches it, so
	// that the guest is not down for a copy of the whole disk; only for
	// a qcow2 written into OutDir (not for raw, nor for --to).
	sess.OutputQCOW2 = (opts.Format == "" || opts.Format == "qcow2") && opts.To == ""
	if err := sess.Open(disks); err != nil {
		return nil, nil, err
	}
	fail := func(err error) (*warmSource, *warm.Session, error) {
		sess.Close()
		return nil, nil, err
	}
	wasRunning := g.Running()
	if err := sess.Pass1(ctx); err != nil {
		return fail(err)
	}
	if err := sess.Stop(ctx, w.ShutdownSource, w.ShutdownTimeout, w.Wait); err != nil {
		return fail(err)
	}
	if err := sess.Pass2(ctx); err != nil {
		return fail(err)
	}
	st := sess.State
	rw := &report.Warm{BlockSize: st.BlockSize, HashMethod: string(w.HashMethod), Hash: string(st.HashAlgo), HashHelpers: sess.HashHelpers(), Resumed: sess.Resumed,
		Pass1: warmPass(st.Pass1), Pass2: warmPass(st.Pass2), Stopped: st.Stopped}
	if rw.HashMethod == "" {
		rw.HashMethod = "auto"
	}
	switch {
	case wasRunning && w.ShutdownSource:
		rw.ShutdownBy = "xen2kvm"
	case wasRunning:
		rw.ShutdownBy = "user"
	}
	rep.Warm = rw
	return &warmSource{guestSource: gs, sess: sess, guest: g, host: h}, sess, nil
}

func warmPass(p *warm.Pass) report.WarmPass {
	if p == nil {
		return report.WarmPass{}
	}
	r := report.WarmPass{Started: p.Started, Finished: p.Finished, Seconds: p.Finished.Sub(p.Started).Seconds(), BytesRead: p.BytesRead()}
	for _, s := range p.Disks {
		r.Blocks += s.Blocks
		r.ChangedBlocks += s.Changed
		r.ZeroBlocks += s.Zeroed
	}
	return r
}

// patchWarmOutput writes disk dk's output image to dst from the image
// the warm passes wrote (warm.Session.OutputQCOW2): that image holds the
// disk as the host has it; the conversion's changes (the overlay's dirty
// ranges, widened to whole clusters) are written over it, it is closed
// and moved to dst. It tells whether it did; when the passes left no
// image for the disk, the caller copies the disk as for a cold migration.
func (m *migration) patchWarmOutput(ctx context.Context, dk *disk, dst, format string) (bool, error) {
	ws, ok := m.p.source.(*warmSource)
	if !ok || format != "qcow2" {
		return false, nil
	}
	out, ok := ws.sess.Output(config.MapPath(dk.xen.Source, m.opts.DiskMap))
	if !ok {
		return false, nil
	}
	w := out.Writer
	// The passes mirrored the disk's bytes as they are on the host: its
	// content only when it is raw (not a tap:qcow image file).
	ov, ok := dk.dev.(interface{ Dirty() []diskimg.Extent })
	if !ok || dk.src.Format() != "raw" || (dk.dev.Size()+511)&^511 != w.Size() {
		m.log.Info("the warm passes' output image does not fit the disk: copying it", "target", dk.xen.Target, "format", dk.src.Format())
		w.Abort()
		os.Remove(out.Path)
		return false, nil
	}
	fail := func(err error) (bool, error) {
		w.Abort()
		os.Remove(out.Path)
		return false, fmt.Errorf("patching the output image %s: %w", filepath.Base(dst), err)
	}
	patched, err := w.RewriteExtents(ctx, dk.dev, dk.dev.Size(), ov.Dirty())
	if err != nil {
		return fail(err)
	}
	if err := w.Close(); err != nil {
		os.Remove(out.Path)
		return false, fmt.Errorf("closing the output image %s: %w", filepath.Base(dst), err)
	}
	if err := os.Rename(out.Path, dst); err != nil {
		os.Remove(out.Path)
		return false, fmt.Errorf("moving the output image into place: %w", err)
	}
	dk.warmPatched = &patched
	m.log.Info("output image written by the warm passes, patched with the conversion", "guest", m.dom.Name, "target", dk.xen.Target, "bytes", patched)
	return true, nil
}

// warmPlanSource is the source of a warm dry run: it reads the ssh://
// guest's config and disks off its host as a cold migration does, but
// accepts a running guest (a warm migration copies it running), saying
// that the plan saw its disks as they are now.
type warmPlanSource struct {
	*guestSource
}

func (s *warmPlanSource) ParseConfig(path string) (*config.Domain, error) {
	if !xenhost.IsURL(path) {
		return s.guestSource.ParseConfig(path)
	}
	h, err := s.host(s.u)
	if err != nil {
		return nil, err
	}
	g, err := h.Guest(s.ctx, s.u.Name)
	if err != nil {
		return nil, err
	}
	d := *g.Domain
	d.Warnings = append(append(append([]string{}, d.Warnings...), h.Warnings()...), g.Warnings...)
	if g.Running() {
		d.Warnings = append(d.Warnings, fmt.Sprintf("%s runs on %s: this plan read its disks as they are now (crash-consistent); the warm migration copies them while it runs, then stops it and moves what changed", s.u.Name, s.u.Addr()))
	}
	s.hostSource.mu.Lock()
	s.hostSource.guests[s.u.String()] = g
	s.hostSource.mu.Unlock()
	return &d, nil
}

// planWarm fills the report of a warm dry run: what pass 1 would copy
// and where. Nothing runs on the host for it beyond the reads of the
// plan (no block hashing, no shutdown), and nothing is written.
func (m *migration) planWarm(w *WarmOptions) {
	bs := w.BlockSize
	if bs <= 0 {
		bs = warm.DefaultBlockSize
	}
	rw := &report.Warm{BlockSize: bs, HashMethod: string(w.HashMethod)}
	if rw.HashMethod == "" {
		rw.HashMethod = "auto"
	}
	for _, dk := range m.disks {
		size := dk.src.Size()
		rw.PlannedBytes += size
		rw.Pass1.Blocks += (size + bs - 1) / bs
	}
	if m.opts.OutDir != "" && m.dom != nil {
		if out, err := filepath.Abs(m.opts.OutDir); err == nil {
			rw.Folder = warmDir(out, m.dom.Name)
		}
	}
	if w.ShutdownSource {
		rw.ShutdownBy = "xen2kvm"
	}
	m.rep.Warm = rw
}

// setDowntime records a warm migration's downtime once the converted
// guest is ready (written or delivered, validated, booted).
func (m *migration) setDowntime() {
	if w := m.rep.Warm; w != nil && !w.Stopped.IsZero() {
		w.DowntimeSeconds = m.rep.Finished.Sub(w.Stopped).Seconds()
	}
}
