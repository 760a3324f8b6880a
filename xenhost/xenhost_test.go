package xenhost_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

const cfgTmpl = `name = "NAME"
memory = 256
vcpus = 1
bootloader = "/usr/bin/pygrub"
disk = [ "tap:aio:IMG,xvda,w" ]
vif = [ "mac=00:16:3e:11:22:33,bridge=xenbr0" ]
`

func guestCfg(name, img string) []byte {
	return []byte(strings.NewReplacer("NAME", name, "IMG", img).Replace(cfgTmpl))
}

// sparseImage writes a sparse image with data at a few places.
func sparseImage(t *testing.T, size int64) (string, []byte) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f := testutil.SparseFile(t, p, size)
	defer f.Close()
	data := make([]byte, 3<<20)
	rand.Read(data)
	for _, off := range []int64{0, size / 3, size - int64(len(data))} {
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
	}
	return p, data
}

func dial(t *testing.T, srv *testsshd.Server, mod func(*xenhost.Options)) (*xenhost.Host, []string) {
	t.Helper()
	u, err := xenhost.ParseURL(srv.URL(""))
	if err != nil {
		t.Fatal(err)
	}
	var warns []string
	opts := srv.ClientOptions()
	opts.Warn = func(s string) { warns = append(warns, s) }
	if mod != nil {
		mod(&opts)
	}
	h, err := xenhost.Dial(context.Background(), u, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h, warns
}

func TestLegacyHostDiscoverAndRead(t *testing.T) {
	img, data := sparseImage(t, 64<<20)
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
		{Name: "web01", Config: guestCfg("web01", img)},
		{Name: "db02", Config: guestCfg("db02", img), Managed: true},
		{Name: "app03", Config: guestCfg("app03", img), Running: true, NoFile: true},
	}, CBCOnly: true})
	h, warns := dial(t, srv, nil)

	// OpenSSH 4.3's set, with CBC ciphers only: the legacy algorithms
	// were negotiated and named.
	alg, err := h.Algorithms()
	if err != nil {
		t.Fatal(err)
	}
	if alg.KeyExchange != ssh.InsecureKeyExchangeDH14SHA1 || alg.HostKey != ssh.KeyAlgoRSA || alg.Read.Cipher != ssh.InsecureCipherAES128CBC {
		t.Errorf("negotiated %+v, want group14-sha1, ssh-rsa, aes128-cbc", alg)
	}
	if len(warns) != 1 || !strings.Contains(warns[0], "diffie-hellman-group14-sha1") || !strings.Contains(warns[0], "ssh-rsa") || !strings.Contains(warns[0], "aes128-cbc") {
		t.Errorf("warnings %q: want one naming the legacy algorithms", warns)
	}

	ctx := context.Background()
	// Beside the guests' configs: a broken one, a script, an example.
	os.WriteFile(filepath.Join(srv.ConfigDir, "broken"), []byte("name = \"broken\"\nmemory = lots\n"), 0o644)
	os.WriteFile(filepath.Join(srv.ConfigDir, "qemu-ifup"), []byte("#!/bin/sh\n"), 0o755)
	os.WriteFile(filepath.Join(srv.ConfigDir, "xmexample1"), []byte("name = \"ExampleDomain\"\n"), 0o644)
	guests, err := h.Discover(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*xenhost.Guest{}
	for _, g := range guests {
		got[g.Name] = g
		if g.ConfigErr != nil && g.Name != "broken" {
			t.Errorf("%s: %v", g.Name, g.ConfigErr)
		}
	}
	if len(guests) != 4 || got["broken"] == nil || got["broken"].ConfigErr == nil || !strings.Contains(got["broken"].ConfigErr.Error(), "broken") {
		t.Errorf("Discover: %d guests, broken: %+v", len(guests), got["broken"])
	}
	for name, from := range map[string]string{"web01": "xm create --dryrun " + filepath.Join(srv.ConfigDir, "web01"), "db02": "xm list -l db02", "app03": "xm list -l app03"} {
		g := got[name]
		if g == nil {
			t.Fatalf("Discover: no %s in %v", name, guests)
		}
		if g.ConfigFrom != from {
			t.Errorf("%s: config from %q, want %q", name, g.ConfigFrom, from)
		}
		if g.Domain == nil || g.Domain.MemoryMiB != 256 || len(g.Domain.Disks) != 1 || g.Domain.Disks[0].Source != img {
			t.Errorf("%s: domain %+v", name, g.Domain)
		}
	}
	if !got["app03"].Running() || got["web01"].Running() || got["db02"].Running() {
		t.Errorf("running: app03 %v web01 %v db02 %v", got["app03"].Running(), got["web01"].Running(), got["db02"].Running())
	}
	g, err := h.Guest(ctx, "app03")
	if err != nil {
		t.Fatal(err)
	}
	var re *xenhost.RunningError
	if err := g.CheckNotRunning(h.URL.Addr()); !errors.As(err, &re) || re.Name != "app03" || !strings.Contains(err.Error(), srv.Addr) {
		t.Errorf("running guest: %v", err)
	}
	if _, err := h.Guest(ctx, "nope"); !errors.Is(err, xenhost.ErrNoGuest) || !strings.Contains(err.Error(), "web01") {
		t.Errorf("unknown guest: %v", err)
	}
	// Only read-only xm queries ran.
	log, _ := os.ReadFile(srv.XMLog)
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if !strings.HasPrefix(line, "list") && !strings.HasPrefix(line, "create --dryrun ") {
			t.Errorf("xm %s ran on the host", line)
		}
	}

	d, err := h.OpenDisk(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if d.Size() != 64<<20 {
		t.Errorf("size %d", d.Size())
	}
	want, _ := os.ReadFile(img)
	gotData := make([]byte, len(want))
	if _, err := d.ReadAt(gotData, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gotData, want) {
		t.Error("the disk read over SFTP differs from the file")
	}
	small := make([]byte, 100)
	if _, err := d.ReadAt(small, int64(len(want))/3+5); err != nil || !bytes.Equal(small, data[5:105]) {
		t.Errorf("small read: %v", err)
	}
	if n, err := d.ReadAt(small, d.Size()-50); err != io.EOF || n != 50 {
		t.Errorf("read past the end: %d, %v", n, err)
	}
	if _, err := d.WriteAt(small, 0); !errors.Is(err, xenhost.ErrReadOnly) {
		t.Errorf("WriteAt: %v", err)
	}
	if h.BytesRead() < int64(len(want)) {
		t.Errorf("BytesRead %d < %d", h.BytesRead(), len(want))
	}
}

