package warm

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/qcow2"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// Disk is one disk of the guest: its path on the host and its Xen
// target (the name of its local copy).
type Disk struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// DiskState is where one disk's local copy is.
type DiskState struct {
	Disk
	Size int64  `json:"size"`
	File string `json:"file"` // in the session folder
}

// Pass is what one pass did, over every disk.
type Pass struct {
	Started  time.Time        `json:"started"`
	Finished time.Time        `json:"finished"`
	Disks    map[string]Stats `json:"disks"` // by target
}

// BytesRead is what the pass moved over the network.
func (p *Pass) BytesRead() int64 {
	var n int64
	for _, s := range p.Disks {
		n += s.BytesRead
	}
	return n
}

// State is the session's record of how far it got, kept in the session
// folder as state.json. A state without Pass1 is an incomplete copy.
type State struct {
	Version   int    `json:"version"`
	Host      string `json:"host"`
	Guest     string `json:"guest"`
	BlockSize int64  `json:"block_size"`
	// HashAlgo is the block hash of both passes, chosen when pass 1
	// starts (empty: MD5, as before there was a choice).
	HashAlgo xenhost.HashAlgo `json:"hash,omitempty"`
	// HostCPUs is how many CPUs the host said it has when pass 1
	// started (0: it could not tell): the number of helpers hashing at
	// once follows it (HashStreams).
	HostCPUs int         `json:"host_cpus,omitempty"`
	Disks    []DiskState `json:"disks"`
	Pass1    *Pass       `json:"pass1,omitempty"`
	Pass2    *Pass       `json:"pass2,omitempty"`
	// Stopped is when the guest was first seen stopped before pass 2.
	Stopped time.Time `json:"stopped,omitzero"`
}

const stateVersion = 1

// Session is the warm migration of one guest's disks into Dir.
type Session struct {
	Host  *xenhost.Host
	Guest string
	Dir   string
	Opts  Options
	// Say receives what the user should know (waiting for the guest to
	// stop); nil logs it.
	Say    func(string)
	Logger *slog.Logger
	// Poll is how often a guest is looked at while waiting for it to
	// stop (5s when 0).
	Poll time.Duration
	// Progress, when set, is called as pass (1 or 2) goes through disk
	// target: bytes looked at so far of total, and bytes moved over the
	// network.
	Progress func(pass int, target string, done, total, moved int64)

	// OutputQCOW2 makes pass 1 also write each disk as a qcow2 image
	// beside its copy, and pass 2 patch it with the blocks that changed,
	// so that the migration takes it as its output (Output) instead of
	// copying the whole disk again while the guest is down. The image
	// lives only as long as the Session: a resumed session writes it
	// again from the copy, before the guest is stopped.
	OutputQCOW2 bool

	State   State
	Resumed bool // pass 1 was done by an earlier run

	lock    *os.File
	mu      sync.Mutex
	outputs map[string]*Output // by target
	// seenStopped: Stop saw the guest stopped; Pass2 does not ask the
	// host again while the guest is down.
	seenStopped bool
	// confirm is the answer of the host, asked by Stop after xm shutdown
	// -w, whether the guest is off: nil, or why pass 2 must fail.
	confirm chan error
	// prepared are pass 2's hash helpers, started on the host by Stop
	// before the guest stops, by target.
	prepared map[string][]*xenhost.PreparedHash
	// saved is the state file being written in the background by Stop
	// and Pass2, off the downtime's path; later saves wait for it.
	saved chan error
	// flushing: pass 2's copies being synced and their sums written in
	// the background (flushLater).
	flushing sync.WaitGroup
}

// Output is a disk's output image written by the passes: it holds what
// the disk's copy holds, and is still open (Writer) for the migration to
// patch with its own changes and close.
type Output struct {
	Writer *qcow2.Writer
	Path   string // in the session folder
}

// mirror is what the block engine writes an Output through. Every
// writebackEvery bytes it starts the image's writeback in the background
// (one at a time), so that the output's fsync once pass 2 is done, in
// the downtime, has little left to write.
type mirror struct {
	w       *qcow2.Writer
	written *atomic.Int64
	busy    *atomic.Bool
}

