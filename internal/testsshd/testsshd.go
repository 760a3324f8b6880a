// Package testsshd starts Debian's OpenSSH server as a stand-in Xen host
// for tests: on 127.0.0.1 on a free port, with a generated RSA host key
// and client key, the algorithm set of the OpenSSH 4.3 that RHEL 5 ships
// (legacy key exchange, host key, ciphers and MACs only), SFTP, and a
// stand-in xm on the sessions' PATH that answers xm list, xm list -l NAME
// and xm create --dryrun FILE from the guests' xm configs.
//
//	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
//		{Name: "web01", Config: cfg}, // cfg: an xm config, disk paths as the host has them
//	}})
//	u := srv.URL("web01")             // ssh://root@127.0.0.1:PORT/web01
//	opts := srv.ClientOptions()        // the test key, known_hosts and ConfigDir
//	args := append([]string{"migrate", u}, srv.Flags()...) // the same for the CLI
//
// The server, and every session it forked, is stopped when the test ends,
// whatever happens. KillSessions kills the per-connection processes (a
// dropped connection); Stop kills the server (a host that went away).
package testsshd

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// Legacy is the algorithm set of OpenSSH 4.3 as RHEL 5 ships it, as far as
// Debian 12's sshd still offers it (4.3 also has blowfish, cast128,
// arcfour and hmac-ripemd160, which it no longer does). Its ciphers
// include the CTR modes (OpenSSH has had them since 3.7), which a client
// prefers to CBC. Modern servers (Options.Modern) use sshd's defaults
// instead.
var Legacy = []string{
	"KexAlgorithms diffie-hellman-group14-sha1,diffie-hellman-group1-sha1,diffie-hellman-group-exchange-sha1",
	"HostKeyAlgorithms ssh-rsa",
	"PubkeyAcceptedAlgorithms ssh-rsa",
	"Ciphers aes128-cbc,3des-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr",
	"MACs hmac-md5,hmac-sha1,hmac-sha1-96,hmac-md5-96",
}

// cbcOnly is the Ciphers line of a Legacy server with Options.CBCOnly.
const cbcOnly = "Ciphers aes128-cbc,3des-cbc,aes192-cbc,aes256-cbc"

// Guest is a Xen guest the stand-in host has.
type Guest struct {
	Name string
	// Config is the guest's xm config, installed as ConfigDir/NAME
	// unless NoFile.
	Config []byte
	// NoFile leaves the config file out: the guest is known to xend only
	// (Managed or Running).
	NoFile bool
	// Managed: xend manages the guest, so xm list shows it even when off
	// and xm list -l NAME prints its SXP.
	Managed bool
	// Running: xm list shows it running with a domain ID.
	Running bool
	// StopsOnShutdown: xm shutdown NAME stops the running guest at once
	// (it shows as Managed would, or goes from xm list). Without it the
	// guest stops when the test calls SetRunning(NAME, false), after
	// seeing ShutdownRequested.
	StopsOnShutdown bool
	// ShutdownReturnsEarly: xm shutdown -w NAME returns at once, the
	// guest still running (an xend whose -w does not wait).
	ShutdownReturnsEarly bool
}

// Options configure Start.
type Options struct {
	Guests []Guest
	// Modern offers sshd's default algorithms instead of Legacy.
	Modern bool
	// CBCOnly leaves the CTR ciphers out of Legacy: a host whose sshd
	// is configured to offer CBC only, so that the client's own legacy
	// ciphers are the ones negotiated.
	CBCOnly bool
	// NoXM leaves xm off the PATH (xend not installed or not running).
	NoXM bool
	// Programs are more stand-in programs (name: script) put on the
	// sessions' PATH, before the system's.
	Programs map[string]string
	// NoPython: the sessions' PATH has the system's programs but no
	// python (a host with coreutils only).
	NoPython bool
}

