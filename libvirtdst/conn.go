package libvirtdst

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	libvirt "github.com/digitalocean/go-libvirt"
	"libvirt.org/go/libvirtxml"
)

// Sentinel errors callers branch on.
var (
	// ErrExists: a domain or volume of the guest's name is there already.
	ErrExists = errors.New("already exists on the destination")
	// ErrNoPool: the storage pool is not defined or not running.
	ErrNoPool = errors.New("storage pool not found or not active")
	// ErrPoolFull: the pool has not enough free space for the guest.
	ErrPoolFull = errors.New("not enough free space in the storage pool")
	// ErrRunning: the domain to replace is running.
	ErrRunning = errors.New("domain is running")
	// ErrBoot: the boot proof on the destination failed.
	ErrBoot = errors.New("boot check on the destination failed")
	// ErrLost: the connection to the daemon broke (it stopped, or the
	// network went away).
	ErrLost = errors.New("the connection to libvirt was lost")
	// ErrShortWrite: a volume holds less than was uploaded into it
	// (its pool ran out of space).
	ErrShortWrite = errors.New("the volume did not take all the data (is the pool full?)")
	// ErrURI: the destination URI is not one this package can reach.
	ErrURI = errors.New("unsupported libvirt URI")
)

// Conn is a connection to one libvirt daemon.
type Conn struct {
	uri string
	l   *libvirt.Libvirt
}

// Connect connects to the libvirt daemon at uri: qemu:///system,
// qemu:///session, qemu+unix:///system?socket=PATH, qemu+ssh://[USER@]HOST[:PORT]/system
// (optionally ?keyfile=PATH&socket=PATH&no_verify=1), qemu+tcp://HOST[:PORT]/system
// or qemu+tls://HOST/system.
func Connect(ctx context.Context, uri string) (*Conn, error) {
	u, err := parseURI(uri)
	if err != nil {
		return nil, err
	}
	type res struct {
		l   *libvirt.Libvirt
		err error
	}
	ch := make(chan res, 1)
	go func() {
		l, err := libvirt.ConnectToURI(u)
		ch <- res{l, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, &ConnectError{URI: uri, Err: r.err}
		}
		return &Conn{uri: uri, l: r.l}, nil
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.l != nil {
				r.l.Disconnect()
			}
		}()
		return nil, fmt.Errorf("connecting to %s: %w", uri, ctx.Err())
	}
}

// ConnectError is a destination that could not be reached.
type ConnectError struct {
	URI string
	Err error
}

func (e *ConnectError) Error() string { return fmt.Sprintf("connecting to %s: %v", e.URI, e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// Hint says what usually fixes it.
func (e *ConnectError) Hint() string {
	msg := e.Err.Error()
	switch {
	case strings.Contains(msg, "knownhosts: key is unknown"):
		return "the host's SSH key is not in ~/.ssh/known_hosts: connect once with ssh to check and add it, or use qemu+libssh://...?known_hosts=FILE"
	case strings.Contains(msg, "knownhosts: key mismatch"):
		return "the host's SSH key is not the one ~/.ssh/known_hosts has for it: find out why before going on"
	case strings.Contains(msg, "unable to authenticate"):
		return "no SSH key was accepted: give one with ?keyfile=PATH, or load it into ssh-agent"
	case strings.Contains(msg, "no such file or directory") || strings.Contains(msg, "connection refused"):
		return "is libvirtd (or virtqemud) running there? A socket elsewhere is given with ?socket=PATH"
	case strings.Contains(msg, "permission denied"):
		return "this user may not use that libvirt socket: run as root or as a member of the libvirt group"
	}
	return ""
}

// parseURI checks uri and fills in the local socket go-libvirt does not
// guess: a session daemon's (in $XDG_RUNTIME_DIR) and the modular
// virtqemud's when the monolithic libvirtd's socket is not there.
func parseURI(uri string) (*url.URL, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("%w %q: %v", ErrURI, uri, err)
	}
	driver, transport, _ := strings.Cut(u.Scheme, "+")
	if driver != "qemu" {
		return nil, fmt.Errorf("%w %q: the driver must be qemu (qemu:///system, qemu+ssh://HOST/system)", ErrURI, uri)
	}
	if u.Path != "/system" && u.Path != "/session" {
		return nil, fmt.Errorf("%w %q: the path must be /system or /session", ErrURI, uri)
	}
	switch transport {
	case "", "unix":
		if u.Host != "" && transport == "" {
			break // qemu://HOST/system is TLS
		}
		q := u.Query()
		if q.Get("socket") == "" {
			q.Set("socket", localSocket(u.Path))
			u.RawQuery = q.Encode()
		}
	case "ssh", "libssh", "libssh2", "tcp", "tls":
		if u.Host == "" {
			return nil, fmt.Errorf("%w %q: %s needs a host", ErrURI, uri, transport)
		}
	default:
		return nil, fmt.Errorf("%w %q: transport %q (use unix, ssh, tcp or tls)", ErrURI, uri, transport)
	}
	return u, nil
}

// localSocket is where the local daemon for path (/system or /session)
// listens.
func localSocket(path string) string {
	dir := "/var/run/libvirt"
	if path == "/session" {
		if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
			dir = filepath.Join(d, "libvirt")
		} else if h, err := os.UserHomeDir(); err == nil {
			dir = filepath.Join(h, ".cache", "libvirt")
		}
	}
	for _, s := range []string{"libvirt-sock", "virtqemud-sock"} {
		if _, err := os.Stat(filepath.Join(dir, s)); err == nil {
			return filepath.Join(dir, s)
		}
	}
	return filepath.Join(dir, "libvirt-sock")
}