const writebackEvery = 8 << 20

func newMirror(w *qcow2.Writer) mirror {
	return mirror{w: w, written: new(atomic.Int64), busy: new(atomic.Bool)}
}

func (m mirror) WriteAt(p []byte, off int64) (int, error) {
	n, err := m.w.Rewrite(p, off)
	k := int64(n)
	if t := m.written.Add(k); t/writebackEvery != (t-k)/writebackEvery && m.busy.CompareAndSwap(false, true) {
		go func() {
			m.w.StartWriteback()
			m.busy.Store(false)
		}()
	}
	return n, err
}

// newOutput starts the output image of disk d (OutputQCOW2).
func (s *Session) newOutput(d *DiskState) (*Output, error) {
	if !s.OutputQCOW2 || s.State.BlockSize%qcow2.DefaultClusterSize != 0 {
		return nil, nil
	}
	path := filepath.Join(s.Dir, d.Target+".out.qcow2")
	w, err := qcow2.Create(path, d.Size)
	if err != nil {
		return nil, fmt.Errorf("disk %s: output image: %w", d.Target, err)
	}
	o := &Output{Writer: w, Path: path}
	s.mu.Lock()
	if s.outputs == nil {
		s.outputs = map[string]*Output{}
	}
	s.outputs[d.Target] = o
	s.mu.Unlock()
	return o, nil
}

// dropOutput abandons the output image of target, if any.
func (s *Session) dropOutput(target string) {
	s.mu.Lock()
	o := s.outputs[target]
	delete(s.outputs, target)
	s.mu.Unlock()
	if o != nil {
		o.Writer.Abort()
		os.Remove(o.Path)
	}
}

func (s *Session) output(target string) *Output {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outputs[target]
}

// Output hands the output image of the disk at source over to the
// caller (who closes or aborts its Writer), if the passes wrote one: with
// OutputQCOW2, when pass 1 ran in this Session and pass 2 is done.
func (s *Session) Output(source string) (*Output, bool) {
	if s.State.Pass2 == nil {
		return nil, false
	}
	for _, d := range s.State.Disks {
		if d.Source != source {
			continue
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		o, ok := s.outputs[d.Target]
		delete(s.outputs, d.Target)
		return o, ok
	}
	return nil, false
}

// ErrStillRunning: pass 2 was asked for while the guest still runs.
var ErrStillRunning = errors.New("the guest still runs")

func (s *Session) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Session) say(msg string) {
	if s.Say != nil {
		s.Say(msg)
		return
	}
	s.log().Info(msg)
}

// opts are the block engine's options for one pass over disk d.
func (s *Session) opts(pass int, d *DiskState) Options {
	o := s.engineOpts()
	if s.Progress != nil {
		o.Progress = func(done, total, moved int64) { s.Progress(pass, d.Target, done, total, moved) }
	}
	return o
}

// diskSlots bounds the disks a pass works on at once so that their
// helpers stay within MaxStreams (each is an SSH session, and a modern
// sshd allows ten a connection): all of a guest's disks but the ninth and
// after when each has one.
func (s *Session) diskSlots() chan struct{} {
	return make(chan struct{}, max(1, MaxStreams/s.HashHelpers()))
}

// take waits for a slot, false when ctx ends first.
func take(ctx context.Context, slots chan struct{}) bool {
	select {
	case slots <- struct{}{}:
		return ctx.Err() == nil
	case <-ctx.Done():
		return false
	}
}

// HashHelpers is how many helpers hash each disk at once on the host.
func (s *Session) HashHelpers() int { return s.engineOpts().streams() }

// engineOpts are Opts with the block size and hash of the state, and
// as many helpers hashing each disk as the host's CPUs allow
// (HashStreams) unless Opts.Streams says.
func (s *Session) engineOpts() Options {
	o := s.Opts
	o.BlockSize = s.State.BlockSize
	o.Algo = s.State.HashAlgo
	if o.Streams == 0 {
		o.Streams = HashStreams(s.State.HostCPUs, len(s.State.Disks))
	}
	return o
}