func TestUnknownHostKey(t *testing.T) {
	srv := testsshd.Start(t, testsshd.Options{})
	u, _ := xenhost.ParseURL(srv.URL(""))
	kh := filepath.Join(t.TempDir(), "ssh", "known_hosts")
	opts := xenhost.Options{Identities: []string{srv.KeyPath}, KnownHosts: kh, NoAgent: true, Warn: func(string) {}}
	_, err := xenhost.Dial(context.Background(), u, opts)
	var hke *xenhost.HostKeyError
	if !errors.As(err, &hke) || !errors.Is(err, xenhost.ErrUnknownHostKey) {
		t.Fatalf("unknown host: %v, want a HostKeyError", err)
	}
	if fp := ssh.FingerprintSHA256(srv.HostKey); hke.Fingerprint != fp || !strings.Contains(err.Error(), fp) {
		t.Errorf("error %q does not give the fingerprint %s", err, fp)
	}
	if _, err := os.Stat(kh); err == nil {
		t.Error("a refused host key was written to known_hosts")
	}
	// --accept-new-host-key adds it; the next connection checks it.
	opts.AcceptNewHostKey = true
	h, err := xenhost.Dial(context.Background(), u, opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Close()
	opts.AcceptNewHostKey = false
	h, err = xenhost.Dial(context.Background(), u, opts)
	if err != nil {
		t.Fatalf("after accepting the key: %v", err)
	}
	h.Close()
	// Another key for the same host is refused even with
	// --accept-new-host-key.
	other := testsshd.Start(t, testsshd.Options{})
	data, _ := os.ReadFile(other.KnownHostsPath)
	os.WriteFile(kh, bytes.ReplaceAll(data, []byte(fmt.Sprintf("]:%d ", other.Port)), []byte(fmt.Sprintf("]:%d ", srv.Port))), 0o600)
	opts.AcceptNewHostKey = true
	if _, err := xenhost.Dial(context.Background(), u, opts); !errors.Is(err, xenhost.ErrHostKeyChanged) {
		t.Errorf("changed key: %v", err)
	}
}

// copyWhile converts the remote disk to qcow2 with diskimg.Convert,
// calling fault once after the first chunk was copied.
func copyWhile(t *testing.T, h *xenhost.Host, img, out string, fault func()) error {
	t.Helper()
	ctx := context.Background()
	d, err := h.OpenDisk(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	var once sync.Once
	return diskimg.Convert(ctx, d, out, diskimg.OutputQCOW2, diskimg.WithWorkers(4),
		diskimg.WithProgress(func(done, total int64) {
			if done > 0 {
				once.Do(fault)
			}
		}))
}

// copyAcrossDrop copies img from the host into a qcow2, killing the
// server's sessions once the copy is under way: the copy must reconnect
// and finish, and qemu-img compare must find the output equal to img.
func copyAcrossDrop(t *testing.T, srv *testsshd.Server, h *xenhost.Host, img string) {
	t.Helper()
	qemuImg := testutil.NeedTool(t, "qemu-img")
	out := filepath.Join(t.TempDir(), "out.qcow2")
	killed := 0
	if err := copyWhile(t, h, img, out, func() { killed = srv.KillSessions() }); err != nil {
		t.Fatalf("copy across a dropped connection: %v", err)
	}
	if killed == 0 || h.Reconnects() == 0 {
		t.Fatalf("killed %d sessions, %d reconnects: the fault did not happen", killed, h.Reconnects())
	}
	if b, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", img, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v\n%s", err, b)
	}
}