// withoutPython fills dir with links to the programs of the system's
// folders but python's, and returns it as a PATH.
func withoutPython(t testing.TB, dir string) string {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "python") {
				continue
			}
			// The first folder's program wins, as on a PATH.
			if err := os.Symlink(filepath.Join(d, e.Name()), filepath.Join(dir, e.Name())); err != nil && !os.IsExist(err) {
				t.Fatal(err)
			}
		}
	}
	return dir
}

// Server is a running sshd.
type Server struct {
	Addr           string // 127.0.0.1:PORT
	Port           int
	User           string
	KeyPath        string // the client's private key (OpenSSH PEM)
	KnownHostsPath string // a known_hosts file with the server's key
	HostKey        ssh.PublicKey
	// ConfigDir is the host's Xen config folder (its /etc/xen).
	ConfigDir string
	// XMLog collects the argv of every xm call, one per line.
	XMLog string
	// BinDir is first on the sessions' PATH (xm and Options.Programs).
	BinDir string
	Dir    string

	t      testing.TB
	cmd    *exec.Cmd
	log    *syncBuffer
	mu     sync.Mutex
	guests []Guest
	doms   map[string]*config.Domain
	ids    map[string]int
	xmGen  int // the guests' folder DIR/xm links to (SetGuests)
}

// Start starts sshd; it is stopped by t.Cleanup.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	sshd := testutil.NeedTool(t, "/usr/sbin/sshd")
	dir := t.TempDir()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, User: u.Username, Dir: dir, ConfigDir: filepath.Join(dir, "etc-xen"), XMLog: filepath.Join(dir, "xm.log"), BinDir: filepath.Join(dir, "bin"),
		KeyPath: filepath.Join(dir, "id_rsa"), KnownHostsPath: filepath.Join(dir, "known_hosts"),
		doms: map[string]*config.Domain{}, ids: map[string]int{}}
	for _, d := range []string{s.ConfigDir, filepath.Join(dir, "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hostKey := writeKey(t, filepath.Join(dir, "ssh_host_rsa_key"))
	s.HostKey = hostKey.PublicKey()
	client := writeKey(t, s.KeyPath)
	write(t, filepath.Join(dir, "authorized_keys"), ssh.MarshalAuthorizedKey(client.PublicKey()), 0o600)
	s.SetGuests(opts.Guests)
	if !opts.NoXM {
		write(t, filepath.Join(dir, "bin", "xm"), []byte(strings.ReplaceAll(xmScript, "@DIR@", dir)), 0o755)
	}
	for name, script := range opts.Programs {
		write(t, filepath.Join(dir, "bin", name), []byte(script), 0o755)
	}
	path := filepath.Join(dir, "bin") + ":/usr/sbin:/usr/bin:/sbin:/bin"
	if opts.NoPython {
		path = filepath.Join(dir, "bin") + ":" + withoutPython(t, filepath.Join(dir, "nopython"))
	}
	// sshd refuses to start without its privilege separation folder.
	if _, err := os.Stat("/run/sshd"); os.IsNotExist(err) && os.Geteuid() == 0 {
		os.MkdirAll("/run/sshd", 0o755)
	}

	var lastErr string
	for attempt := 0; attempt < 3; attempt++ {
		s.Port = freePort(t)
		s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port))
		cfg := []string{
			"Port " + strconv.Itoa(s.Port),
			"ListenAddress 127.0.0.1",
			"HostKey " + filepath.Join(dir, "ssh_host_rsa_key"),
			"PidFile " + filepath.Join(dir, "sshd.pid"),
			"AuthorizedKeysFile " + filepath.Join(dir, "authorized_keys"),
			"StrictModes no",
			"UsePAM no",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PubkeyAuthentication yes",
			"PermitRootLogin yes",
			"Subsystem sftp internal-sftp",
			// SHLVL=1: bash, started by sshd for each command, reads
			// the user's ~/.bashrc only at level 1 (it counts itself
			// from SHLVL); the machine's own (root's) must not change
			// PATH or stall every command (a pyenv rehash there waits
			// up to a minute for a lock when sessions run in parallel).
			"SetEnv PATH=" + path + " SHLVL=1",
			"LogLevel VERBOSE",
			"MaxStartups 100",
		}
		if !opts.Modern {
			for _, l := range Legacy {
				if opts.CBCOnly && strings.HasPrefix(l, "Ciphers ") {
					l = cbcOnly
				}
				cfg = append(cfg, l)
			}
		}
		cfgPath := filepath.Join(dir, "sshd_config")
		write(t, cfgPath, []byte(strings.Join(cfg, "\n")+"\n"), 0o600)
		s.log = &syncBuffer{}
		s.cmd = exec.Command(sshd, "-D", "-e", "-f", cfgPath)
		s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
		// Pdeathsig: a test binary killed by its -timeout panic runs no
		// Cleanup; sshd must not outlive it.
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		if err := s.cmd.Start(); err != nil {
			t.Fatalf("starting sshd: %v", err)
		}
		done := make(chan struct{})
		go func() { s.cmd.Wait(); close(done) }()
		cmd := s.cmd
		t.Cleanup(func() {
			killTree(cmd.Process.Pid)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
			}
		})
		if s.waitReady(done) {
			break
		}
		lastErr = s.log.String()
		killTree(s.cmd.Process.Pid)
		<-done
		s.cmd = nil
	}
	if s.cmd == nil {
		t.Fatalf("sshd did not start:\n%s", lastErr)
	}
	line := knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, s.HostKey)
	write(t, s.KnownHostsPath, []byte(line+"\n"), 0o600)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log:\n%s", s.log.String())
		}
	})
	return s
}

