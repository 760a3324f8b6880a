package xenhost

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pkg/sftp"
)

// The system's OpenSSH client as the SFTP transport (Options.OpenSSH).
// x/crypto/ssh has no compression; OpenSSH's ssh -C has, and zero-heavy
// disk images shrink to a fraction on the wire. The Go connection stays
// open beside it: it checks the host key first (known_hosts, or
// --accept-new-host-key adding it), runs the xm queries and keeps the
// connection generation; ssh then finds the key in the same known_hosts
// and authenticates with the same identities (or the agent), never asking
// anything (BatchMode).

// openSSHProgram is the ssh client run for Options.OpenSSH.
var openSSHProgram = "ssh"

// openSSHAlgorithms are the legacy algorithms the installed ssh client
// knows, by ssh -Q query ("kex", "key", "cipher", "mac"); an OpenSSH that
// dropped one (ssh-dss in 9.8 and later) would refuse to start if asked
// for it.
var openSSHAlgorithms = sync.OnceValues(func() (map[string][]string, error) {
	known := map[string][]string{}
	for _, q := range []string{"kex", "key", "cipher", "mac"} {
		out, err := exec.Command(openSSHProgram, "-Q", q).Output()
		if err != nil {
			return nil, fmt.Errorf("%s -Q %s: %w", openSSHProgram, q, err)
		}
		known[q] = strings.Fields(string(out))
	}
	return known, nil
})

// openSSHArgs is the argv (after the program) that starts the SFTP
// subsystem on the host with ssh. legacy: the Go connection had to use
// legacy algorithms with the host, so RSA keys sign with ssh-rsa (SHA-1)
// first: ssh tries one signature algorithm per key, and a host that
// announces rsa-sha2-* but takes only ssh-rsa would refuse the key.
func (d *dialer) openSSHArgs(known map[string][]string, legacy bool) []string {
	o := d.opts
	args := []string{
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", "UserKnownHostsFile=" + d.knownHosts,
		"-o", "GlobalKnownHostsFile=/dev/null",
		"-o", "CheckHostIP=no",
		"-o", "ConnectTimeout=" + strconv.Itoa(max(1, int(o.dialTimeout()/time.Second))),
		"-o", "ServerAliveInterval=15",
		"-o", "ServerAliveCountMax=2",
		"-o", "ClearAllForwardings=yes",
		"-o", "RequestTTY=no",
		"-o", "LogLevel=ERROR",
	}
	if o.SSHConfig != "" {
		args = append([]string{"-F", o.SSHConfig}, args...)
	}
	if o.Compression {
		args = append(args, "-C")
	} else {
		args = append(args, "-o", "Compression=no")
	}
	if len(o.Identities) > 0 {
		args = append(args, "-o", "IdentitiesOnly=yes")
		for _, id := range o.Identities {
			args = append(args, "-i", id)
		}
	}
	if o.NoAgent {
		args = append(args, "-o", "IdentityAgent=none")
	}
	// "+": after ssh's defaults, so a host with anything better uses
	// that, as with the Go connection.
	add := func(option, query, where string, algs []string) {
		var ok []string
		for _, a := range algs {
			if slices.Contains(known[query], a) {
				ok = append(ok, a)
			}
		}
		if len(ok) > 0 {
			args = append(args, "-o", option+"="+where+strings.Join(ok, ","))
		}
	}
	add("KexAlgorithms", "kex", "+", legacyKex)
	add("HostKeyAlgorithms", "key", "+", legacyHostKeys)
	rsa := "+"
	if legacy {
		rsa = "^"
	}
	add("PubkeyAcceptedAlgorithms", "key", rsa, []string{"ssh-rsa"})
	add("Ciphers", "cipher", "+", legacyCiphers)
	add("MACs", "mac", "+", append([]string{"hmac-sha1"}, legacyMACs...))
	args = append(args, "-p", strconv.Itoa(portOf(d.u)), "-l", d.cfg.User, "-s", d.u.Host, "sftp")
	return args
}

func portOf(u *URL) int {
	if u.Port == 0 {
		return 22
	}
	return u.Port
}

// openSSHConn is a running ssh -s HOST sftp and the SFTP client on its
// stdin and stdout.
type openSSHConn struct {
	cmd    *exec.Cmd
	stderr *limitedBuffer
	exited chan struct{} // closed when ssh has exited
	err    error         // why, set before exited is closed
}

func (c *openSSHConn) kill() {
	c.cmd.Process.Kill()
	<-c.exited
}

// startOpenSSH starts ssh with the SFTP subsystem on the host.
func (d *dialer) startOpenSSH(ctx context.Context, legacy bool) (*openSSHConn, *sftp.Client, error) {
	known, err := openSSHAlgorithms()
	if err != nil {
		return nil, nil, fmt.Errorf("the OpenSSH client (--ssh-client openssh): %w", err)
	}
	args := d.openSSHArgs(known, legacy)
	oc, sc, err := d.spawnOpenSSH(ctx, args, sftpPacket)
	if err != nil {
		return nil, nil, err
	}
	if _, ok := sc.HasExtension("limits@openssh.com"); ok {
		// As startSFTP: larger reads for a server that takes them.
		// Closing the client ends ssh's only session, so start over.
		sc.Close()
		oc.kill()
		return d.spawnOpenSSH(ctx, args, sftpLargePacket)
	}
	return oc, sc, nil
}

// spawnOpenSSH runs ssh with args and starts an SFTP client with reads of
// packet bytes on it.
func (d *dialer) spawnOpenSSH(ctx context.Context, args []string, packet int) (*openSSHConn, *sftp.Client, error) {
	cmd := exec.Command(openSSHProgram, args...)
	// Its own process group: a ^C on the terminal reaches xen2kvm, which
	// stops ssh itself; and ssh dies with xen2kvm.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	oc := &openSSHConn{cmd: cmd, stderr: &limitedBuffer{max: 64 << 10}, exited: make(chan struct{})}
	cmd.Stderr = oc.stderr
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	r, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s: %w", openSSHProgram, err)
	}
	go func() {
		oc.err = cmd.Wait()
		close(oc.exited)
	}()
	fail := func(err error) error {
		oc.kill()
		msg := fmt.Sprintf("%s %s: %v", openSSHProgram, strings.Join(args, " "), err)
		if s := strings.TrimSpace(oc.stderr.String()); s != "" {
			msg += ": " + s
		}
		return errors.New(msg)
	}
	type result struct {
		sc  *sftp.Client
		err error
	}
	started := make(chan result, 1)
	go func() {
		sc, err := sftp.NewClientPipe(bufio.NewReaderSize(r, readBuffer), w,
			sftp.UseConcurrentReads(true), sftp.MaxConcurrentRequestsPerFile(sftpInFlight), sftp.MaxPacketUnchecked(packet))
		started <- result{sc, err}
	}()
	var res result
	select {
	case res = <-started:
	case <-ctx.Done():
		return nil, nil, fail(ctx.Err())
	case <-time.After(2 * d.opts.dialTimeout()):
		return nil, nil, fail(errors.New("no SFTP answer"))
	}
	if res.err != nil {
		if errors.Is(res.err, io.EOF) || errors.Is(res.err, io.ErrUnexpectedEOF) {
			<-oc.exited
			res.err = fmt.Errorf("ssh ended before SFTP started (%v)", oc.err)
		}
		return nil, nil, fail(res.err)
	}
	return oc, res.sc, nil
}