func TestReconnectMidCopy(t *testing.T) {
	img, _ := sparseImage(t, 256<<20)
	before := testutil.HashFile(t, img)
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, func(o *xenhost.Options) { o.RetryDelay = 100 * time.Millisecond })
	copyAcrossDrop(t, srv, h, img)
	if testutil.HashFile(t, img) != before {
		t.Error("the source changed")
	}
}

func TestHostGoneMidCopy(t *testing.T) {
	img, _ := sparseImage(t, 256<<20)
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, func(o *xenhost.Options) { o.RetryDelay = 50 * time.Millisecond; o.Retries = 3 })
	dir := t.TempDir()
	out := filepath.Join(dir, "out.qcow2")
	err := copyWhile(t, h, img, out, srv.Stop)
	var ce *xenhost.ConnError
	if !errors.Is(err, xenhost.ErrUnreachable) || !errors.As(err, &ce) || ce.Attempts != 3 || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("copy from a host that went away: %v, want ErrUnreachable after 3 attempts naming %s", err, srv.Addr)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("the failed copy left %v", ents)
	}
}

// TestBlockDeviceAndFileFallback reads a phy: disk (a loop device) over
// SFTP, whose size SFTP does not give, and reads a guest's config from
// its file when the host has no xm.
func TestBlockDeviceAndFileFallback(t *testing.T) {
	testutil.NeedRoot(t, "loop devices need root")
	img, _ := sparseImage(t, 40<<20+512*3) // not a power of two
	loop := testutil.Loop(t, img, "--read-only")
	srv := testsshd.Start(t, testsshd.Options{NoXM: true, Guests: []testsshd.Guest{{Name: "web01", Config: guestCfg("web01", loop)}}})
	h, _ := dial(t, srv, nil)
	ctx := context.Background()
	g, err := h.Guest(ctx, "web01")
	if err != nil {
		t.Fatal(err)
	}
	if g.ConfigFrom != "sftp "+filepath.Join(srv.ConfigDir, "web01") || g.Running() || len(g.Warnings) == 0 || !strings.Contains(g.Warnings[0], "xm list") {
		t.Errorf("without xm: config from %q, warnings %q", g.ConfigFrom, g.Warnings)
	}
	d, err := h.OpenDisk(ctx, g.Domain.Disks[0].Source)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !d.BlockDevice() || d.Size() != 40<<20+512*3 {
		t.Fatalf("block device: %v, size %d, want %d", d.BlockDevice(), d.Size(), 40<<20+512*3)
	}
	want, _ := os.ReadFile(img)
	got := make([]byte, len(want))
	if _, err := d.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("the block device read over SFTP differs from its file")
	}
}

// TestAgentAuth authenticates with a key held only by an ssh-agent.
func TestAgentAuth(t *testing.T) {
	srv := testsshd.Start(t, testsshd.Options{})
	data, err := os.ReadFile(srv.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParseRawPrivateKey(data)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go agent.ServeAgent(keyring, c)
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
	t.Setenv("HOME", t.TempDir()) // no ~/.ssh/id_*
	u, _ := xenhost.ParseURL(srv.URL(""))
	h, err := xenhost.Dial(context.Background(), u, xenhost.Options{KnownHosts: srv.KnownHostsPath, Warn: func(string) {}})
	if err != nil {
		t.Fatalf("with the key in the agent only: %v", err)
	}
	h.Close()
	t.Setenv("SSH_AUTH_SOCK", "")
	if _, err := xenhost.Dial(context.Background(), u, xenhost.Options{KnownHosts: srv.KnownHostsPath, Warn: func(string) {}}); !errors.Is(err, xenhost.ErrAuth) {
		t.Errorf("without any key: %v, want ErrAuth", err)
	}
}

// TestSparseCopyStaysSparse: SFTP cannot tell where a file's holes are,
// so the copy reads them as zeros; the zero blocks are dropped before
// they are written, and the output (raw or qcow2) allocates about what
// the source has data for, not its size.
func TestSparseCopyStaysSparse(t *testing.T) {
	const size = 256 << 20
	img, _ := sparseImage(t, size) // 3 pieces of 3 MiB of data
	srv := testsshd.Start(t, testsshd.Options{})
	h, _ := dial(t, srv, nil)
	for _, format := range []string{diskimg.OutputRaw, diskimg.OutputQCOW2} {
		out := filepath.Join(t.TempDir(), "out."+format)
		d, err := h.OpenDisk(context.Background(), img)
		if err != nil {
			t.Fatal(err)
		}
		err = diskimg.Convert(context.Background(), d, out, format)
		d.Close()
		if err != nil {
			t.Fatal(err)
		}
		var st syscall.Stat_t
		if err := syscall.Stat(out, &st); err != nil {
			t.Fatal(err)
		}
		if alloc := st.Blocks * 512; alloc > 16<<20 {
			t.Errorf("%s: %d bytes allocated for 9 MiB of data in a %d byte disk", format, alloc, size)
		}
	}
	if h.BytesRead() < 2*size {
		t.Errorf("read %d bytes, want the whole disk twice (holes included)", h.BytesRead())
	}
}
