package xenhost

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// Options configure the connection to a Xen host.
type Options struct {
	// Identities are private key files to authenticate with (--identity);
	// when none are given, ~/.ssh/id_ed25519, id_ecdsa, id_rsa and id_dsa
	// are tried. The ssh-agent at SSH_AUTH_SOCK is always tried unless
	// NoAgent is set.
	Identities []string
	NoAgent    bool
	// Password, when set, is asked for a password or key passphrase; the
	// CLI sets it only when stdin is a terminal.
	Password func(prompt string) (string, error)
	// KnownHosts is the known_hosts file (default ~/.ssh/known_hosts).
	KnownHosts string
	// AcceptNewHostKey adds the key of a host not in KnownHosts to it
	// instead of refusing the host. A changed key is always refused.
	AcceptNewHostKey bool
	// DialTimeout bounds each connection attempt (default 20s).
	DialTimeout time.Duration
	// Retries is how many times a dropped connection is re-established
	// for one read before giving up (default 5); RetryDelay is the wait
	// before the first retry, doubled each time up to 10s (default 1s).
	Retries    int
	RetryDelay time.Duration
	// ConfigDir is where the host keeps xm domain configs (default
	// /etc/xen).
	ConfigDir string
	// Warn receives warnings: legacy algorithms, host keys added. nil
	// logs them to Logger.
	Warn func(string)
	// Logger receives connection events; nil discards.
	Logger *slog.Logger
	// OpenSSH reads files and disks through the system's ssh client
	// (ssh -s HOST sftp) instead of in-process SFTP; the xm queries
	// still go over the in-process connection, which checks the host
	// key first. ssh gets the same known_hosts, identities (or the
	// agent) and legacy algorithms, and BatchMode: it never prompts,
	// so a host that takes only a password cannot be read this way.
	OpenSSH bool
	// Compression turns on SSH compression (ssh -C); it implies OpenSSH,
	// since x/crypto/ssh has no compression.
	Compression bool
	// SSHConfig is the ssh_config file ssh reads (-F); "" is ssh's
	// default (~/.ssh/config, then the system's).
	SSHConfig string
}

func (o *Options) openSSH() bool { return o.OpenSSH || o.Compression }

func (o *Options) dialTimeout() time.Duration {
	if o.DialTimeout > 0 {
		return o.DialTimeout
	}
	return 20 * time.Second
}

func (o *Options) warn(msg string) {
	if o.Warn != nil {
		o.Warn(msg)
		return
	}
	o.log().Warn(msg)
}

func (o *Options) log() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o *Options) configDir() string {
	if o.ConfigDir == "" {
		return "/etc/xen"
	}
	return strings.TrimSuffix(o.ConfigDir, "/")
}

// Host is an open connection to a Xen host: an SSH connection with an SFTP
// session on it, re-established when it drops. It is safe for concurrent
// use.
type Host struct {
	URL  *URL
	opts Options
	d    *dialer

	mu     sync.Mutex
	cur    *conn // nil after Close
	closed bool
	failed error // why the connection is gone for good

	wmu      sync.Mutex // guards warnings; taken under mu
	warnings []string

	bytesRead  atomic.Int64
	reconnects atomic.Int64
}

// conn is one generation of the connection.
type conn struct {
	ssh     *ssh.Client
	sftp    *sftp.Client
	openssh *openSSHConn // the ssh process sftp runs over (Options.OpenSSH)
	gen     int
	dead    chan struct{} // closed when the connection is gone
}

func (c *conn) close() {
	c.sftp.Close()
	if c.openssh != nil {
		c.openssh.kill()
	}
	c.ssh.Close()
}

// Dial connects to the Xen host u names (its Name is ignored).
func Dial(ctx context.Context, u *URL, opts Options) (*Host, error) {
	h := &Host{URL: u, opts: opts}
	h.opts.Warn = func(msg string) {
		h.wmu.Lock()
		seen := false
		for _, w := range h.warnings {
			seen = seen || w == msg
		}
		if !seen {
			h.warnings = append(h.warnings, msg)
		}
		h.wmu.Unlock()
		if !seen {
			opts.warn(msg)
		}
	}
	d, err := newDialer(u, &h.opts)
	if err != nil {
		return nil, err
	}
	h.d = d
	c, err := h.connect(ctx, 1)
	if err != nil {
		var hke *HostKeyError
		if errors.As(err, &hke) || errors.Is(err, ErrAuth) {
			return nil, err
		}
		return nil, &ConnError{Host: u.Addr(), Attempts: 1, Err: err}
	}
	h.cur = c
	return h, nil
}

