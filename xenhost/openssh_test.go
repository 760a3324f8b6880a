package xenhost_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// sftpProcesses lists the ssh -s sftp clients running against srv.
func sftpProcesses(t *testing.T, srv *testsshd.Server) []string {
	t.Helper()
	out, _ := exec.Command("pgrep", "-f", "-x", "ssh .* -p "+strconv.Itoa(srv.Port)+" .*-s 127.0.0.1 sftp").Output()
	return strings.Fields(string(out))
}

// bytesRead is what process pid has read so far (rchar of /proc/PID/io):
// for ssh, the bytes off its socket (the SFTP requests it reads from its
// stdin, and its config and key, are a few KiB).
func bytesRead(t *testing.T, pid string) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + pid + "/io")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	t.Fatalf("no rchar in /proc/%s/io", pid)
	return 0
}

// TestOpenSSHClient reads a disk through the system's ssh client, with
// and without compression, from a host with OpenSSH 4.3's algorithms: the
// data is the file's, the xm queries still work, and the ssh process ends
// with the connection.
func TestOpenSSHClient(t *testing.T) {
	testutil.NeedTool(t, "ssh")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	img, _ := sparseImage(t, 96<<20)
	before := testutil.HashFile(t, img)
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: "web01", Config: guestCfg("web01", img)}}})
	for _, compress := range []bool{false, true} {
		t.Run("compression="+strconv.FormatBool(compress), func(t *testing.T) {
			logStart := len(srv.Log())
			h, _ := dial(t, srv, func(o *xenhost.Options) {
				o.OpenSSH, o.Compression, o.SSHConfig = true, compress, os.DevNull
			})
			procs := sftpProcesses(t, srv)
			if len(procs) != 1 {
				t.Fatalf("ssh -s sftp processes for one connection: %v, want 1", procs)
			}
			ctx := context.Background()
			g, err := h.Guest(ctx, "web01")
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := h.ReadFile(ctx, filepath.Join(srv.ConfigDir, "web01"))
			if err != nil || !strings.Contains(string(cfg), `name = "web01"`) {
				t.Fatalf("config over ssh's SFTP: %q, %v", cfg, err)
			}
			out := filepath.Join(t.TempDir(), "out.qcow2")
			if err := copyWhile(t, h, g.Domain.Disks[0].Source, out, func() {}); err != nil {
				t.Fatal(err)
			}
			if b, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", img, out).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img compare: %v\n%s", err, b)
			}
			if h.BytesRead() < 96<<20 {
				t.Errorf("BytesRead %d, want the whole disk", h.BytesRead())
			}
			// sshd logs the subsystem session of ssh beside the Go
			// connection's exec sessions.
			if log := srv.Log()[logStart:]; !strings.Contains(log, "subsystem 'sftp'") {
				t.Errorf("sshd saw no SFTP subsystem session:\n%s", log)
			}
			// What came over the wire: the 96 MiB disk (9 MiB of data,
			// the rest zeros) in full without compression, a fraction
			// with.
			wire := bytesRead(t, procs[0])
			if compress && wire > 32<<20 || !compress && wire < 96<<20 {
				t.Errorf("ssh read %d bytes for the 96 MiB disk with compression %v", wire, compress)
			}
			t.Logf("ssh read %d bytes off the connection", wire)
			h.Close()
			deadline := time.Now().Add(5 * time.Second)
			for len(sftpProcesses(t, srv)) != 0 && time.Now().Before(deadline) {
				time.Sleep(50 * time.Millisecond)
			}
			if left := sftpProcesses(t, srv); len(left) != 0 {
				t.Errorf("ssh processes %v left after Close", left)
			}
		})
	}
	if testutil.HashFile(t, img) != before {
		t.Error("the source changed")
	}
}

// TestOpenSSHReconnect drops the connection mid-copy under the OpenSSH
// client: the reads resume on a new ssh process.
func TestOpenSSHReconnect(t *testing.T) {
	testutil.NeedTool(t, "ssh")
	img, _ := sparseImage(t, 256<<20)
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, func(o *xenhost.Options) {
		o.OpenSSH, o.SSHConfig, o.RetryDelay = true, os.DevNull, 100*time.Millisecond
	})
	copyAcrossDrop(t, srv, h, img)
}

// TestOpenSSHRefusesWhatGoRefuses: ssh checks the same known_hosts, so a
// host whose key known_hosts does not have is refused by the Go
// connection first, and a key ssh cannot use fails with ssh's argv and
// its message.
func TestOpenSSHRefusesWhatGoRefuses(t *testing.T) {
	testutil.NeedTool(t, "ssh")
	srv := testsshd.Start(t, testsshd.Options{})
	u, _ := xenhost.ParseURL(srv.URL(""))
	opts := xenhost.Options{Identities: []string{srv.KeyPath}, KnownHosts: filepath.Join(t.TempDir(), "known_hosts"),
		NoAgent: true, OpenSSH: true, SSHConfig: os.DevNull, Warn: func(string) {}}
	if _, err := xenhost.Dial(context.Background(), u, opts); err == nil || !strings.Contains(err.Error(), "is not in") {
		t.Errorf("unknown host key under --ssh-client openssh: %v", err)
	}
	// When ssh itself fails (here its config sends it through a proxy
	// that exits), the error has ssh's argv and what it said.
	cfg := filepath.Join(t.TempDir(), "ssh_config")
	os.WriteFile(cfg, []byte("ProxyCommand /bin/false\n"), 0o600)
	opts.KnownHosts, opts.SSHConfig = srv.KnownHostsPath, cfg
	_, err := xenhost.Dial(context.Background(), u, opts)
	if err == nil || !strings.Contains(err.Error(), "ssh -F "+cfg) || !strings.Contains(err.Error(), "-s 127.0.0.1 sftp") {
		t.Errorf("ssh failing: %v, want its argv", err)
	}
}
