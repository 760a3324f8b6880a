package warm_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/warm"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

const cfg = `name = "db01"
memory = 256
vcpus = 1
bootloader = "/usr/bin/pygrub"
disk = [ "tap:aio:IMG1,xvda,w", "file:IMG2,xvdb,w" ]
vif = [ "mac=00:16:3e:11:22:33,bridge=xenbr0" ]
`

// TestSession: pass 1 of two disks while the guest writes one of them;
// xm shutdown -w stops the guest (the stand-in host tells the test,
// which stops its writer); pass 2 makes both copies equal the final
// images; a second session resumes from pass 2, moves nothing and
// writes the output images again from its copies; with a
// copy gone, pass 1 runs again. The output images pass 1 writes beside
// the copies and pass 2 patches equal the final images. Waiting for a guest the user stops, and
// giving up waiting, are checked too.
func TestSession(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const bs = 256 << 10
	img1 := mkImage(t, 32<<20, bs)
	img2 := mkImage(t, 8<<20+4096, bs)
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
		{Name: "db01", Config: []byte(strings.NewReplacer("IMG1", img1, "IMG2", img2).Replace(cfg)), Running: true, Managed: true},
	}})
	h := dialHost(t, srv)
	ctx := context.Background()
	disks := []warm.Disk{{Source: img1, Target: "xvda"}, {Source: img2, Target: "xvdb"}}
	dir := filepath.Join(t.TempDir(), ".db01.warm")
	var said []string
	var mu sync.Mutex
	newSession := func() *warm.Session {
		s := &warm.Session{Host: h, Guest: "db01", Dir: dir, Opts: warm.Options{BlockSize: bs}, Poll: 100 * time.Millisecond, OutputQCOW2: true,
			Say: func(m string) { mu.Lock(); said = append(said, m); mu.Unlock() }}
		if err := s.Open(disks); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}

	g := startGuest(t, img1, bs, 7)
	s := newSession()
	if s.Resumed {
		t.Error("a new session resumed")
	}
	// A second session on the same folder is refused while one is open.
	if err := (&warm.Session{Host: h, Guest: "db01", Dir: dir}).Open(disks); err == nil || !strings.Contains(err.Error(), "another warm migration") {
		t.Errorf("second session: %v", err)
	}
	if err := s.Pass1(ctx); err != nil {
		t.Fatal(err)
	}
	// Pass 1 took a hash the host named (the sums and the host's hashes
	// agree in pass 2 below: xvdb, unchanged, moves nothing).
	if a := s.State.HashAlgo; a != xenhost.HashMD5 && a != xenhost.HashSHA1 {
		t.Errorf("pass 1 hashed with %q", a)
	}
	// The host (this machine) said how many CPUs it has: the helpers
	// hashing each disk follow it.
	if s.State.HostCPUs != runtime.NumCPU() {
		t.Errorf("the host has %d CPUs, the state says %d", runtime.NumCPU(), s.State.HostCPUs)
	}
	streams := warm.HashStreams(s.State.HostCPUs, 2)
	if err := s.Pass2(ctx); !errors.Is(err, warm.ErrStillRunning) {
		t.Errorf("pass 2 with the guest running: %v", err)
	}
	// The guest stops when the host asks it to.
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for !srv.ShutdownRequested("db01") {
			time.Sleep(50 * time.Millisecond)
		}
		for i := 0; i < 5; i++ {
			g.write(t)
		}
		g.halt()
		srv.SetRunning("db01", false)
	}()
	if err := s.Stop(ctx, true, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	<-stopped
	if s.State.Stopped.IsZero() {
		t.Error("no stop time recorded")
	}
	if err := s.Pass2(ctx); err != nil {
		t.Fatal(err)
	}
	check := func() {
		t.Helper()
		for _, d := range disks {
			local, ok := s.Local(d.Source)
			if !ok {
				t.Fatalf("no local copy of %s", d.Source)
			}
			if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", d.Source, local).CombinedOutput(); err != nil {
				t.Errorf("%s: copy differs from the final image: %v\n%s", d.Target, err, out)
			}
		}
	}
	check()
	// The output images pass 1 wrote and pass 2 patched (OutputQCOW2)
	// are the final images too, and sound qcow2.
	checkOutputs := func() {
		t.Helper()
		for _, d := range disks {
			out, ok := s.Output(d.Source)
			if !ok {
				t.Fatalf("%s: no output image", d.Target)
			}
			if err := out.Writer.Close(); err != nil {
				t.Fatal(err)
			}
			if o, err := exec.Command(qemuImg, "check", "-f", "qcow2", out.Path).CombinedOutput(); err != nil {
				t.Errorf("%s: qemu-img check: %v\n%s", d.Target, err, o)
			}
			if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", d.Source, out.Path).CombinedOutput(); err != nil {
				t.Errorf("%s: the output image differs from the final image: %v\n%s", d.Target, err, o)
			}
			if _, again := s.Output(d.Source); again {
				t.Errorf("%s: the output image was handed over twice", d.Target)
			}
		}
	}
	checkOutputs()
	p2 := s.State.Pass2
	// Stop started pass 2's helpers on the host before the guest
	// stopped, HashStreams per disk, and pass 2 ran them.
	if a, b := p2.Disks["xvda"].Prepared, p2.Disks["xvdb"].Prepared; a != streams || b != streams {
		t.Errorf("pass 2 used %d and %d helpers started ahead, want %d each", a, b, streams)
	}
	if p2.Disks["xvdb"].Changed != 0 || p2.Disks["xvda"].Changed == 0 || p2.BytesRead() > p2.Disks["xvda"].Changed*bs {
		t.Errorf("pass 2: %+v", p2.Disks)
	}
	log, _ := os.ReadFile(srv.XMLog)
	if !strings.Contains(string(log), "shutdown -w db01") {
		t.Errorf("xm log has no shutdown -w db01:\n%s", log)
	}
	s.Close()

	// Interrupted after pass 2 (or between the passes): a new session
	// resumes, pass 2 moves nothing.
	s = newSession()
	if !s.Resumed {
		t.Fatal("the second session did not resume")
	}
	before := h.BytesRead()
	if err := s.Pass1(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass2(ctx); err != nil {
		t.Fatal(err)
	}
	if n := h.BytesRead() - before; n != 0 {
		t.Errorf("resumed session read %d bytes", n)
	}
	// It wrote the output images again from its copies (an image lives
	// only in its run), before the stop.
	check()
	checkOutputs()
	s.Close()

	// A copy gone: pass 1 again.
	os.Remove(filepath.Join(dir, "xvdb.img"))
	s = newSession()
	if s.Resumed {
		t.Error("resumed without the copy of xvdb")
	}
	if err := s.Pass1(ctx); err != nil {
		t.Fatal(err)
	}
	// Zero blocks are not moved: xvdb has data in a quarter of it.
	if n, xvdb := s.State.Pass1.BytesRead(), s.State.Pass1.Disks["xvdb"].BytesRead; n == 0 || n >= 32<<20+8<<20+4096 || xvdb > 3<<20 || xvdb < 2<<20-bs {
		t.Errorf("pass 1 again read %d bytes, %d of them of xvdb", n, xvdb)
	}

	// The guest runs again; without --shutdown-source the session waits
	// for the user to stop it, and says so; a bounded wait gives up.
	srv.SetRunning("db01", true)
	if err := s.Stop(ctx, false, 0, 300*time.Millisecond); !errors.Is(err, warm.ErrStillRunning) {
		t.Errorf("bounded wait: %v", err)
	}
	go func() { time.Sleep(500 * time.Millisecond); srv.SetRunning("db01", false) }()
	if err := s.Stop(ctx, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass2(ctx); err != nil {
		t.Fatal(err)
	}
	check()
	mu.Lock()
	joined := strings.Join(said, "\n")
	mu.Unlock()
	for _, want := range []string{"shutting db01 down", "resuming the warm migration", "cannot be used (its copy of xvdb is gone)", "waiting for db01 to stop"} {
		if !strings.Contains(joined, want) {
			t.Errorf("messages lack %q:\n%s", want, joined)
		}
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("session folder left: %v", err)
	}
}

// TestSessionBlockDevice: a phy: disk (a loop device on the stand-in
// host) migrates warm: pass 1 finds its size from the device (SFTP gives
// a device none), the host's helper hashes the device itself, and after
// the "guest" wrote through the device and stopped, pass 2 moves only
// the changed blocks; the copy and the output image equal the device
// (qemu-img compare), whose size is not a multiple of the block size.
func TestSessionBlockDevice(t *testing.T) {
	testutil.NeedRoot(t, "loop devices need root")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const bs = 1 << 20
	const size = 24<<20 + 512*3
	loop := testutil.Loop(t, mkImage(t, size, bs))
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
		{Name: "db01", Config: []byte("name = \"db01\"\nmemory = 256\nbootloader = \"/usr/bin/pygrub\"\ndisk = [ \"phy:" + loop + ",xvda,w\" ]\n"), Running: true, Managed: true},
	}})
	h := dialHost(t, srv)
	ctx := context.Background()
	s := &warm.Session{Host: h, Guest: "db01", Dir: filepath.Join(t.TempDir(), ".db01.warm"), Opts: warm.Options{BlockSize: bs}, OutputQCOW2: true}
	if err := s.Open([]warm.Disk{{Source: loop, Target: "xvda"}}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Pass1(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.State.Disks[0].Size; got != size {
		t.Fatalf("pass 1 sized the device %d bytes, want %d", got, size)
	}
	st1 := s.State.Pass1.Disks["xvda"]
	if st1.Blocks != 25 || st1.Zeroed == 0 || st1.BytesRead != (st1.Blocks-st1.Zeroed)*bs {
		t.Errorf("pass 1: %+v", st1)
	}

	// The guest writes through the device: random data into four
	// blocks (the last 8 KiB span the short last block and the one
	// before), zeros over a block of data, then stops.
	dev, err := os.OpenFile(loop, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 8192)
	rand.Read(p)
	for _, off := range []int64{3*bs + 4096, 17 * bs, size - 8192} {
		if _, err := dev.WriteAt(p, off); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := dev.WriteAt(make([]byte, bs), 0); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	dev.Close()
	srv.SetRunning("db01", false)

	if err := s.Stop(ctx, false, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass2(ctx); err != nil {
		t.Fatal(err)
	}
	st2 := s.State.Pass2.Disks["xvda"]
	if st2.Hashed != 25 || st2.Changed != 5 || st2.Zeroed != 1 || st2.BytesRead != 3*bs+(size-24*bs) {
		t.Errorf("pass 2: %+v, want 5 changed blocks (one now zeros) and 4 moved, the short last one included", st2)
	}
	local, _ := s.Local(loop)
	if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", loop, local).CombinedOutput(); err != nil {
		t.Errorf("the copy differs from the device: %v\n%s", err, o)
	}
	out, ok := s.Output(loop)
	if !ok {
		t.Fatal("no output image")
	}
	if err := out.Writer.Close(); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "qcow2", loop, out.Path).CombinedOutput(); err != nil {
		t.Errorf("the output image differs from the device: %v\n%s", err, o)
	}
}

// TestSessionShutdownReturnsEarly: an xm shutdown -w that returns while
// the guest still runs (an xend whose -w does not wait) does not pass for
// a stop: the xm list that confirms it, run beside pass 2, fails pass 2
// with ErrStillRunning, which keeps pass 1 (a later run resumes); once
// the guest is off, pass 2 makes the copy equal the final image.
func TestSessionShutdownReturnsEarly(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const bs = 256 << 10
	img := mkImage(t, 8<<20, bs)
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
		{Name: "db01", Config: []byte(strings.NewReplacer("IMG1", img, "IMG2", img).Replace(cfg)), Running: true, Managed: true, ShutdownReturnsEarly: true},
	}})
	h := dialHost(t, srv)
	ctx := context.Background()
	s := &warm.Session{Host: h, Guest: "db01", Dir: filepath.Join(t.TempDir(), ".db01.warm"), Opts: warm.Options{BlockSize: bs}, Say: func(string) {}}
	if err := s.Open([]warm.Disk{{Source: img, Target: "xvda"}}); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Pass1(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Stop(ctx, true, time.Minute, 0); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if !srv.ShutdownRequested("db01") {
		t.Fatal("xm shutdown was not run")
	}
	err := s.Pass2(ctx)
	if !errors.Is(err, warm.ErrStillRunning) || !strings.Contains(err.Error(), "after xm shutdown") {
		t.Fatalf("pass 2 with the guest still running after xm shutdown -w: %v", err)
	}
	if s.State.Pass1 == nil || s.State.Pass2 != nil {
		t.Errorf("after the refused pass 2: pass 1 %v, pass 2 %v", s.State.Pass1 != nil, s.State.Pass2 != nil)
	}
	// The guest writes on, then goes off; the next stop sees it off.
	g := startGuest(t, img, bs, 3)
	for i := 0; i < 4; i++ {
		g.write(t)
	}
	g.halt()
	srv.SetRunning("db01", false)
	if err := s.Stop(ctx, true, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass2(ctx); err != nil {
		t.Fatal(err)
	}
	local, _ := s.Local(img)
	if o, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", img, local).CombinedOutput(); err != nil {
		t.Errorf("the copy differs from the final image: %v\n%s", err, o)
	}
}