func (h *Host) connect(ctx context.Context, gen int) (*conn, error) {
	cl, err := h.d.dial(ctx)
	if err != nil {
		return nil, err
	}
	used := legacyUsed(cl.Conn.(ssh.AlgorithmsConnMetadata).Algorithms())
	if len(used) > 0 {
		h.opts.Warn(fmt.Sprintf("%s speaks only legacy SSH algorithms, enabled for it: %s", h.URL.Addr(), strings.Join(used, ", ")))
	}
	c := &conn{ssh: cl, gen: gen, dead: make(chan struct{})}
	if h.opts.openSSH() {
		c.openssh, c.sftp, err = h.d.startOpenSSH(ctx, len(used) > 0)
		if err == nil {
			// ssh going away ends this generation as the Go
			// connection's end does: readers reconnect.
			go func() {
				<-c.openssh.exited
				cl.Close()
			}()
		}
	} else {
		c.sftp, err = startSFTP(cl)
	}
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("starting SFTP on %s: %w", h.URL.Addr(), err)
	}
	go func() {
		cl.Wait()
		close(c.dead)
	}()
	go h.keepalive(c)
	h.opts.log().Info("connected", "host", h.URL.Addr(), "generation", gen)
	return c, nil
}

// keepalive closes a connection whose host stopped answering, so reads
// fail and reconnect instead of hanging.
func (h *Host) keepalive(c *conn) {
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-t.C:
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				c.ssh.Close()
				return
			}
		case <-time.After(30 * time.Second):
			h.opts.log().Warn("host stopped answering; dropping the connection", "host", h.URL.Addr())
			c.ssh.Close()
			return
		case <-c.dead:
			return
		}
	}
}

// errClosed is returned by operations on a closed Host.
var errClosed = errors.New("connection to the Xen host closed")

// gone tells why h can no longer be used (closed, or reconnecting gave
// up), nil while it can. The caller holds h.mu.
func (h *Host) gone() error {
	if h.failed != nil {
		return h.failed
	}
	if h.closed {
		return errClosed
	}
	return nil
}

// conn returns the current connection.
func (h *Host) conn() (*conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.gone(); err != nil {
		return nil, err
	}
	return h.cur, nil
}

// reconnect replaces connection generation gen (when it is still the
// current one) with a new connection, retrying with backoff.
func (h *Host) reconnect(ctx context.Context, gen int) (*conn, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.gone(); err != nil {
		return nil, err
	}
	if h.cur != nil && h.cur.gen != gen {
		return h.cur, nil // another reader reconnected already
	}
	if h.cur != nil {
		h.cur.close()
	}
	retries := h.opts.Retries
	if retries <= 0 {
		retries = 5
	}
	delay := h.opts.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	var last error
	for attempt := 1; attempt <= retries; attempt++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
		c, err := h.connect(ctx, gen+1)
		if err == nil {
			h.cur = c
			h.reconnects.Add(1)
			h.opts.log().Warn("reconnected", "host", h.URL.Addr(), "attempt", attempt)
			return c, nil
		}
		last = err
		h.opts.log().Warn("reconnecting", "host", h.URL.Addr(), "attempt", attempt, "err", err)
		var hke *HostKeyError
		if errors.As(err, &hke) || errors.Is(err, ErrAuth) {
			break
		}
	}
	h.cur = nil
	h.failed = &ConnError{Host: h.URL.Addr(), Attempts: retries, Err: last}
	return nil, h.failed
}

// retry runs op on the current connection; when the connection is lost it
// reconnects and runs op again.
func (h *Host) retry(ctx context.Context, op func(c *conn) error) error {
	for {
		c, err := h.conn()
		if err != nil {
			return err
		}
		if c == nil {
			return &ConnError{Host: h.URL.Addr(), Err: errClosed}
		}
		err = op(c)
		if err == nil || !connLost(c, err) {
			return err
		}
		h.opts.log().Warn("connection lost", "host", h.URL.Addr(), "err", err)
		if _, rerr := h.reconnect(ctx, c.gen); rerr != nil {
			return rerr
		}
	}
}

// connLost tells whether err came from the connection going away rather
// than from the operation itself.
func connLost(c *conn, err error) bool {
	select {
	case <-c.dead:
		return true
	default:
	}
	var se *sftp.StatusError
	var ee *ssh.ExitError
	if err == io.EOF || errors.As(err, &se) || errors.As(err, &ee) || errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrPermission) {
		return false // the operation's own answer
	}
	var oe *net.OpError
	var ome *ssh.OpenChannelError
	if errors.Is(err, sftp.ErrSSHFxConnectionLost) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.As(err, &oe) || errors.As(err, &ome) || errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) {
		return true
	}
	msg := err.Error()
	return strings.Contains(msg, "connection") || strings.Contains(msg, "EOF") ||
		strings.Contains(msg, "broken pipe") || strings.Contains(msg, "failed to send packet")
}

