package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// BatchOptions configure RunBatch.
type BatchOptions struct {
	RunOptions
	// Jobs is how many guests are migrated at once; 0 means 2.
	Jobs int
	// UploadsPerHost is how many of them upload their disks to one
	// libvirt host (to:) at once; 0 means 2. The others wait for a slot
	// with their conversion planned.
	UploadsPerHost int
	// StateFile records each guest's progress so that a re-run skips the
	// guests already migrated; "" means MANIFEST.state.json beside the
	// manifest (its extension replaced).
	StateFile string
	// LogDir receives one log file per guest, NAME.log; "" means
	// MANIFEST.logs beside the manifest.
	LogDir string
	// Warm configures the guests the manifest marks warm: true.
	Warm WarmOptions

	placer  *placer    // places guests on one of several destinations
	uploads *hostSlots // bounds the uploads to each libvirt host
}

// GuestStatus is where one guest of a batch ended.
type GuestStatus string

const (
	GuestMigrated GuestStatus = "migrated"
	GuestSkipped  GuestStatus = "skipped" // migrated by an earlier run
	GuestPlanned  GuestStatus = "planned" // dry run
	GuestFailed   GuestStatus = "failed"
	GuestBlocked  GuestStatus = "blocked"
)

// GuestResult is the outcome of one guest of a batch.
type GuestResult struct {
	Config  string        `json:"config"`
	Name    string        `json:"name"`
	OutDir  string        `json:"outdir,omitempty"`
	Status  GuestStatus   `json:"status"`
	Error   string        `json:"error,omitempty"`
	Seconds float64       `json:"seconds"`
	Log     string        `json:"log,omitempty"`
	Report  *report.Guest `json:"report,omitempty"`
}

// BatchResult is the outcome of a batch, guests in manifest order.
type BatchResult struct {
	Guests []GuestResult `json:"guests"`
	Failed int           `json:"failed"`
}

// ErrBatchFailed is returned by RunBatch when at least one guest failed.
var ErrBatchFailed = errors.New("some guests failed")

// RunBatch migrates the manifest's guests, opts.Jobs at a time. A guest's
// failure never stops the others; RunBatch returns ErrBatchFailed (with
// the full result) when any failed.
//
// Guests on Xen hosts (ssh:// configs) share one connection per host.
func RunBatch(ctx context.Context, m *Manifest, opts BatchOptions) (*BatchResult, error) {
	p, closeHosts := withHosts(ctx, realParts(), opts.RunOptions)
	defer closeHosts()
	return runBatch(ctx, p, m, opts)
}

func runBatch(ctx context.Context, p parts, m *Manifest, opts BatchOptions) (*BatchResult, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	jobs := opts.Jobs
	if jobs <= 0 {
		jobs = 2
	}
	workers := opts.Workers
	if workers <= 0 {
		workers = 4
	}
	stem := strings.TrimSuffix(m.Path, filepath.Ext(m.Path))
	if opts.StateFile == "" {
		opts.StateFile = stem + ".state.json"
	}
	if opts.LogDir == "" {
		opts.LogDir = stem + ".logs"
	}
	var st *stateFile
	if !opts.DryRun {
		var err error
		if st, err = loadState(opts.StateFile); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(opts.LogDir, 0o755); err != nil {
			return nil, fmt.Errorf("creating log folder: %w", err)
		}
	}

	res := &BatchResult{Guests: make([]GuestResult, len(m.Guests))}
	lim := NewLimiter(workers)
	sem := make(chan struct{}, jobs)
	logNames := logFileNames(m.Guests)
	claims := &outClaims{by: map[string]GuestSpec{}}
	opts.placer = &placer{}
	if opts.uploads == nil {
		perHost := opts.UploadsPerHost
		if perHost <= 0 {
			perHost = defaultUploadsPerHost
		}
		opts.uploads = newHostSlots(perHost)
	}
	var wg sync.WaitGroup
	for i, g := range m.Guests {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				res.Guests[i] = GuestResult{Config: g.Config, Name: guessName(g.Config), Status: GuestFailed, Error: ErrInterrupted.Error()}
				return
			}
			defer func() { <-sem }()
			logPath := filepath.Join(opts.LogDir, logNames[i])
			res.Guests[i] = runGuest(ctx, p, g, opts, st, lim, log, logPath, claims)
		}()
	}
	wg.Wait()
	for _, g := range res.Guests {
		if g.Status == GuestFailed || g.Status == GuestBlocked {
			res.Failed++
		}
	}
	if ctx.Err() != nil && res.Failed > 0 {
		// SIGINT or SIGTERM stopped the guests still running or waiting.
		return res, fmt.Errorf("%w: %d of %d: %w", ErrBatchFailed, res.Failed, len(res.Guests), &interruptedError{ctx.Err()})
	}
	if res.Failed > 0 {
		return res, fmt.Errorf("%w: %d of %d", ErrBatchFailed, res.Failed, len(res.Guests))
	}
	return res, nil
}