func (s *Session) statePath() string { return filepath.Join(s.Dir, "state.json") }

// Open creates or locks the session folder and reads its state. A state
// for other disks, another guest or another block size, or whose copies
// are gone, is dropped: pass 1 starts afresh.
func (s *Session) Open(disks []Disk) error {
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("warm migration folder: %w", err)
	}
	l, err := os.OpenFile(filepath.Join(s.Dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("warm migration folder: %w", err)
	}
	if err := unix.Flock(int(l.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		l.Close()
		return fmt.Errorf("%s: another warm migration of %s is using it", s.Dir, s.Guest)
	}
	s.lock = l
	bs := s.Opts.blockSize()
	fresh := State{Version: stateVersion, Host: s.Host.URL.HostURL(), Guest: s.Guest, BlockSize: bs}
	for _, d := range disks {
		fresh.Disks = append(fresh.Disks, DiskState{Disk: d, File: d.Target + ".img"})
	}
	data, err := os.ReadFile(s.statePath())
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		s.State = fresh
		return nil
	}
	var old State
	if err := json.Unmarshal(data, &old); err != nil {
		s.log().Warn("ignoring an unreadable warm state", "file", s.statePath(), "err", err)
		s.State = fresh
		return nil
	}
	if why := s.usable(&old, &fresh); why != "" {
		s.say(fmt.Sprintf("pass 1 of an earlier warm migration of %s cannot be used (%s): copying again", s.Guest, why))
		s.State = fresh
		return nil
	}
	s.State = old
	s.Resumed = old.Pass1 != nil
	return nil
}

func (s *Session) usable(old, fresh *State) string {
	switch {
	case old.Version != stateVersion:
		return "another version"
	case old.Guest != fresh.Guest || old.Host != fresh.Host:
		return "another guest"
	case old.BlockSize != fresh.BlockSize:
		return fmt.Sprintf("block size %d, not %d", old.BlockSize, fresh.BlockSize)
	case len(old.Disks) != len(fresh.Disks):
		return "other disks"
	case old.Pass1 == nil:
		return "it did not finish"
	}
	for i, d := range old.Disks {
		if d.Disk != fresh.Disks[i].Disk || d.File != fresh.Disks[i].File {
			return "other disks"
		}
		fi, err := os.Stat(filepath.Join(s.Dir, d.File))
		if err != nil || fi.Size() != d.Size {
			return "its copy of " + d.Target + " is gone"
		}
		if _, err := s.readSums(d, old.BlockSize); err != nil {
			return "its block hashes of " + d.Target + " are gone"
		}
	}
	return ""
}

// Close unlocks the session folder and abandons the output images not
// handed over.
func (s *Session) Close() error {
	s.closePrepared()
	s.flushing.Wait()
	if s.saved != nil {
		if err := <-s.saved; err != nil {
			s.log().Warn("the warm migration's state could not be saved", "file", s.statePath(), "err", err)
		}
		s.saved = nil
	}
	for _, d := range s.State.Disks {
		s.dropOutput(d.Target)
	}
	if s.lock != nil {
		s.lock.Close()
		s.lock = nil
	}
	return nil
}

// Remove deletes the session folder (after the migration succeeded).
func (s *Session) Remove() error {
	s.Close()
	return os.RemoveAll(s.Dir)
}

// Local is the path of the local copy of the disk at source on the host.
func (s *Session) Local(source string) (string, bool) {
	for _, d := range s.State.Disks {
		if d.Source == source {
			return filepath.Join(s.Dir, d.File), true
		}
	}
	return "", false
}

func (s *Session) save() error {
	if s.saved != nil {
		<-s.saved
		s.saved = nil
	}
	data, err := json.MarshalIndent(&s.State, "", "  ")
	if err != nil {
		return err
	}
	return writeAtomic(s.statePath(), data)
}

