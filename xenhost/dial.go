package xenhost

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Sentinel errors for what callers branch on.
var (
	// ErrUnknownHostKey: the host is not in known_hosts (see HostKeyError).
	ErrUnknownHostKey = errors.New("unknown SSH host key")
	// ErrHostKeyChanged: the host presented a key other than the one in
	// known_hosts (see HostKeyError).
	ErrHostKeyChanged = errors.New("SSH host key changed")
	// ErrAuth: no key, agent identity or password was accepted.
	ErrAuth = errors.New("SSH authentication failed")
	// ErrUnreachable: the host could not be reached, or the connection
	// could not be re-established after it dropped (see ConnError).
	ErrUnreachable = errors.New("host unreachable")
)

// HostKeyError is a host key that known_hosts does not vouch for.
type HostKeyError struct {
	Host        string // HOST:PORT
	KeyType     string // ssh-rsa, ...
	Fingerprint string // SHA256:...
	KnownHosts  string // the file checked
	Changed     bool   // known_hosts has another key for the host
}

func (e *HostKeyError) Error() string {
	if e.Changed {
		return fmt.Sprintf("%s presented %s key %s, which does not match the key %s has for it: the host was reinstalled or someone is in between", e.Host, e.KeyType, e.Fingerprint, e.KnownHosts)
	}
	return fmt.Sprintf("%s is not in %s: its %s key is %s", e.Host, e.KnownHosts, e.KeyType, e.Fingerprint)
}

func (e *HostKeyError) Unwrap() error {
	if e.Changed {
		return ErrHostKeyChanged
	}
	return ErrUnknownHostKey
}

// Hint says what to do about the error.
func (e *HostKeyError) Hint() string {
	if e.Changed {
		return "check the host's key on its console (ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub), then remove the old entry with ssh-keygen -R and retry"
	}
	return fmt.Sprintf("check the fingerprint on the host's console (ssh-keygen -lf /etc/ssh/ssh_host_rsa_key.pub), then retry with --accept-new-host-key to add it to %s", e.KnownHosts)
}

// ConnError is a host that could not be reached or reconnected.
type ConnError struct {
	Host     string // HOST:PORT
	Attempts int
	Err      error
}

func (e *ConnError) Error() string {
	if e.Attempts > 1 {
		return fmt.Sprintf("%v: %s: gave up after %d attempts: %v", ErrUnreachable, e.Host, e.Attempts, e.Err)
	}
	return fmt.Sprintf("%v: %s: %v", ErrUnreachable, e.Host, e.Err)
}

func (e *ConnError) Unwrap() []error { return []error{ErrUnreachable, e.Err} }

// Legacy algorithms that OpenSSH 4.3 (RHEL 5) needs and that are not in
// x/crypto/ssh's default set, or are there but insecure. They are offered
// after the modern ones, so a host that has anything better uses that.
var (
	legacyKex = []string{ssh.InsecureKeyExchangeDH14SHA1, ssh.InsecureKeyExchangeDH1SHA1, ssh.InsecureKeyExchangeDHGEXSHA1}
	//lint:ignore SA1019 a RHEL 5 host may have only its DSA host key
	legacyHostKeys = []string{ssh.KeyAlgoRSA, ssh.InsecureKeyAlgoDSA}
	legacyCiphers  = []string{ssh.InsecureCipherAES128CBC, ssh.InsecureCipherTripleDESCBC}
	legacyMACs     = []string{ssh.InsecureHMACSHA196}
)

// LegacyAlgorithms lists the algorithms xen2kvm enables for old hosts,
// for documentation and warnings.
func LegacyAlgorithms() []string {
	return slices.Concat(legacyKex, legacyHostKeys, legacyCiphers, legacyMACs)
}

func clientAlgorithms() (kex, ciphers, macs []string) {
	sup := ssh.SupportedAlgorithms()
	kex = appendNew(sup.KeyExchanges, legacyKex...)
	ciphers = appendNew(sup.Ciphers, legacyCiphers...)
	macs = appendNew(sup.MACs, legacyMACs...)
	return
}

