package xenhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
)

// Sentinel errors about guests.
var (
	// ErrNoGuest: the host has no guest of that name (see NoGuestError).
	ErrNoGuest = errors.New("no such guest")
	// ErrRunning: the guest is running on the host (see RunningError).
	ErrRunning = errors.New("guest is running")
)

// NoGuestError is a guest the host does not know.
type NoGuestError struct {
	Host, Name string
	Known      []string // the guests the host has
}

func (e *NoGuestError) Error() string {
	msg := fmt.Sprintf("%s has no guest %s (not in xm list, no config file under its Xen config folder)", e.Host, e.Name)
	if len(e.Known) > 0 {
		msg += "; it has " + strings.Join(e.Known, ", ")
	}
	return msg
}

func (e *NoGuestError) Unwrap() error { return ErrNoGuest }

// RunningError is a guest that is running: copying its disks now would
// give a crash-consistent copy at best.
type RunningError struct {
	Host, Name string
	State      string // xm's state flags
	ID         int
}

func (e *RunningError) Error() string {
	return fmt.Sprintf("guest %s is running on %s (domain %d, state %s): shut it down first (xm shutdown %s)", e.Name, e.Host, e.ID, e.State, e.Name)
}

func (e *RunningError) Unwrap() error { return ErrRunning }

// Hint says how to go on anyway.
func (e *RunningError) Hint() string {
	return "--force-running copies it anyway; the copy is only crash-consistent and the report says so"
}

// DomainState is one line of xm list.
type DomainState struct {
	Name      string `json:"name"`
	ID        int    `json:"id"` // -1: not running (a managed domain that is off)
	MemoryMiB int64  `json:"memory_mib"`
	VCPUs     int    `json:"vcpus"`
	State     string `json:"state"` // xm's flags, e.g. -b----; "" when off
}

// Running tells whether the domain exists in the hypervisor (running,
// blocked, paused or crashed): its disks are in use.
func (s DomainState) Running() bool { return s.ID >= 0 }

// ParseList reads the output of xm list. Domain-0 is left out.
func ParseList(out []byte) ([]DomainState, error) {
	var states []DomainState
	lines := strings.Split(string(out), "\n")
	header := false
	for i, line := range lines {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !header {
			if f[0] != "Name" {
				return nil, fmt.Errorf("xm list: line %d: expected the header (Name ID Mem VCPUs State Time(s)), found %q", i+1, line)
			}
			header = true
			continue
		}
		s := DomainState{Name: f[0], ID: -1}
		var err error
		switch len(f) {
		case 6: // Name ID Mem VCPUs State Time
			if s.ID, err = strconv.Atoi(f[1]); err != nil || s.ID < 0 {
				return nil, fmt.Errorf("xm list: line %d: domain id %q is not a number", i+1, f[1])
			}
			f = f[2:]
		case 5: // a managed domain that is off: no ID
			f = f[1:]
		case 4: // ... and no state
			f = append(f[1:3], "", f[3])
		default:
			return nil, fmt.Errorf("xm list: line %d: expected 4 to 6 columns, found %d: %q", i+1, len(f), line)
		}
		if s.MemoryMiB, err = strconv.ParseInt(f[0], 10, 64); err != nil || s.MemoryMiB < 0 {
			return nil, fmt.Errorf("xm list: line %d: memory %q is not a number", i+1, f[0])
		}
		if s.VCPUs, err = strconv.Atoi(f[1]); err != nil || s.VCPUs < 0 {
			return nil, fmt.Errorf("xm list: line %d: vcpus %q is not a number", i+1, f[1])
		}
		s.State = f[2]
		if s.ID < 0 && strings.Trim(s.State, "-") == "" {
			s.State = ""
		}
		if s.Name == "Domain-0" || s.ID == 0 {
			continue
		}
		if err := checkName(s.Name); err != nil {
			return nil, fmt.Errorf("xm list: line %d: %w", i+1, err)
		}
		states = append(states, s)
	}
	if !header {
		return nil, errors.New("xm list printed nothing")
	}
	return states, nil
}

// List runs xm list on the host.
func (h *Host) List(ctx context.Context) ([]DomainState, error) {
	out, err := h.xm(ctx, "list")
	if err != nil {
		return nil, err
	}
	states, err := ParseList(out)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", h.URL.Addr(), err)
	}
	return states, nil
}

// Guest is a guest on a Xen host.
type Guest struct {
	Name  string       `json:"name"`
	State *DomainState `json:"state,omitempty"` // nil: only a config file, not known to xend
	// ConfigFrom says how the config was read: "xm list -l NAME",
	// "xm create --dryrun PATH" or "sftp PATH".
	ConfigFrom string         `json:"config_from"`
	Domain     *config.Domain `json:"-"`
	// ConfigErr is why the config could not be read (Discover only).
	ConfigErr error `json:"-"`
	// Warnings are about how the config was read.
	Warnings []string `json:"warnings,omitempty"`
}

// Running tells whether the host runs the guest.
func (g *Guest) Running() bool { return g.State != nil && g.State.Running() }

// CheckNotRunning returns a *RunningError for a running guest.
func (g *Guest) CheckNotRunning(host string) error {
	if g.Running() {
		return &RunningError{Host: host, Name: g.Name, State: g.State.State, ID: g.State.ID}
	}
	return nil
}

// sxpStart cuts what xm prints before the S-expression ("Using config
// file ...").
func sxpStart(out []byte) ([]byte, bool) {
	i := bytes.IndexByte(out, '(')
	if i < 0 {
		return nil, false
	}
	return out[i:], true
}