// saveLater writes the state as it is now in the background (the guest
// is down: the fsync can wait); the next save waits for it.
func (s *Session) saveLater() {
	data, err := json.MarshalIndent(&s.State, "", "  ")
	if s.saved != nil {
		<-s.saved
	}
	done := make(chan error, 1)
	s.saved = done
	if err != nil {
		done <- err
		return
	}
	go func() { done <- writeAtomic(s.statePath(), data) }()
}

func writeAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *Session) sumsPath(d DiskState) string { return filepath.Join(s.Dir, d.Target+".sums") }

func (s *Session) writeSums(d DiskState, sums Sums) error {
	s.flushing.Wait()
	return s.writeSumsNow(d, sums)
}

func (s *Session) writeSumsNow(d DiskState, sums Sums) error {
	data := make([]byte, 0, 16*len(sums))
	for _, h := range sums {
		data = append(data, h[:]...)
	}
	return writeAtomic(s.sumsPath(d), data)
}

func (s *Session) readSums(d DiskState, bs int64) (Sums, error) {
	s.flushing.Wait()
	data, err := os.ReadFile(s.sumsPath(d))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) != 16*blocks(d.Size, bs) {
		return nil, fmt.Errorf("%s: %d bytes, want %d", s.sumsPath(d), len(data), 16*blocks(d.Size, bs))
	}
	sums := make(Sums, len(data)/16)
	for i := range sums {
		copy(sums[i][:], data[16*i:])
	}
	return sums, nil
}