func appendNew(list []string, more ...string) []string {
	out := slices.Clone(list)
	for _, m := range more {
		if !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	return out
}

// legacyUsed names the legacy algorithms a connection negotiated.
func legacyUsed(a ssh.NegotiatedAlgorithms) []string {
	var used []string
	add := func(kind, alg string, set []string) {
		s := kind + " " + alg
		if slices.Contains(set, alg) && !slices.Contains(used, s) {
			used = append(used, s)
		}
	}
	add("key exchange", a.KeyExchange, legacyKex)
	add("host key", a.HostKey, legacyHostKeys)
	add("cipher", a.Read.Cipher, legacyCiphers)
	add("cipher", a.Write.Cipher, legacyCiphers)
	add("MAC", a.Read.MAC, legacyMACs)
	add("MAC", a.Write.MAC, legacyMACs)
	return used
}

// dialer holds what every (re)connection to one host needs.
type dialer struct {
	u          *URL
	opts       *Options
	cfg        *ssh.ClientConfig
	knownHosts string
}

func newDialer(u *URL, opts *Options) (*dialer, error) {
	user := u.User
	if user == "" {
		user = os.Getenv("USER")
		if user == "" {
			user = "root"
		}
	}
	auth, err := authMethods(opts)
	if err != nil {
		return nil, err
	}
	known := opts.KnownHosts
	if known == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("finding known_hosts: %w", err)
		}
		known = filepath.Join(home, ".ssh", "known_hosts")
	}
	hk := &hostKeys{file: known, accept: opts.AcceptNewHostKey, addr: u.Addr(), warn: opts.warn}
	kex, ciphers, macs := clientAlgorithms()
	cfg := &ssh.ClientConfig{
		User:              user,
		Auth:              auth,
		HostKeyCallback:   hk.check,
		HostKeyAlgorithms: hk.algorithms(),
		Timeout:           opts.dialTimeout(),
		ClientVersion:     "SSH-2.0-xen2kvm",
		Config:            ssh.Config{KeyExchanges: kex, Ciphers: ciphers, MACs: macs},
	}
	return &dialer{u: u, opts: opts, cfg: cfg, knownHosts: known}, nil
}

// dial opens one SSH connection.
func (d *dialer) dial(ctx context.Context) (*ssh.Client, error) {
	nd := net.Dialer{Timeout: d.opts.dialTimeout(), KeepAlive: 15 * time.Second}
	conn, err := nd.DialContext(ctx, "tcp", d.u.Addr())
	if err != nil {
		return nil, err
	}
	// The handshake must not hang on a host that accepts and then says
	// nothing.
	conn.SetDeadline(time.Now().Add(d.opts.dialTimeout()))
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, chans, reqs, err := ssh.NewClientConn(newBufferedConn(conn), d.u.Addr(), d.cfg)
	if err != nil {
		conn.Close()
		var hke *HostKeyError
		if errors.As(err, &hke) {
			return nil, hke
		}
		if strings.Contains(err.Error(), "unable to authenticate") {
			return nil, fmt.Errorf("%w as %s on %s: %v", ErrAuth, d.cfg.User, d.u.Addr(), err)
		}
		return nil, err
	}
	conn.SetDeadline(time.Time{})
	return ssh.NewClient(c, chans, reqs), nil
}

// authMethods are the keys from --identity (or ~/.ssh/id_* without one),
// the agent's keys, and a password when a prompt is available.
func authMethods(opts *Options) ([]ssh.AuthMethod, error) {
	var signers []ssh.Signer
	files := opts.Identities
	explicit := len(files) > 0
	if !explicit {
		if home, err := os.UserHomeDir(); err == nil {
			for _, n := range []string{"id_ed25519", "id_ecdsa", "id_rsa", "id_dsa"} {
				files = append(files, filepath.Join(home, ".ssh", n))
			}
		}
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			if explicit {
				return nil, fmt.Errorf("reading identity: %w", err)
			}
			continue
		}
		s, err := ssh.ParsePrivateKey(data)
		var pme *ssh.PassphraseMissingError
		if errors.As(err, &pme) && opts.Password != nil {
			pass, perr := opts.Password(fmt.Sprintf("Passphrase for %s: ", f))
			if perr != nil {
				return nil, perr
			}
			s, err = ssh.ParsePrivateKeyWithPassphrase(data, []byte(pass))
		}
		if err != nil {
			if explicit {
				return nil, fmt.Errorf("identity %s: %w", f, err)
			}
			opts.warn(fmt.Sprintf("identity %s skipped: %v", f, err))
			continue
		}
		signers = append(signers, s)
	}
	var methods []ssh.AuthMethod
	sock := os.Getenv("SSH_AUTH_SOCK")
	if opts.NoAgent {
		sock = ""
	}
	if len(signers) > 0 || sock != "" {
		methods = append(methods, ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
			all := slices.Clone(signers)
			if sock != "" {
				if c, err := net.Dial("unix", sock); err == nil {
					// The connection lives as long as the signers may be used.
					if as, err := agent.NewClient(c).Signers(); err == nil {
						all = append(all, as...)
					}
				}
			}
			return withLegacyRSA(all), nil
		}))
	}
	if opts.Password != nil {
		methods = append(methods,
			ssh.PasswordCallback(func() (string, error) { return opts.Password("Password: ") }),
			ssh.KeyboardInteractive(func(name, instruction string, questions []string, echos []bool) ([]string, error) {
				answers := make([]string, len(questions))
				for i, q := range questions {
					a, err := opts.Password(q)
					if err != nil {
						return nil, err
					}
					answers[i] = a
				}
				return answers, nil
			}))
	}
	if len(methods) == 0 {
		return nil, fmt.Errorf("%w: no SSH key (--identity, ~/.ssh/id_*), no ssh-agent and no terminal to ask for a password", ErrAuth)
	}
	return methods, nil
}