// Close closes the connection.
func (h *Host) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	if h.cur != nil {
		h.cur.close()
		h.cur = nil
	}
	return nil
}

// Warnings are the warnings the connection gave so far (legacy
// algorithms, host keys added).
func (h *Host) Warnings() []string {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	return append([]string(nil), h.warnings...)
}

// BytesRead is how many bytes of disk data were read from the host.
func (h *Host) BytesRead() int64 { return h.bytesRead.Load() }

// Reconnects is how many times the connection was re-established.
func (h *Host) Reconnects() int { return int(h.reconnects.Load()) }

// Algorithms are the algorithms the current connection negotiated.
func (h *Host) Algorithms() (ssh.NegotiatedAlgorithms, error) {
	c, err := h.conn()
	if err != nil || c == nil {
		return ssh.NegotiatedAlgorithms{}, errClosed
	}
	return c.ssh.Conn.(ssh.AlgorithmsConnMetadata).Algorithms(), nil
}

// maxOutput bounds what a remote command may print.
const maxOutput = 4 << 20

// ExecError is a remote command that failed, with its output.
type ExecError struct {
	Host   string
	Argv   []string
	Status int
	Stderr string
	Err    error
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("%s on %s", strings.Join(e.Argv, " "), e.Host)
	if e.Status != 0 {
		msg += fmt.Sprintf(": exit status %d", e.Status)
	} else if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	if s := strings.TrimSpace(e.Stderr); s != "" {
		msg += ": " + s
	}
	return msg
}

func (e *ExecError) Unwrap() error { return e.Err }

// xm runs a read-only xm query on the host: only list and create
// --dryrun are ever run. Arguments are quoted for the remote shell.
func (h *Host) xm(ctx context.Context, args ...string) ([]byte, error) {
	switch {
	case len(args) >= 1 && args[0] == "list":
	case len(args) == 3 && args[0] == "create" && args[1] == "--dryrun":
	default:
		return nil, fmt.Errorf("xm %s is not a read-only query", strings.Join(args, " "))
	}
	argv := append([]string{"xm"}, args...)
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	return h.run(ctx, argv, strings.Join(quoted, " "))
}

// run runs cmd, a command line for the remote shell, on the host and
// returns its standard output (at most maxOutput bytes); a command that
// fails is an *ExecError naming it by argv, with its stderr. A lost
// connection is re-established and cmd run again.
func (h *Host) run(ctx context.Context, argv []string, cmd string) ([]byte, error) {
	var out []byte
	err := h.retry(ctx, func(c *conn) error {
		s, err := c.ssh.NewSession()
		if err != nil {
			return err
		}
		defer s.Close()
		var stdout, stderr limitedBuffer
		stdout.max, stderr.max = maxOutput, 64<<10
		s.Stdout, s.Stderr = &stdout, &stderr
		stop := context.AfterFunc(ctx, func() { s.Close() })
		defer stop()
		err = s.Run(cmd)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			var ee *ssh.ExitError
			if errors.As(err, &ee) {
				return &ExecError{Host: h.URL.Addr(), Argv: argv, Status: ee.ExitStatus(), Stderr: stderr.String(), Err: err}
			}
			return err
		}
		if stdout.over {
			return &ExecError{Host: h.URL.Addr(), Argv: argv, Err: fmt.Errorf("more than %d bytes of output", maxOutput)}
		}
		out = stdout.Bytes()
		return nil
	})
	return out, err
}

type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.Len()+len(p) > b.max {
		b.over = true
		return len(p), nil
	}
	return b.Buffer.Write(p)
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./=:@,+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// ReadFile reads a small file on the host over SFTP.
func (h *Host) ReadFile(ctx context.Context, path string) ([]byte, error) {
	var data []byte
	err := h.retry(ctx, func(c *conn) error {
		f, err := c.sftp.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		data, err = io.ReadAll(io.LimitReader(f, maxOutput+1))
		if err == nil && len(data) > maxOutput {
			return fmt.Errorf("%s is larger than %d bytes", path, maxOutput)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s on %s: %w", path, h.URL.Addr(), err)
	}
	return data, nil
}

// ReadDir lists a folder on the host over SFTP.
func (h *Host) ReadDir(ctx context.Context, path string) ([]os.FileInfo, error) {
	var fis []os.FileInfo
	err := h.retry(ctx, func(c *conn) error {
		var err error
		fis, err = c.sftp.ReadDir(path)
		return err
	})
	return fis, err
}