// Pass1 copies every disk while the guest may run, unless an earlier run
// did (Resumed). The copies are crash-consistent at best; the state
// records them as pass 1 only.
func (s *Session) Pass1(ctx context.Context) error {
	if s.State.Pass1 != nil {
		s.say(fmt.Sprintf("resuming the warm migration of %s: pass 1 was done %s", s.Guest, s.State.Pass1.Finished.Local().Format(time.DateTime)))
		s.rebuildOutputs(ctx)
		return nil
	}
	s.State.Pass2 = nil
	s.State.Stopped = time.Time{}
	s.probe(ctx)
	if err := s.save(); err != nil { // no Pass1: incomplete
		return err
	}
	p := &Pass{Started: time.Now().UTC(), Disks: map[string]Stats{}}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	slots := s.diskSlots()
	for i := range s.State.Disks {
		d := &s.State.Disks[i]
		if !take(gctx, slots) {
			break
		}
		g.Go(func() error {
			defer func() { <-slots }()
			disk, err := s.Host.OpenDisk(gctx, d.Source)
			if err != nil {
				return fmt.Errorf("disk %s: %w", d.Target, err)
			}
			defer disk.Close()
			d.Size = disk.Size()
			f, err := os.OpenFile(filepath.Join(s.Dir, d.File), os.O_CREATE|os.O_RDWR, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			s.log().Info("pass 1: copying", "disk", d.Target, "source", d.Source, "size", d.Size)
			s.dropOutput(d.Target)
			out, err := s.newOutput(d)
			if err != nil {
				return err
			}
			opts := s.opts(1, d)
			if out != nil {
				opts.Mirror = newMirror(out.Writer)
			}
			// Zero blocks are found by the host's hashes and not moved;
			// a host that cannot hash gets a plain copy.
			sums, st, err := CopySparse(gctx, s.Host, d.Source, disk, d.Size, f, opts)
			var ee *xenhost.ExecError
			if err != nil && errors.As(err, &ee) && gctx.Err() == nil {
				s.log().Warn("pass 1: the host cannot hash blocks; copying every block", "disk", d.Target, "err", err)
				s.dropOutput(d.Target)
				if out, err = s.newOutput(d); err != nil {
					return err
				}
				opts.Mirror = nil
				if out != nil {
					opts.Mirror = newMirror(out.Writer)
				}
				sums, st, err = Copy(gctx, disk, d.Size, f, opts)
			}
			if err == nil && out != nil {
				// Written back now, while the guest runs, not when the
				// image is closed while it is down.
				err = out.Writer.Sync()
			}
			if err != nil {
				s.dropOutput(d.Target)
				return fmt.Errorf("pass 1, disk %s: %w", d.Target, err)
			}
			if err := s.writeSums(*d, sums); err != nil {
				return err
			}
			mu.Lock()
			p.Disks[d.Target] = st
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	p.Finished = time.Now().UTC()
	s.State.Pass1 = p
	return s.save()
}

// rebuildOutputs writes the output images (OutputQCOW2) of a session
// resumed after pass 1 from the local copies: an image lives only in the
// run that writes it, and without one the migration would copy each disk
// whole while the guest is down. Done here, before the guest is stopped,
// the copy costs no downtime (the guest may already be off: then it
// costs what the migration's copy would). A disk whose image fails is
// copied by the migration as before, with a warning.
func (s *Session) rebuildOutputs(ctx context.Context) {
	if !s.OutputQCOW2 {
		return
	}
	var g errgroup.Group
	for i := range s.State.Disks {
		d := &s.State.Disks[i]
		g.Go(func() error {
			if err := s.rebuildOutput(ctx, d); err != nil {
				s.dropOutput(d.Target)
				s.log().Warn("the output image could not be written from the warm copy; the migration copies the disk after pass 2", "disk", d.Target, "err", err)
			}
			return nil
		})
	}
	g.Wait()
}

func (s *Session) rebuildOutput(ctx context.Context, d *DiskState) error {
	start := time.Now()
	out, err := s.newOutput(d)
	if err != nil || out == nil {
		return err
	}
	src, err := diskimg.OpenAs(filepath.Join(s.Dir, d.File), "raw")
	if err != nil {
		return err
	}
	defer src.Close()
	exts, err := src.Extents(ctx)
	if err != nil {
		return err
	}
	// A fresh image allocates no cluster for zeros: the copy's data
	// extents are all there is to write.
	written, err := out.Writer.RewriteExtents(ctx, src, d.Size, exts)
	if err != nil {
		return err
	}
	if err := out.Writer.Sync(); err != nil {
		return err
	}
	s.log().Info("output image written from the warm copy", "disk", d.Target, "bytes", written, "seconds", time.Since(start).Seconds())
	return nil
}

// probe asks the host, for a new pass 1, which block hash it computes
// faster (Opts.Algo when set) and how many CPUs it has. A host that
// cannot say gets MD5: pass 1 then copies every block, and pass 2 fails
// if it cannot hash.
func (s *Session) probe(ctx context.Context) {
	p, err := s.Host.ProbeHash(ctx, s.Opts.Method)
	if err != nil {
		s.log().Warn("the host could not say how it hashes blocks fastest; using MD5", "err", err)
		p.Algo = xenhost.HashMD5
	}
	if s.Opts.Algo != "" {
		p.Algo = s.Opts.Algo
	}
	s.State.HashAlgo, s.State.HostCPUs = p.Algo, p.CPUs
	s.log().Info("block hash chosen", "hash", p.Algo, "host_cpus", p.CPUs, "helpers_per_disk", s.engineOpts().streams())
}

// prepare starts pass 2's hash helpers on the host while the guest still
// runs; they wait, opening nothing, until pass 2 has them go, so that
// starting them (a session and an interpreter each) is not downtime. A
// helper that cannot be started now is started by pass 2.
func (s *Session) prepare(ctx context.Context) {
	s.closePrepared()
	s.prepared = map[string][]*xenhost.PreparedHash{}
	// At most MaxStreams at once, as pass 2 runs them: the disks after
	// start theirs in pass 2, as others finish.
	left := MaxStreams
	for _, d := range s.State.Disks {
		if left < s.HashHelpers() {
			break
		}
		left -= s.HashHelpers()
		sums, err := s.readSums(d, s.State.BlockSize)
		if err != nil {
			sums = nil // pass 2 finds out
		}
		ps, err := Prepare(ctx, s.Host, d.Source, d.Size, sums, s.engineOpts())
		if err != nil {
			s.log().Warn("pass 2's hash helpers could not be started ahead", "disk", d.Target, "err", err)
			continue
		}
		s.prepared[d.Target] = ps
	}
}

func (s *Session) closePrepared() {
	for _, ps := range s.prepared {
		for _, p := range ps {
			p.Close()
		}
	}
	s.prepared = nil
}

// running tells whether the host runs the guest.
func (s *Session) running(ctx context.Context) (bool, error) {
	g, err := s.Host.Guest(ctx, s.Guest)
	if err != nil {
		return false, err
	}
	return g.Running(), nil
}

// Stop makes sure the guest is off before pass 2: with shutdown it asks
// the host (xm shutdown -w, at most timeout); otherwise it waits for the
// guest to stop, saying so, at most wait (forever when 0). It records
// when the guest was seen stopped: the start of the downtime.
func (s *Session) Stop(ctx context.Context, shutdown bool, timeout, wait time.Duration) error {
	run, err := s.running(ctx)
	if err != nil {
		return err
	}
	if !run {
		if s.State.Stopped.IsZero() {
			s.State.Stopped = time.Now().UTC()
		}
		s.seenStopped = true
		s.saveLater()
		return nil
	}
	s.seenStopped = false
	s.State.Stopped = time.Time{}
	s.prepare(ctx)
	if shutdown {
		s.say(fmt.Sprintf("shutting %s down on %s (xm shutdown -w %s)", s.Guest, s.Host.URL.Addr(), s.Guest))
		if err := s.Host.Shutdown(ctx, s.Guest, timeout); err != nil {
			return err
		}
	} else {
		s.say(fmt.Sprintf("pass 1 done; waiting for %s to stop on %s (shut it down there, e.g. xm shutdown %s, or give --shutdown-source)", s.Guest, s.Host.URL.Addr(), s.Guest))
		poll := s.Poll
		if poll <= 0 {
			poll = 5 * time.Second
		}
		var deadline <-chan time.Time
		if wait > 0 {
			deadline = time.After(wait)
		}
		for run {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-deadline:
				return fmt.Errorf("%s on %s: %w after waiting %s", s.Guest, s.Host.URL.Addr(), ErrStillRunning, wait)
			case <-time.After(poll):
			}
			if run, err = s.running(ctx); err != nil {
				return err
			}
		}
	}
	// The downtime starts when xm shutdown -w returned (or a poll found
	// the guest stopped). After xm shutdown -w the host is asked once
	// more whether the guest is off, while pass 2 already runs: pass 2
	// fails if it is not (see Pass2).
	s.State.Stopped = time.Now().UTC()
	if shutdown {
		confirm := make(chan error, 1)
		go func() {
			run, err := s.running(ctx)
			if err == nil && run {
				err = fmt.Errorf("%s on %s: %w after xm shutdown", s.Guest, s.Host.URL.Addr(), ErrStillRunning)
			}
			confirm <- err
		}()
		s.confirm = confirm
	}
	s.seenStopped = true
	s.say(fmt.Sprintf("%s is stopped: pass 2 moves what changed since pass 1", s.Guest))
	s.saveLater()
	return nil
}

// Pass2 moves the blocks that changed since pass 1, every disk at once.
// The guest must be stopped: a running one is refused (ErrStillRunning).
// Where the host compares the blocks itself (python), each block sent is
// the one it hashed; where the changed blocks are fetched after their
// hash (dd), one that changed in between fails pass 2
// (ErrSourceChanging). The copies are made durable, and their sums
// written, in the background (Close waits for it).
func (s *Session) Pass2(ctx context.Context) error {
	if s.State.Pass1 == nil {
		return errors.New("pass 2 before pass 1")
	}
	// Right after Stop saw the guest stopped the host is not asked again
	// (a round trip while the guest is down): no check closes the race
	// with a guest started just after it, and such a guest's writes to
	// blocks pass 2 fetches fail it (ErrSourceChanging).
	if !s.seenStopped {
		if run, err := s.running(ctx); err != nil {
			return err
		} else if run {
			return fmt.Errorf("pass 2 of %s on %s: %w", s.Guest, s.Host.URL.Addr(), ErrStillRunning)
		}
	}
	s.seenStopped = false
	prepared := s.prepared
	s.prepared = nil // Sync runs or closes them
	s.State.Pass2 = nil
	p := &Pass{Started: time.Now().UTC(), Disks: map[string]Stats{}}
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	if confirm := s.confirm; confirm != nil {
		s.confirm = nil
		g.Go(func() error {
			select {
			case err := <-confirm:
				return err // a guest still running stops pass 2
			case <-gctx.Done():
				return nil
			}
		})
	}
	// The disks whose helpers were started ahead come first.
	slots := s.diskSlots()
	for i := range s.State.Disks {
		d := &s.State.Disks[i]
		if !take(gctx, slots) {
			break
		}
		g.Go(func() error {
			defer func() { <-slots }()
			sums, err := s.readSums(*d, s.State.BlockSize)
			if err != nil {
				return fmt.Errorf("disk %s: %w", d.Target, err)
			}
			disk, err := s.Host.OpenDisk(gctx, d.Source)
			if err != nil {
				return fmt.Errorf("disk %s: %w", d.Target, err)
			}
			defer disk.Close()
			f, err := os.OpenFile(filepath.Join(s.Dir, d.File), os.O_RDWR, 0)
			if err != nil {
				return err
			}
			s.log().Info("pass 2: moving changed blocks", "disk", d.Target, "source", d.Source)
			opts := s.opts(2, d)
			opts.noSync = true // flushLater
			opts.Prepared = prepared[d.Target]
			if out := s.output(d.Target); out != nil && disk.Size() == d.Size {
				opts.Mirror = newMirror(out.Writer)
			} else {
				s.dropOutput(d.Target) // the disk changed size: no longer its image
			}
			sums, st, err := Sync(gctx, s.Host, d.Source, disk, disk.Size(), f, sums, opts)
			mu.Lock()
			d.Size = disk.Size()
			ds := *d
			mu.Unlock()
			if err != nil {
				// The sums are what the copy now holds, also after a
				// failure: a later pass 2 goes on from there.
				if ferr := flushCopy(f, ds, sums, s.writeSums); ferr != nil {
					s.log().Warn("pass 2's copy could not be saved for a later run", "disk", d.Target, "err", ferr)
				}
				s.dropOutput(d.Target)
				return fmt.Errorf("pass 2, disk %s: %w", d.Target, err)
			}
			s.flushLater(f, ds, sums)
			mu.Lock()
			p.Disks[d.Target] = st
			mu.Unlock()
			return nil
		})
	}
	err := g.Wait()
	for _, ps := range prepared {
		for _, hp := range ps {
			hp.Close() // those of a disk that failed before its Sync
		}
	}
	if err != nil {
		s.save()
		return err
	}
	p.Finished = time.Now().UTC()
	s.State.Pass2 = p
	// The guest is down: the state, as the copies, is written after.
	s.saveLater()
	return nil
}

// flushCopy makes pass 2's copy f of disk d durable, then writes its sums
// (with write): sums never name blocks that a crash could take back.
func flushCopy(f *os.File, d DiskState, sums Sums, write func(DiskState, Sums) error) error {
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", f.Name(), err)
	}
	return write(d, sums)
}

// flushLater does flushCopy in the background: the copy matters only to
// a later run, so its fsync is no part of the downtime. Until then the
// sums file holds older sums, whose blocks that pass 2 rewrote differ
// from the host's: a pass 2 after a crash moves them again. Close, and
// anything reading or writing sums, waits for it.
func (s *Session) flushLater(f *os.File, d DiskState, sums Sums) {
	s.flushing.Add(1)
	go func() {
		defer s.flushing.Done()
		if err := flushCopy(f, d, sums, s.writeSumsNow); err != nil {
			s.log().Warn("pass 2's copy could not be saved for a later run", "disk", d.Target, "err", err)
		}
	}()
}