// runGuest migrates one guest of a batch.
func runGuest(ctx context.Context, p parts, g GuestSpec, opts BatchOptions, st *stateFile, lim *Limiter, log *slog.Logger, logPath string, claims *outClaims) (r GuestResult) {
	start := time.Now()
	r = GuestResult{Config: g.Config, Name: guessName(g.Config)}
	key := stateKey(g)
	defer func() { r.Seconds = time.Since(start).Seconds() }()

	var d *config.Domain
	var err error
	if hs, ok := p.source.(*hostSource); ok && g.Warm && xenhost.IsURL(g.Config) {
		d, err = hs.warmConfig(g.Config) // it may run until pass 1 is done (or, in a dry run, go on running)
	} else {
		d, err = p.source.ParseConfig(g.Config)
	}
	if err != nil {
		r.Status, r.Error = GuestFailed, err.Error()
		log.Error("guest failed", "config", g.Config, "err", err)
		if st != nil {
			setState(st, key, guestState{Status: GuestFailed, Error: r.Error}, log)
		}
		return r
	}
	r.Name = d.Name
	if err := d.CheckName(); err != nil {
		r.Status, r.Error = GuestFailed, err.Error()
		log.Error("guest failed", "config", g.Config, "err", err)
		if st != nil {
			setState(st, key, guestState{Status: GuestFailed, Error: r.Error}, log)
		}
		return r
	}
	r.OutDir = filepath.Join(g.Output, d.Name)
	if other := claims.claim(r.OutDir, g); other != nil {
		r.Status = GuestFailed
		r.Error = fmt.Sprintf("guest %s would be written to %s, as the guest of %s (manifest line %d) is: rename one or give it another output", d.Name, r.OutDir, other.Config, other.Line)
		log.Error("guest failed", "guest", d.Name, "err", r.Error)
		return r
	}

	force := false
	if st != nil {
		prev := st.get(key)
		if prev.Status == GuestMigrated {
			if missing, err := missingOutputs(r.OutDir, d.Name); err == nil && len(missing) == 0 {
				r.Status = GuestSkipped
				log.Info("guest already migrated", "guest", d.Name, "outdir", r.OutDir)
				return r
			} else {
				log.Info("guest migrated before but its output is incomplete: migrating it again", "guest", d.Name, "outdir", r.OutDir, "missing", missing, "err", err)
			}
		}
		// An interrupted or failed earlier run of this batch left at
		// most an incomplete guest: replace it.
		force = prev.Status != ""
		setState(st, key, guestState{Name: d.Name, OutDir: r.OutDir, Status: "running"}, log)
	}

	gopts := Options{
		RunOptions: opts.RunOptions,
		OutDir:     r.OutDir, Format: g.Format, DiskMap: g.DiskMap, Force: force,
		Boot: BootAuto, Limit: lim, KernelRPM: g.KernelRPM, VirtioWin: g.VirtioWin,
		uploads: opts.uploads,
	}
	// The guest's copy workers come from the batch's shared limit, and
	// the batch's logger is for the batch's own events.
	gopts.Workers, gopts.Logger = lim.Size(), nil
	gopts.AllowDrift = gopts.AllowDrift || g.AllowDrift
	if !g.BootCheck {
		gopts.Boot = BootNever
	}
	if g.Warm {
		w := opts.Warm
		gopts.Warm = &w
	}
	if len(g.To) > 0 {
		gopts.To, gopts.Pool = g.To[0], g.Pool
		if len(g.To) > 1 && !opts.DryRun && opts.placer != nil {
			uri, why, release, err := opts.placer.place(ctx, g.To, g.Pool, d, g.DiskMap)
			if err != nil {
				r.Status, r.Error = GuestFailed, err.Error()
				log.Error("guest failed", "guest", d.Name, "err", err)
				if st != nil {
					setState(st, key, guestState{Name: d.Name, OutDir: r.OutDir, Status: GuestFailed, Error: r.Error}, log)
				}
				return r
			}
			defer release()
			gopts.To, gopts.Placement = uri, why
			log.Info("placed guest", "guest", d.Name, "to", uri, "why", why)
		}
	}
	var logFile *os.File
	if !opts.DryRun {
		if logFile, err = os.Create(logPath); err == nil {
			r.Log = logPath
			gopts.Logger = slog.New(slog.NewTextHandler(logFile, nil))
			defer logFile.Close()
		}
	}
	log.Info("migrating guest", "guest", d.Name, "config", g.Config, "outdir", r.OutDir)
	res, err := migrate(ctx, p, g.Config, gopts)
	if err != nil && gopts.Logger != nil {
		gopts.Logger.Error("migration failed", "guest", d.Name, "err", err)
	}
	if res != nil {
		r.Report = res.Report
	}
	switch {
	case err == nil && opts.DryRun:
		r.Status = GuestPlanned
	case err == nil:
		r.Status = GuestMigrated
	case errors.Is(err, ErrBlocked):
		r.Status, r.Error = GuestBlocked, err.Error()
	default:
		r.Status, r.Error = GuestFailed, err.Error()
	}
	if st != nil {
		setState(st, key, guestState{Name: d.Name, OutDir: r.OutDir, Status: r.Status, Error: r.Error}, log)
	}
	if err != nil {
		log.Error("guest failed", "guest", d.Name, "err", err)
	} else {
		log.Info("guest done", "guest", d.Name, "status", r.Status)
	}
	return r
}

