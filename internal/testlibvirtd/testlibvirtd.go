// Package testlibvirtd starts a private libvirt daemon for tests: not the
// machine's system daemon, but libvirtd in session mode under a user of
// its own (xen2kvm-libvirt, created when missing; the current user when
// the tests do not run as root), with its socket, configuration, state
// and cache in a temporary folder and its storage pools there too. The
// daemon and every QEMU it started are stopped when the test ends,
// whatever happens; the daemon also dies with the test binary, and when
// the binary dies without running its cleanups (go test's timeout panics)
// the next Start reaps the QEMUs and folder it left.
//
//	d := testlibvirtd.Start(t)
//	d.DirPool(t, "default")
//	// migrate --to d.URI ...
//	vols := d.Volumes(t, "default")
//
// Session mode keeps everything private: the daemon reads and writes
// only below $HOME and the $XDG_* folders, which point into the
// temporary folder. Its QEMU runs as the daemon's user, which has no
// access to /dev/kvm, so guests get domain type qemu (TCG).
package testlibvirtd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// User is the user the daemon runs as when the tests run as root.
const User = "xen2kvm-libvirt"

// Daemon is a running private libvirtd.
type Daemon struct {
	// URI connects to it: qemu+unix:///session?socket=SOCKET.
	URI string
	// Socket is its unix socket.
	Socket string
	// Dir holds its folders and pools.
	Dir string
	// UID and GID it runs as.
	UID, GID int

	env    []string
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
	mounts []string
}

// Start starts a private daemon for the test.
func Start(t testing.TB) *Daemon {
	t.Helper()
	testutil.NeedTool(t, "libvirtd")
	testutil.NeedTool(t, "virsh")
	d := &Daemon{UID: os.Getuid(), GID: os.Getgid()}
	if os.Geteuid() == 0 {
		u, err := lookupOrCreate(User)
		if err != nil {
			t.Fatalf("testlibvirtd: %v", err)
		}
		d.UID, _ = strconv.Atoi(u.Uid)
		d.GID, _ = strconv.Atoi(u.Gid)
	}
	reapOrphans()
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	d.Dir = dir
	// Who owns the folder: a test binary that dies without its cleanups
	// (a test timeout panics) leaves it to the next Start to reap.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.stop(t) })
	for _, sub := range []string{"run", "config/libvirt", "cache", "home", "pools"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// QEMU's output goes to a file, not to virtlogd (which the session
	// daemon would otherwise start and leave running).
	if err := os.WriteFile(filepath.Join(dir, "config/libvirt/qemu.conf"), []byte("stdio_handler = \"file\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := chownAll(dir, d.UID, d.GID); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	d.Socket = filepath.Join(dir, "run", "libvirt", "libvirt-sock")
	d.URI = "qemu+unix:///session?socket=" + d.Socket
	d.log = filepath.Join(dir, "libvirtd.log")
	d.env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + filepath.Join(dir, "home"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "run"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "cache"),
		"LIBVIRT_LOG_OUTPUTS=3:stderr",
	}
	d.Restart(t)
	return d
}

const dirPrefix = "xen2kvm-libvirtd-"

// reapOrphans stops what daemons of test binaries that died without
// their cleanups left behind (libvirtd itself dies with its test binary;
// the QEMUs it started do not), unmounts their pools and removes their
// folders.
func reapOrphans() {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, "owner.pid"))
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 1 || syscall.Kill(pid, 0) == nil {
			continue // its test binary still runs
		}
		for _, p := range pidFiles(dir) {
			killIf(p, "qemu")
		}
		killIf(filepath.Join(dir, "run", "libvirt", "libvirtd.pid"), "libvirtd")
		if mounts, err := os.ReadFile("/proc/mounts"); err == nil {
			for _, l := range strings.Split(string(mounts), "\n") {
				if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], dir+"/") {
					exec.Command("umount", f[1]).Run()
				}
			}
		}
		os.RemoveAll(dir)
	}
}

// pidFiles are the pid files of the QEMUs a daemon in dir started.
func pidFiles(dir string) []string {
	a, _ := filepath.Glob(filepath.Join(dir, "run", "libvirt", "qemu", "run", "*.pid"))
	b, _ := filepath.Glob(filepath.Join(dir, "config", "libvirt", "qemu", "run", "*.pid"))
	return append(a, b...)
}

// killIf kills the process a pid file names when its command starts
// with comm (a pid file can outlive its process, and the pid be reused).
func killIf(pidFile, comm string) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return
	}
	if c, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); strings.HasPrefix(string(c), comm) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}

