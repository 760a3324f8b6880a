package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// hostSource reads ssh:// sources off Xen hosts, and everything else as
// localSource does. It keeps one connection per host, shared by the
// guests of a batch.
type hostSource struct {
	localSource
	ctx   context.Context
	ssh   xenhost.Options
	force bool // ForceRunning
	// zeroMap: map each raw disk's zero blocks on the host before the
	// copy (HostZeroMap), with zeroMethod.
	zeroMap    bool
	zeroMethod xenhost.HashMethod

	mu     sync.Mutex
	hosts  map[string]*hostConn // by host URL
	guests map[string]*xenhost.Guest
}

// hostConn is one host's connection, or why there is none.
type hostConn struct {
	once sync.Once
	h    *xenhost.Host
	err  error
}

func newHostSource(ctx context.Context, o RunOptions) *hostSource {
	s := &hostSource{ctx: ctx, force: o.ForceRunning, hosts: map[string]*hostConn{}, guests: map[string]*xenhost.Guest{},
		zeroMap: o.HostZeroMap && !o.DryRun, zeroMethod: o.HostZeroMapMethod}
	if o.SSH != nil {
		s.ssh = *o.SSH
	}
	if s.ssh.Logger == nil {
		s.ssh.Logger = o.Logger
	}
	return s
}

// withHosts makes p read ssh:// sources.
func withHosts(ctx context.Context, p parts, o RunOptions) (parts, func()) {
	if _, ok := p.source.(localSource); !ok {
		return p, func() {}
	}
	hs := newHostSource(ctx, o)
	p.source = hs
	return p, hs.Close
}

func (s *hostSource) host(u *xenhost.URL) (*xenhost.Host, error) {
	s.mu.Lock()
	hc := s.hosts[u.HostURL()]
	if hc == nil {
		hc = &hostConn{}
		s.hosts[u.HostURL()] = hc
	}
	s.mu.Unlock()
	hc.once.Do(func() { hc.h, hc.err = xenhost.Dial(s.ctx, u, s.ssh) })
	return hc.h, hc.err
}

// Close closes every host connection.
func (s *hostSource) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, hc := range s.hosts {
		if hc.h != nil {
			hc.h.Close()
		}
	}
}

// ErrNoGuestName: an ssh:// URL names a host where a guest was needed.
var ErrNoGuestName = errors.New("the URL names no guest")

func (s *hostSource) ParseConfig(path string) (*config.Domain, error) {
	if !xenhost.IsURL(path) {
		return s.localSource.ParseConfig(path)
	}
	u, err := xenhost.ParseURL(path)
	if err != nil {
		return nil, err
	}
	if u.Name == "" {
		return nil, fmt.Errorf("%s: %w: give ssh://HOST/NAME (xen2kvm inspect %s lists the guests)", path, ErrNoGuestName, path)
	}
	h, err := s.host(u)
	if err != nil {
		return nil, err
	}
	g, err := h.Guest(s.ctx, u.Name)
	if err != nil {
		return nil, err
	}
	d := g.Domain
	d.Warnings = append(d.Warnings, h.Warnings()...)
	d.Warnings = append(d.Warnings, g.Warnings...)
	err = g.CheckNotRunning(h.URL.Addr())
	if err == nil {
		// Not running by xm; but a process on the host may still
		// write into a disk (a device model or tapdisk xm does not
		// know of, another guest sharing it, a dd into it).
		var warns []string
		warns, err = h.CheckDisksIdle(s.ctx, g)
		d.Warnings = append(d.Warnings, warns...)
		var ue *xenhost.DiskInUseError
		if err != nil && !errors.As(err, &ue) {
			return nil, err
		}
	}
	if err != nil {
		if !s.force {
			return nil, err
		}
		msg := fmt.Sprintf("%v; copied anyway (--force-running): the copy is only crash-consistent", err)
		if s.zeroMap {
			msg += ", and so is the host's zero map of its disks (--host-zero-map): a block written after the map was taken may be left out"
		}
		d.Warnings = append(d.Warnings, msg)
	}
	s.mu.Lock()
	s.guests[u.String()] = g
	s.mu.Unlock()
	return d, nil
}

// guest binds the source to the ssh:// guest at cfg, so its disks are
// opened on that host.
func (s *hostSource) guest(cfg string) (*guestSource, error) {
	u, err := xenhost.ParseURL(cfg)
	if err != nil {
		return nil, err
	}
	return &guestSource{hostSource: s, u: u, zeroMap: s.zeroMap}, nil
}

// guestSource opens the disks of one guest on its Xen host.
type guestSource struct {
	*hostSource
	u       *xenhost.URL
	zeroMap bool // map raw disks' zero blocks on the host before the copy

	mu    sync.Mutex
	disks []*xenhost.Disk
}

func (s *guestSource) Open(path, format string) (source, error) {
	h, err := s.host(s.u)
	if err != nil {
		return nil, err
	}
	d, err := h.OpenDisk(s.ctx, path)
	if err != nil {
		return nil, err
	}
	img, err := diskimg.OpenReader(d, d.Size(), s.u.HostURL()+path, format)
	if err != nil {
		d.Close()
		return nil, err
	}
	ri := &remoteImage{ReaderImage: img, disk: d}
	if s.zeroMap && img.Format() == diskimg.FormatRaw {
		// After ParseConfig's check that the guest is not running
		// (or --force-running): the map is as consistent as the copy.
		z, err := h.ZeroMap(s.ctx, path, d.Size(), 0, s.zeroMethod)
		switch {
		case err == nil:
			d.SetZeroMap(z)
			ri.zeroBytes = z.ZeroBytes()
		case s.ctx.Err() != nil:
			d.Close()
			return nil, err
		default:
			ri.warning = fmt.Sprintf("host zero map of %s not taken (%v): every block of it is read over SSH", path, err)
		}
	}
	s.mu.Lock()
	s.disks = append(s.disks, d)
	s.mu.Unlock()
	return ri, nil
}

// report says where the guest came from and how much was read.
func (s *guestSource) report() *report.SourceHost {
	r := &report.SourceHost{URL: s.u.String(), Address: s.u.Addr()}
	s.hostSource.mu.Lock()
	if g := s.guests[s.u.String()]; g != nil {
		r.ConfigFrom = g.ConfigFrom
		if g.State != nil {
			r.State = g.State.State
		}
	}
	hc := s.hosts[s.u.HostURL()]
	s.hostSource.mu.Unlock()
	if hc != nil && hc.h != nil {
		r.Reconnects = hc.h.Reconnects()
	}
	s.mu.Lock()
	for _, d := range s.disks {
		r.BytesRead += d.BytesRead()
	}
	s.mu.Unlock()
	return r
}

// remoteImage is a disk image on a Xen host.
type remoteImage struct {
	*diskimg.ReaderImage
	disk *xenhost.Disk
	// zeroBytes: how much of the disk the host's zero map found zero
	// (never read); warning: why there is no map.
	zeroBytes int64
	warning   string
}

func (r *remoteImage) Close() error { return r.disk.Close() }

// BytesRead is what was read from the host for this disk.
func (r *remoteImage) BytesRead() int64 { return r.disk.BytesRead() }