// URI is the URI Connect was given.
func (c *Conn) URI() string { return c.uri }

// Close disconnects.
func (c *Conn) Close() error { return c.l.Disconnect() }

// DomainType is the domain type a guest gets on this host: "kvm" when the
// host's capabilities offer KVM for x86_64 guests, "qemu" (TCG, slow)
// otherwise.
func (c *Conn) DomainType() (string, error) {
	caps, err := c.l.ConnectGetCapabilities()
	if err != nil {
		return "", fmt.Errorf("reading the capabilities of %s: %w", c.uri, err)
	}
	var x libvirtxml.Caps
	if err := x.Unmarshal(caps); err != nil {
		return "", fmt.Errorf("reading the capabilities of %s: %w", c.uri, err)
	}
	typ := ""
	for _, g := range x.Guests {
		if g.OSType != "hvm" || g.Arch.Name != "x86_64" {
			continue
		}
		for _, d := range g.Arch.Domains {
			if d.Type == "kvm" {
				return "kvm", nil
			}
			if d.Type == "qemu" {
				typ = "qemu"
			}
		}
	}
	if typ == "" {
		return "", fmt.Errorf("%s runs no x86_64 guests (no hvm x86_64 guest in its capabilities)", c.uri)
	}
	return typ, nil
}

// FreeMemory is the host's free memory in bytes.
func (c *Conn) FreeMemory() (uint64, error) {
	m, err := c.l.NodeGetFreeMemory()
	if err != nil {
		return 0, fmt.Errorf("reading the free memory of %s: %w", c.uri, err)
	}
	return m, nil
}

// PoolInfo describes a storage pool.
type PoolInfo struct {
	Name      string
	Type      string // dir, fs, netfs, logical, ...
	Capacity  uint64
	Available uint64
}

// fileBacked tells whether a new volume in the pool is a fresh (sparse)
// file that reads as zeros.
func (p PoolInfo) fileBacked() bool {
	return p.Type == "dir" || p.Type == "fs" || p.Type == "netfs"
}

// Pool looks up a running storage pool.
func (c *Conn) Pool(name string) (PoolInfo, error) {
	p, err := c.l.StoragePoolLookupByName(name)
	if err != nil {
		if !c.l.IsConnected() {
			return PoolInfo{}, fmt.Errorf("storage pool %q on %s: %w", name, c.uri, c.lost(err))
		}
		return PoolInfo{}, fmt.Errorf("storage pool %q on %s: %w (%v)", name, c.uri, ErrNoPool, err)
	}
	state, capacity, _, avail, err := c.l.StoragePoolGetInfo(p)
	if err != nil {
		return PoolInfo{}, fmt.Errorf("storage pool %q on %s: %w", name, c.uri, err)
	}
	if libvirt.StoragePoolState(state) != libvirt.StoragePoolRunning {
		return PoolInfo{}, fmt.Errorf("storage pool %q on %s: %w (it is not started: virsh pool-start %s)", name, c.uri, ErrNoPool, name)
	}
	// The pool's free space is what libvirt saw at its last refresh.
	if err := c.l.StoragePoolRefresh(p, 0); err == nil {
		if _, capacity2, _, avail2, err := c.l.StoragePoolGetInfo(p); err == nil {
			capacity, avail = capacity2, avail2
		}
	}
	desc, err := c.l.StoragePoolGetXMLDesc(p, 0)
	if err != nil {
		return PoolInfo{}, fmt.Errorf("storage pool %q on %s: %w", name, c.uri, err)
	}
	var x libvirtxml.StoragePool
	if err := x.Unmarshal(desc); err != nil {
		return PoolInfo{}, fmt.Errorf("storage pool %q on %s: %w", name, c.uri, err)
	}
	return PoolInfo{Name: name, Type: x.Type, Capacity: capacity, Available: avail}, nil
}

// domainExists tells whether a domain of that name is defined (or
// running) and whether it runs.
func (c *Conn) domainState(name string) (dom libvirt.Domain, exists, running bool, err error) {
	dom, err = c.l.DomainLookupByName(name)
	if err != nil {
		if isCode(err, libvirt.ErrNoDomain) {
			return dom, false, false, nil
		}
		return dom, false, false, fmt.Errorf("looking up domain %s on %s: %w", name, c.uri, err)
	}
	st, _, err := c.l.DomainGetState(dom, 0)
	if err != nil {
		return dom, true, false, fmt.Errorf("reading the state of domain %s on %s: %w", name, c.uri, err)
	}
	s := libvirt.DomainState(st)
	return dom, true, s != libvirt.DomainShutoff && s != libvirt.DomainNostate, nil
}

// lost marks err as ErrLost when the connection is gone (go-libvirt then
// reports a bare "invalid argument" or "interrupted").
func (c *Conn) lost(err error) error {
	if err != nil && !c.l.IsConnected() {
		return fmt.Errorf("%w (%v)", ErrLost, err)
	}
	return err
}

// isCode tells whether err is a libvirt error with that code.
func isCode(err error, code libvirt.ErrorNumber) bool {
	var le libvirt.Error
	return errors.As(err, &le) && le.Code == uint32(code)
}

// deadline runs fn, giving up after d (the RPC calls take no context; a
// daemon that hangs must not hang the cleanup).
func deadline(d time.Duration, fn func() error) error {
	ch := make(chan error, 1)
	go func() { ch <- fn() }()
	select {
	case err := <-ch:
		return err
	case <-time.After(d):
		return fmt.Errorf("no answer from libvirt within %s", d)
	}
}