// outClaims makes sure no two guests of a batch write the same folder.
type outClaims struct {
	mu sync.Mutex
	by map[string]GuestSpec
}

// claim records that g writes dir; it returns the guest that already
// claimed dir, if any.
func (c *outClaims) claim(dir string, g GuestSpec) *GuestSpec {
	c.mu.Lock()
	defer c.mu.Unlock()
	if other, ok := c.by[dir]; ok {
		return &other
	}
	c.by[dir] = g
	return nil
}

func guessName(cfg string) string {
	return strings.TrimSuffix(filepath.Base(cfg), filepath.Ext(cfg))
}

// logFileNames names each guest's log after its config file, made unique.
func logFileNames(gs []GuestSpec) []string {
	names := make([]string, len(gs))
	used := map[string]int{}
	for i, g := range gs {
		n := guessName(g.Config)
		used[n]++
		if used[n] > 1 {
			n = fmt.Sprintf("%s-%d", n, used[n])
		}
		names[i] = n + ".log"
	}
	return names
}

// setState records a guest's state; a state file that cannot be written
// is logged and the batch goes on (the next change tries again).
func setState(st *stateFile, key string, g guestState, log *slog.Logger) {
	if err := st.set(key, g); err != nil {
		log.Warn("writing state file", "file", st.path, "err", err)
	}
}

func stateKey(g GuestSpec) string { return g.Config + " -> " + g.Output }

// guestState is what the state file records for one guest.
type guestState struct {
	Name    string      `json:"name,omitempty"`
	OutDir  string      `json:"outdir,omitempty"`
	Status  GuestStatus `json:"status"` // running | migrated | failed | blocked
	Error   string      `json:"error,omitempty"`
	Updated time.Time   `json:"updated"`
}

// stateFile is a batch's record of its guests, rewritten atomically on
// every change so a killed batch leaves a readable one.
type stateFile struct {
	path   string
	mu     sync.Mutex
	Guests map[string]guestState `json:"guests"`
}

func loadState(path string) (*stateFile, error) {
	st := &stateFile{path: path, Guests: map[string]guestState{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading state file: %w", err)
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("state file %s: %w (delete it to start the batch afresh)", path, err)
	}
	if st.Guests == nil {
		st.Guests = map[string]guestState{}
	}
	return st, nil
}

func (s *stateFile) get(key string) guestState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.Guests[key]
}

func (s *stateFile) set(key string, g guestState) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	g.Updated = time.Now().UTC()
	s.Guests[key] = g
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, append(data, '\n'), 0o644)
}