// waitReady waits for the SSH banner.
func (s *Server) waitReady(exited chan struct{}) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.SetDeadline(time.Now().Add(2 * time.Second))
			buf := make([]byte, 4)
			_, err = c.Read(buf)
			c.Close()
			if err == nil && string(buf) == "SSH-" {
				return true
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

// URL is ssh://USER@127.0.0.1:PORT/NAME ("" for the host).
func (s *Server) URL(name string) string {
	u := fmt.Sprintf("ssh://%s@%s", s.User, s.Addr)
	if name != "" {
		u += "/" + name
	}
	return u
}

// ClientOptions are the xenhost options that reach the server: the test
// key (and no agent), the known_hosts with the server's key, and the
// host's Xen config folder. Tests add what they vary (retries, Warn).
func (s *Server) ClientOptions() xenhost.Options {
	return xenhost.Options{Identities: []string{s.KeyPath}, KnownHosts: s.KnownHostsPath, ConfigDir: s.ConfigDir, NoAgent: true}
}

// Flags are xen2kvm's command-line flags for what ClientOptions sets
// (the agent is left to the environment).
func (s *Server) Flags() []string {
	return []string{"--identity", s.KeyPath, "--known-hosts", s.KnownHostsPath, "--host-config-dir", s.ConfigDir}
}

// SSHArgs are the OpenSSH client options that reach the server with the
// test key and known_hosts, legacy algorithms enabled: for ssh, add
// "-p PORT USER@127.0.0.1"; for scp, "-P PORT".
func (s *Server) SSHArgs() []string {
	return []string{"-F", "/dev/null", "-i", s.KeyPath, "-o", "UserKnownHostsFile=" + s.KnownHostsPath,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
		"-o", "KexAlgorithms=+diffie-hellman-group14-sha1,diffie-hellman-group1-sha1",
		"-o", "HostKeyAlgorithms=+ssh-rsa", "-o", "PubkeyAcceptedAlgorithms=ssh-rsa,rsa-sha2-256,rsa-sha2-512",
		"-o", "Ciphers=+aes128-cbc,aes256-cbc,3des-cbc"}
}

// Exec runs a command on the server with the OpenSSH client and returns
// its output; a failure fails the test.
func (s *Server) Exec(t testing.TB, command string) string {
	t.Helper()
	args := append(s.SSHArgs(), "-p", strconv.Itoa(s.Port), s.User+"@127.0.0.1", command)
	out, err := exec.Command(testutil.NeedTool(t, "ssh"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("ssh %s: %v\n%s", command, err, out)
	}
	return string(out)
}

// Log is what sshd logged so far.
func (s *Server) Log() string { return s.log.String() }

// KillSessions kills every process sshd forked for a connection (their
// connections drop, as when a network link fails) and returns how many
// it killed. The server goes on accepting connections.
func (s *Server) KillSessions() int {
	pids := descendants(s.cmd.Process.Pid)
	for _, p := range pids {
		syscall.Kill(p, syscall.SIGKILL)
	}
	return len(pids)
}

// Stop kills sshd and its sessions: the host is gone.
func (s *Server) Stop() { killTree(s.cmd.Process.Pid) }

// SetGuests replaces the guests the host has.
func (s *Server) SetGuests(gs []Guest) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.guests = append([]Guest(nil), gs...)
	// The stand-in xm reads DIR/xm, a link to the guests' folder: a new
	// folder is filled, then the link replaced in one rename, so that an
	// xm running meanwhile sees the old guests or the new, never none.
	s.xmGen++
	xm := filepath.Join(s.Dir, fmt.Sprintf("xm-%d", s.xmGen))
	for _, d := range []string{"list-l", "dryrun", "off", "shutdown"} {
		os.MkdirAll(filepath.Join(xm, d), 0o755)
	}
	var list strings.Builder
	fmt.Fprintf(&list, "%-40s %3s %5s %5s %10s %9s\n", "Name", "ID", "Mem", "VCPUs", "State", "Time(s)")
	fmt.Fprintf(&list, "%-40s %3d %5d %5d %10s %9.1f\n", "Domain-0", 0, 1024, 2, "r-----", 4242.4)
	names := make([]string, 0, len(gs))
	for _, g := range gs {
		names = append(names, g.Name)
	}
	sort.Strings(names)
	for i, g := range gs {
		d, err := config.Parse(g.Config, g.Name, config.WithFormat(config.FormatXM))
		if err != nil {
			s.t.Fatalf("testsshd: guest %s: %v", g.Name, err)
		}
		s.doms[g.Name] = d
		file := filepath.Join(s.ConfigDir, g.Name)
		if g.NoFile {
			os.Remove(file)
		} else {
			write(s.t, file, g.Config, 0o644)
		}
		sxp := toSXP(d, g.Name)
		write(s.t, filepath.Join(xm, "dryrun", g.Name), []byte("(vm\n"+sxp+")\n"), 0o644)
		switch {
		case g.Running:
			id := i + 1
			fmt.Fprintf(&list, "%-40s %3d %5d %5d %10s %9.1f\n", g.Name, id, d.MemoryMiB, d.VCPUs, "-b----", 12.5)
			write(s.t, filepath.Join(xm, "list-l", g.Name), []byte(fmt.Sprintf("(domain\n    (domid %d)\n    (state -b----)\n%s)\n", id, sxp)), 0o644)
			// What xm shutdown leaves: a managed guest stays, off.
			if g.Managed {
				write(s.t, filepath.Join(xm, "off", g.Name+".line"), []byte(fmt.Sprintf("%-40s %3s %5d %5d %10s %9.1f\n", g.Name, "", d.MemoryMiB, d.VCPUs, "", 0.0)), 0o644)
				write(s.t, filepath.Join(xm, "off", g.Name+".sxp"), []byte("(domain\n    (state ------)\n"+sxp+")\n"), 0o644)
			}
			if g.StopsOnShutdown {
				write(s.t, filepath.Join(xm, "off", g.Name+".auto"), nil, 0o644)
			}
			if g.ShutdownReturnsEarly {
				write(s.t, filepath.Join(xm, "off", g.Name+".early"), nil, 0o644)
			}
		case g.Managed:
			fmt.Fprintf(&list, "%-40s %3s %5d %5d %10s %9.1f\n", g.Name, "", d.MemoryMiB, d.VCPUs, "", 0.0)
			write(s.t, filepath.Join(xm, "list-l", g.Name), []byte("(domain\n    (state ------)\n"+sxp+")\n"), 0o644)
		}
	}
	write(s.t, filepath.Join(xm, "list"), []byte(list.String()), 0o644)
	link := filepath.Join(s.Dir, "xm")
	if err := os.Symlink(filepath.Base(xm), link+".new"); err != nil {
		s.t.Fatal(err)
	}
	if err := os.Rename(link+".new", link); err != nil {
		s.t.Fatal(err)
	}
	// The folder before the last: an xm still reading the last one
	// finds it whole.
	os.RemoveAll(filepath.Join(s.Dir, fmt.Sprintf("xm-%d", s.xmGen-2)))
}

// SetRunning starts or stops guest name (as xm list shows it).
func (s *Server) SetRunning(name string, running bool) {
	s.t.Helper()
	s.mu.Lock()
	gs := append([]Guest(nil), s.guests...)
	s.mu.Unlock()
	for i := range gs {
		if gs[i].Name == name {
			gs[i].Running = running
		}
	}
	s.SetGuests(gs)
}

// ShutdownRequested tells whether xm shutdown NAME ran since the guests
// were last set.
func (s *Server) ShutdownRequested(name string) bool {
	_, err := os.Stat(filepath.Join(s.Dir, "xm", "shutdown", name))
	return err == nil
}

// xmScript is the stand-in xm: it answers from files Start prepared.
// xm shutdown [-w] NAME asks a running guest to stop (see
// Guest.StopsOnShutdown); with -w it waits until the guest is off.
const xmScript = `#!/bin/sh
echo "$*" >> @DIR@/xm.log
stop() {
	grep -v "^$1 " @DIR@/xm/list > @DIR@/xm/list.new
	cat @DIR@/xm/off/$1.line >> @DIR@/xm/list.new 2>/dev/null
	mv @DIR@/xm/list.new @DIR@/xm/list
	if [ -f @DIR@/xm/off/$1.sxp ]; then cp @DIR@/xm/off/$1.sxp @DIR@/xm/list-l/$1; else rm -f @DIR@/xm/list-l/$1; fi
}
running() { grep -q domid "@DIR@/xm/list-l/$1" 2>/dev/null; }
if [ "$1" = shutdown ]; then
	wait=no
	[ "$2" = -w ] && { wait=yes; shift; }
	n=$2
	if [ $# -ne 2 ] || ! running "$n"; then echo "Error: Domain '$n' is not running." >&2; exit 1; fi
	touch "@DIR@/xm/shutdown/$n"
	[ -f "@DIR@/xm/off/$n.auto" ] && stop "$n"
	if [ $wait = yes ] && [ ! -f "@DIR@/xm/off/$n.early" ]; then
		while running "$n"; do sleep 0.1; done
		echo "Domain $n terminated"
	fi
	exit 0
fi
case "$1 $2" in
"list ")
	cat @DIR@/xm/list; exit 0 ;;
"list -l")
	if [ $# -eq 3 ] && [ -f "@DIR@/xm/list-l/$3" ]; then cat "@DIR@/xm/list-l/$3"; exit 0; fi
	echo "Error: Domain '$3' does not exist." >&2; exit 1 ;;
"create --dryrun")
	n=$(basename "$3")
	if [ $# -eq 3 ] && [ -f "$3" ] && [ -f "@DIR@/xm/dryrun/$n" ]; then
		echo "Using config file \"$3\"."; cat "@DIR@/xm/dryrun/$n"; exit 0
	fi
	echo "Error: Unable to open config file: $3" >&2; exit 1 ;;
esac
echo "Error: xm $* is not something this stand-in answers" >&2
exit 1
`

// toSXP renders the parts of a domain that xend's SXP carries.
func toSXP(d *config.Domain, name string) string {
	var b strings.Builder
	kv := func(k string, v any) { fmt.Fprintf(&b, "    (%s %s)\n", k, sxpAtom(fmt.Sprint(v))) }
	kv("name", name)
	if d.UUID != "" {
		kv("uuid", d.UUID)
	}
	kv("memory", d.MemoryMiB)
	kv("maxmem", d.MaxMemoryMiB)
	kv("vcpus", d.VCPUs)
	if d.Bootloader != "" {
		kv("bootloader", d.Bootloader)
	}
	for k, v := range map[string]string{"on_poweroff": d.OnPoweroff, "on_reboot": d.OnReboot, "on_crash": d.OnCrash} {
		if v != "" {
			kv(k, v)
		}
	}
	if d.Type == config.HVM {
		fmt.Fprintf(&b, "    (image (hvm (kernel /usr/lib/xen/boot/hvmloader)))\n")
	} else if d.Kernel != "" {
		fmt.Fprintf(&b, "    (image (linux (kernel %s)", sxpAtom(d.Kernel))
		if d.Ramdisk != "" {
			fmt.Fprintf(&b, " (ramdisk %s)", sxpAtom(d.Ramdisk))
		}
		if c := d.Cmdline(); c != "" {
			fmt.Fprintf(&b, " (args %s)", sxpAtom(c))
		}
		b.WriteString("))\n")
	}
	for _, disk := range d.Disks {
		uname := disk.Backend + ":" + disk.Source
		if disk.Backend == "tap:aio" || disk.Backend == "tap:qcow" {
			uname = disk.Backend + ":" + disk.Source
		}
		dev := disk.Target
		if disk.Device == "cdrom" {
			dev += ":cdrom"
		}
		fmt.Fprintf(&b, "    (device (%s (uname %s) (dev %s) (mode %s)))\n", vbdKind(disk.Backend), sxpAtom(uname), dev, disk.Mode)
	}
	for _, n := range d.NICs {
		fmt.Fprintf(&b, "    (device (vif (mac %s)", n.MAC)
		if n.Bridge != "" {
			fmt.Fprintf(&b, " (bridge %s)", sxpAtom(n.Bridge))
		}
		if n.Script != "" {
			fmt.Fprintf(&b, " (script %s)", sxpAtom(n.Script))
		}
		b.WriteString("))\n")
	}
	return b.String()
}

func vbdKind(backend string) string {
	if strings.HasPrefix(backend, "tap") {
		return "tap"
	}
	return "vbd"
}

func sxpAtom(s string) string {
	if s == "" || strings.ContainsAny(s, " \t\n()'\"") {
		return "'" + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), "'", `\'`) + "'"
	}
	return s
}

func writeKey(t testing.TB, path string) ssh.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	write(t, path, pem.EncodeToMemory(blk), 0o600)
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	write(t, path+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644)
	return s
}

func write(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, mode)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// descendants lists the processes below pid, deepest last.
func descendants(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	parent := map[int]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces and parens.
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 2 {
			continue
		}
		pp, _ := strconv.Atoi(f[1])
		parent[p] = pp
	}
	var out []int
	var walk func(int)
	walk = func(p int) {
		for c, pp := range parent {
			if pp == p {
				out = append(out, c)
				walk(c)
			}
		}
	}
	walk(pid)
	return out
}

func killTree(pid int) {
	for _, p := range descendants(pid) {
		syscall.Kill(p, syscall.SIGKILL)
	}
	syscall.Kill(pid, syscall.SIGKILL)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