// lookupOrCreate returns the user, creating it as a system user with no
// home and no login shell when it is missing.
func lookupOrCreate(name string) (*user.User, error) {
	if u, err := user.Lookup(name); err == nil {
		return u, nil
	}
	out, err := exec.Command("useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name).CombinedOutput()
	if u, lerr := user.Lookup(name); lerr == nil {
		return u, nil // another test binary created it meanwhile
	}
	return nil, fmt.Errorf("useradd %s: %v: %s", name, err, out)
}

func chownAll(dir string, uid, gid int) error {
	return filepath.Walk(dir, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// Restart starts the daemon (again, after Kill) on the same folders;
// persistent pools with autostart come back.
func (d *Daemon) Restart(t testing.TB) {
	t.Helper()
	os.Remove(d.Socket)
	logf, err := os.OpenFile(d.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("libvirtd")
	cmd.Dir = d.Dir
	cmd.Env = d.env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if os.Geteuid() == 0 {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: uint32(d.UID), Gid: uint32(d.GID)}
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("testlibvirtd: starting libvirtd: %v", err)
	}
	d.cmd = cmd
	d.exited = make(chan struct{})
	go func() { cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		if _, err := d.virsh("version"); err == nil {
			return
		}
		select {
		case <-d.exited:
			t.Fatalf("testlibvirtd: libvirtd exited at start:\n%s", d.Log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("testlibvirtd: libvirtd did not answer on %s within a minute:\n%s", d.Socket, d.Log())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Kill kills the daemon with SIGKILL (as a crash would), leaving the
// QEMU processes it started running.
func (d *Daemon) Kill() {
	if d.cmd == nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
	d.cmd = nil
}

// Log is what the daemon logged.
func (d *Daemon) Log() string {
	b, _ := os.ReadFile(d.log)
	return string(b)
}

func (d *Daemon) virsh(args ...string) (string, error) {
	cmd := exec.Command("virsh", append([]string{"-q", "-c", d.URI}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("virsh -c %s %s: %v: %s", d.URI, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Virsh runs virsh against the daemon and returns its output; the test
// fails when virsh does.
func (d *Daemon) Virsh(t testing.TB, args ...string) string {
	t.Helper()
	out, err := d.virsh(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// VirshErr runs virsh against the daemon and returns its output and error.
func (d *Daemon) VirshErr(args ...string) (string, error) { return d.virsh(args...) }

// Volumes lists the names of the volumes in the daemon's pool, as virsh
// vol-list gives them; the test fails when virsh does.
func (d *Daemon) Volumes(t testing.TB, pool string) []string {
	t.Helper()
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(d.Virsh(t, "vol-list", pool)), "\n") {
		if f := strings.Fields(l); len(f) > 0 {
			names = append(names, f[0])
		}
	}
	return names
}

// DirPool defines, starts and autostarts a persistent directory pool in
// the daemon's folder, and returns its path.
func (d *Daemon) DirPool(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(d.Dir, "pools", name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Lchown(p, d.UID, d.GID)
	d.definePool(t, name, p)
	return p
}

// TmpfsPool is DirPool on a tmpfs of sizeMiB MiB (root only), for tests
// that fill the pool.
func (d *Daemon) TmpfsPool(t testing.TB, name string, sizeMiB int) string {
	t.Helper()
	testutil.NeedRoot(t, "mounting a tmpfs for a full storage pool needs root")
	p := filepath.Join(d.Dir, "pools", name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := fmt.Sprintf("size=%dm,mode=0755,uid=%d,gid=%d", sizeMiB, d.UID, d.GID)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", opts, "xen2kvm-test", p).CombinedOutput(); err != nil {
		t.Fatalf("mount -t tmpfs %s: %v: %s", p, err, out)
	}
	d.mounts = append(d.mounts, p)
	d.definePool(t, name, p)
	return p
}

func (d *Daemon) definePool(t testing.TB, name, path string) {
	t.Helper()
	d.Virsh(t, "pool-define-as", name, "dir", "--target", path)
	d.Virsh(t, "pool-start", name)
	d.Virsh(t, "pool-autostart", name)
}

// stop destroys the daemon's domains, stops it and the QEMU processes it
// started, and removes its folder.
func (d *Daemon) stop(t testing.TB) {
	if d.cmd != nil {
		if out, err := d.virsh("list", "--name"); err == nil {
			for _, n := range strings.Fields(out) {
				d.virsh("destroy", n)
			}
		}
	}
	// QEMU processes survive a killed daemon: their pid files say which.
	for _, f := range pidFiles(d.Dir) {
		killIf(f, "qemu")
	}
	if d.cmd != nil {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
			<-d.exited
		}
		d.cmd = nil
	}
	if t.Failed() {
		t.Logf("testlibvirtd: daemon log:\n%s", tail(d.Log(), 40))
	}
	for _, m := range d.mounts {
		if out, err := exec.Command("umount", m).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", m, err, out)
		}
	}
	if err := os.RemoveAll(d.Dir); err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Errorf("testlibvirtd: %v", err)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