// TestSessionManyDisks: a guest with more disks than helpers may run at
// once (MaxStreams: a modern sshd, as the stand-in host's, allows ten
// sessions a connection) migrates warm: helpers are started ahead for the
// first disks only, the passes work on at most that many disks at once,
// and every copy ends equal to its final image.
func TestSessionManyDisks(t *testing.T) {
	qemuImg := testutil.NeedTool(t, "qemu-img")
	const bs = 256 << 10
	var disks []warm.Disk
	cfg := "name = \"db01\"\nmemory = 256\ndisk = [ "
	for i := range 12 {
		img := mkImage(t, 2<<20, bs)
		target := fmt.Sprintf("xvd%c", 'a'+i)
		disks = append(disks, warm.Disk{Source: img, Target: target})
		cfg += fmt.Sprintf("\"file:%s,%s,w\", ", img, target)
	}
	cfg += "]\n"
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: "db01", Config: []byte(cfg), Running: true, Managed: true, StopsOnShutdown: true}}})
	h := dialHost(t, srv)
	ctx := context.Background()
	s := &warm.Session{Host: h, Guest: "db01", Dir: filepath.Join(t.TempDir(), ".db01.warm"), Opts: warm.Options{BlockSize: bs}}
	if err := s.Open(disks); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Pass1(ctx); err != nil {
		t.Fatal(err)
	}
	// The guest writes to the first and the last disk, then stops.
	for _, d := range []warm.Disk{disks[0], disks[11]} {
		p := make([]byte, 4096)
		rand.Read(p)
		w, err := os.OpenFile(d.Source, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		w.WriteAt(p, 3*bs+100)
		w.Close()
	}
	if err := s.Stop(ctx, true, time.Minute, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Pass2(ctx); err != nil {
		t.Fatal(err)
	}
	per := s.HashHelpers()
	ahead := warm.MaxStreams / per
	for i, d := range disks {
		st := s.State.Pass2.Disks[d.Target]
		if want := map[bool]int{true: per, false: 0}[i < ahead]; st.Prepared != want {
			t.Errorf("%s: %d helpers started ahead, want %d (%d a disk, at most %d)", d.Target, st.Prepared, want, per, warm.MaxStreams)
		}
		if want := map[bool]int64{true: 1, false: 0}[i == 0 || i == 11]; st.Changed != want {
			t.Errorf("%s: %d blocks changed, want %d", d.Target, st.Changed, want)
		}
		local, _ := s.Local(d.Source)
		if out, err := exec.Command(qemuImg, "compare", "-f", "raw", "-F", "raw", d.Source, local).CombinedOutput(); err != nil {
			t.Errorf("%s: the copy differs from the final image: %v\n%s", d.Target, err, out)
		}
	}
}