// hostKeys checks host keys against a known_hosts file.
type hostKeys struct {
	file   string
	accept bool
	addr   string
	warn   func(string)
}

func (h *hostKeys) callback() (ssh.HostKeyCallback, error) {
	cb, err := knownhosts.New(h.file)
	if errors.Is(err, os.ErrNotExist) {
		return func(string, net.Addr, ssh.PublicKey) error {
			return &knownhosts.KeyError{}
		}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", h.file, err)
	}
	return cb, nil
}

// algorithms puts the host key algorithms of the keys known_hosts has for
// the host first, so the host presents a key that can be checked.
func (h *hostKeys) algorithms() []string {
	all := appendNew(ssh.SupportedAlgorithms().HostKeys, legacyHostKeys...)
	cb, err := h.callback()
	if err != nil {
		return all
	}
	var ke *knownhosts.KeyError
	if err := cb(h.addr, probeAddr(h.addr), probeKey{}); !errors.As(err, &ke) || len(ke.Want) == 0 {
		return all
	}
	var first []string
	for _, k := range ke.Want {
		switch t := k.Key.Type(); t {
		case ssh.KeyAlgoRSA:
			first = append(first, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
		default:
			first = append(first, t)
		}
	}
	out := appendNew(nil, first...)
	return appendNew(out, all...)
}

func (h *hostKeys) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	cb, err := h.callback()
	if err != nil {
		return err
	}
	err = cb(hostname, remote, key)
	if err == nil {
		return nil
	}
	var ke *knownhosts.KeyError
	if !errors.As(err, &ke) {
		return err
	}
	hke := &HostKeyError{Host: hostname, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key), KnownHosts: h.file, Changed: len(ke.Want) > 0}
	if hke.Changed || !h.accept {
		return hke
	}
	if err := os.MkdirAll(filepath.Dir(h.file), 0o700); err != nil {
		return fmt.Errorf("adding the host key: %w", err)
	}
	f, err := os.OpenFile(h.file, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("adding the host key: %w", err)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(hostname)}, key)
	if _, err := f.WriteString(line + "\n"); err != nil {
		f.Close()
		return fmt.Errorf("adding the host key to %s: %w", h.file, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("adding the host key to %s: %w", h.file, err)
	}
	h.warn(fmt.Sprintf("added %s's %s key %s to %s", hostname, key.Type(), hke.Fingerprint, h.file))
	return nil
}

func probeAddr(hostport string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return &net.TCPAddr{}
	}
	return a
}

// probeKey is a key no host has: checking it lists the known keys.
type probeKey struct{}

func (probeKey) Type() string                        { return "xen2kvm-probe" }
func (probeKey) Marshal() []byte                     { return []byte("xen2kvm-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// withLegacyRSA adds, after the signers, each RSA key again restricted to
// ssh-rsa (SHA-1) signatures: a server that announces rsa-sha2-256 but
// accepts only ssh-rsa, like a patched old OpenSSH, then still takes the
// key. OpenSSH 4.3 announces nothing, and gets ssh-rsa the first time.
func withLegacyRSA(signers []ssh.Signer) []ssh.Signer {
	out := slices.Clone(signers)
	for _, s := range signers {
		as, ok := s.(ssh.AlgorithmSigner)
		if !ok || s.PublicKey().Type() != ssh.KeyAlgoRSA {
			continue
		}
		if ls, err := ssh.NewSignerWithAlgorithms(as, []string{ssh.KeyAlgoRSA}); err == nil {
			out = append(out, ls)
		}
	}
	return out
}