// Guest reads the config of guest name: from xend (xm list -l) when it
// manages the guest, else from xm create --dryrun on its config file
// (which runs the Python of configs that compute their settings), else
// from the config file itself over SFTP.
func (h *Host) Guest(ctx context.Context, name string) (*Guest, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	states, err := h.List(ctx)
	var xmErr error
	if err != nil {
		var ee *ExecError
		if !errors.As(err, &ee) {
			return nil, err
		}
		xmErr = err // xend down or no xm: config files only
	}
	g := &Guest{Name: name}
	for i := range states {
		if states[i].Name == name {
			g.State = &states[i]
		}
	}
	if err := h.readConfig(ctx, g, xmErr == nil); err != nil {
		if errors.Is(err, ErrNoGuest) {
			var known []string
			for _, s := range states {
				known = append(known, s.Name)
			}
			files, _ := h.configFiles(ctx)
			for _, f := range files {
				if !slices.Contains(known, f) {
					known = append(known, f)
				}
			}
			return nil, &NoGuestError{Host: h.URL.Addr(), Name: name, Known: known}
		}
		return nil, err
	}
	if xmErr != nil {
		g.Warnings = append(g.Warnings, fmt.Sprintf("xm list failed, so whether the guest runs is unknown: %v", xmErr))
	}
	return g, nil
}

func (h *Host) readConfig(ctx context.Context, g *Guest, xmWorks bool) error {
	where := h.URL.Guest(g.Name).String()
	if g.State != nil {
		out, err := h.xm(ctx, "list", "-l", g.Name)
		if err != nil {
			return err
		}
		return g.parse(out, "xm list -l "+g.Name, where)
	}
	file := path.Join(h.opts.configDir(), g.Name)
	data, err := h.ReadFile(ctx, file)
	if err != nil {
		if errorsIsNotExist(err) {
			return ErrNoGuest
		}
		return err
	}
	if xmWorks {
		out, err := h.xm(ctx, "create", "--dryrun", file)
		if err == nil {
			if perr := g.parse(out, "xm create --dryrun "+file, where); perr == nil {
				return nil
			} else {
				g.Warnings = append(g.Warnings, fmt.Sprintf("xm create --dryrun %s printed no domain config (%v); read the file itself", file, perr))
			}
		} else {
			g.Warnings = append(g.Warnings, fmt.Sprintf("%v; read the file itself", err))
		}
	}
	d, err := config.Parse(data, where+" ("+file+")")
	if err != nil {
		return err
	}
	g.Domain, g.ConfigFrom = d, "sftp "+file
	return g.checkDomainName()
}

func (g *Guest) parse(out []byte, from, where string) error {
	sxp, ok := sxpStart(out)
	if !ok {
		return fmt.Errorf("%s on %s printed no S-expression", from, where)
	}
	d, err := config.Parse(sxp, where+" ("+from+")", config.WithFormat(config.FormatSXP))
	if err != nil {
		return err
	}
	g.Domain, g.ConfigFrom = d, from
	return g.checkDomainName()
}

func (g *Guest) checkDomainName() error {
	if g.Domain.Name == "" {
		g.Domain.Name = g.Name
	}
	if g.Domain.Name != g.Name {
		g.Warnings = append(g.Warnings, fmt.Sprintf("the config of %s names the domain %s; it is migrated as %s", g.Name, g.Domain.Name, g.Name))
		g.Domain.Name = g.Name
	}
	return nil
}

// configFiles lists the domain config files in the host's Xen config
// folder: regular files, leaving out xend's own, the examples, scripts
// (executable files such as qemu-ifup) and backups.
func (h *Host) configFiles(ctx context.Context) ([]string, error) {
	fis, err := h.ReadDir(ctx, h.opts.configDir())
	if err != nil {
		return nil, err
	}
	var names []string
	for _, fi := range fis {
		n := fi.Name()
		if !fi.Mode().IsRegular() || strings.HasPrefix(n, "xend-") || strings.HasPrefix(n, "xmexample") ||
			strings.HasPrefix(n, ".") || strings.HasSuffix(n, "~") || strings.HasSuffix(n, ".sxp") ||
			strings.HasSuffix(n, ".rpmnew") || strings.HasSuffix(n, ".rpmsave") || strings.HasSuffix(n, ".orig") ||
			strings.HasPrefix(n, "README") || n == "qemu-ifup" || fi.Mode()&0o111 != 0 || fi.Size() > 1<<20 || checkName(n) != nil {
			continue
		}
		names = append(names, n)
	}
	return names, nil
}

// Discover lists every guest on the host: those xm list shows and those
// with a config file. A guest whose config cannot be read is listed with
// ConfigErr set.
func (h *Host) Discover(ctx context.Context) ([]*Guest, error) {
	states, xmErr := h.List(ctx)
	if xmErr != nil {
		var ee *ExecError
		if !errors.As(xmErr, &ee) {
			return nil, xmErr
		}
	}
	files, ferr := h.configFiles(ctx)
	if xmErr != nil && ferr != nil {
		return nil, fmt.Errorf("listing guests on %s: %w", h.URL.Addr(), errors.Join(xmErr, ferr))
	}
	var guests []*Guest
	seen := map[string]bool{}
	for i := range states {
		guests = append(guests, &Guest{Name: states[i].Name, State: &states[i]})
		seen[states[i].Name] = true
	}
	for _, f := range files {
		if !seen[f] {
			guests = append(guests, &Guest{Name: f})
		}
	}
	for _, g := range guests {
		if err := h.readConfig(ctx, g, xmErr == nil); err != nil {
			g.ConfigErr = err
		}
		if xmErr != nil {
			g.Warnings = append(g.Warnings, fmt.Sprintf("xm list failed, so whether the guest runs is unknown: %v", xmErr))
		}
	}
	slices.SortFunc(guests, func(a, b *Guest) int { return strings.Compare(a.Name, b.Name) })
	return guests, nil
}
