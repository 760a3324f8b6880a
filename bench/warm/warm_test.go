//go:build bench

package warm

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/xen2kvm/xen2kvm/bench/benchimg"
	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/report"
)

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// TestWarmDowntime: see bench/README.md, "Warm migration".
func TestWarmDowntime(t *testing.T) {
	size, err := benchimg.ParseSize(env("SIZE", "4G"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := benchimg.ParseSize(env("DATA", "2G"))
	if err != nil {
		t.Fatal(err)
	}
	change, err := strconv.ParseFloat(env("CHANGE", "0.02"), 64)
	if err != nil {
		t.Fatal(err)
	}
	work := env("WORK", t.TempDir())
	bin := filepath.Join(work, "xen2kvm")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/xen2kvm").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	img := filepath.Join(work, "benchvm.img")
	allocated, zeros, err := benchimg.Write(img, size, data, 1)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fmt.Sprintf("name = \"benchvm\"\nmemory = 512\nvcpus = 1\nbuilder = \"hvm\"\nkernel = \"/usr/lib/xen/boot/hvmloader\"\nboot = \"c\"\n"+
		"disk = [ \"file:%s,hda,w\" ]\nvif = [ \"mac=00:16:3e:00:00:01,bridge=xenbr0\" ]\n", img)
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: "benchvm", Config: []byte(cfg), Running: true, Managed: true}}})
	url, sshFlags := srv.URL("benchvm"), srv.Flags()
	link := "loopback, no limit"
	if mbit := env("LINK", ""); mbit != "" {
		rate, err := strconv.ParseFloat(mbit, 64)
		if err != nil || rate <= 0 {
			t.Fatalf("LINK=%q: want megabits per second", mbit)
		}
		addr := startLink(t, srv.Addr, rate*1e6/8)
		url = "ssh://" + srv.User + "@" + addr + "/benchvm"
		// The relay's address is not the server's: a known_hosts of its
		// own, named by a later --known-hosts (the last one counts).
		knownHosts := filepath.Join(t.TempDir(), "known_hosts")
		if err := os.WriteFile(knownHosts, []byte(knownhosts.Line([]string{addr}, srv.HostKey)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		sshFlags = append(sshFlags, "--known-hosts", knownHosts)
		link = fmt.Sprintf("%g Mbit/s each way (LINK)", rate)
	}
	common := append(sshFlags, "--no-boot-check", "--json")
	load := func() string { b, _ := os.ReadFile("/proc/loadavg"); return string(bytes.TrimSpace(b)) }
	commit, _ := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	t.Logf("commit %s, image %d bytes virtual, %d allocated (%d of them zeros), %.1f%% of the 1 MiB blocks changed between the passes, network %s, load %s",
		bytes.TrimSpace(commit), size, allocated, zeros, 100*change, link, load())

	// The guest's last writes, after pass 1 and before it stops:
	// random data over CHANGE of the disk's 1 MiB blocks.
	var changed int
	var stoppedAt time.Time // when the stand-in guest stopped
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for !srv.ShutdownRequested("benchvm") {
			time.Sleep(20 * time.Millisecond)
		}
		f, err := os.OpenFile(img, os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		n := size >> 20
		rng := mrand.New(mrand.NewPCG(7, 7))
		p := make([]byte, 1<<20)
		for _, i := range rng.Perm(int(n))[:int(float64(n)*change)] {
			rand.Read(p)
			f.WriteAt(p, int64(i)<<20)
			changed++
		}
		f.Sync()
		f.Close()
		srv.SetRunning("benchvm", false)
		stoppedAt = time.Now()
	}()

	// Each line xen2kvm logs, with when it arrived: the timeline of the
	// warm downtime.
	type logLine struct {
		at   time.Time
		text string
	}
	migrate := func(out string, extra ...string) (*report.Guest, time.Duration, []logLine) {
		args := append([]string{"migrate", url, "-o", out}, append(extra, common...)...)
		cmd := exec.Command(bin, args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout = &stdout
		pr, pw, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stderr = pw
		var lines []logLine
		read := make(chan struct{})
		go func() {
			defer close(read)
			sc := bufio.NewScanner(pr)
			for sc.Scan() {
				lines = append(lines, logLine{time.Now(), sc.Text()})
				stderr.WriteString(sc.Text() + "\n")
			}
		}()
		start := time.Now()
		err = cmd.Start()
		pw.Close()
		if err == nil {
			err = cmd.Wait()
		}
		<-read
		pr.Close()
		exec.Command("sync").Run()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("xen2kvm %v: %v\n%s", args, err, stderr.String())
		}
		var rep report.Guest
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("report: %v", err)
		}
		return &rep, took, lines
	}
	wrep, wtotal, wlog := migrate(filepath.Join(work, "warm"), "--warm", "--shutdown-source")
	w := wrep.Warm
	<-stopped
	// The downtime from the guest's actual stop: xen2kvm sees it stopped
	// only once xm shutdown -w returned and xm list said so.
	sinceStop := w.Stopped.Sub(stoppedAt).Seconds() + w.DowntimeSeconds
	// The cold migration of the same final image: the guest is down for
	// all of it.
	_, cold, _ := migrate(filepath.Join(work, "cold"))
	if out, err := exec.Command("qemu-img", "compare", filepath.Join(work, "warm", "benchvm-hda.qcow2"), filepath.Join(work, "cold", "benchvm-hda.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("warm and cold results differ: %v\n%s", err, out)
	}
	// The stand-in host's shutdown is instant once the writes are done,
	// so the downtime starts when the guest is seen stopped.
	t.Logf("load at the end %s", load())
	fmt.Printf("\nnetwork: %s\n%-32s %12s %14s\n", link, "", "seconds", "MiB moved")
	fmt.Printf("%-32s %12.1f %14.1f\n", "warm pass 1 (guest running)", w.Pass1.Seconds, float64(w.Pass1.BytesRead)/(1<<20))
	fmt.Printf("%-32s %12.1f %14.1f   (%d of %d blocks changed, %d written by the guest; hashed by %s with %s)\n", "warm pass 2 (guest stopped)", w.Pass2.Seconds, float64(w.Pass2.BytesRead)/(1<<20), w.Pass2.ChangedBlocks, w.Pass2.Blocks, changed, w.HashMethod, w.Hash)
	fmt.Printf("%-32s %12.1f\n", "  stopped -> pass 2 done", w.Pass2.Finished.Sub(w.Stopped).Seconds())
	fmt.Printf("%-32s %12.1f\n", "  pass 2 done -> ready (convert)", w.DowntimeSeconds-w.Pass2.Finished.Sub(w.Stopped).Seconds())
	fmt.Printf("%-32s %12.1f\n", "warm downtime (seen stopped->ready)", w.DowntimeSeconds)
	fmt.Printf("%-32s %12.1f   (%.1f s until xen2kvm saw it stopped)\n", "warm downtime (stopped->ready)", sinceStop, sinceStop-w.DowntimeSeconds)
	fmt.Printf("%-32s %12.1f\n", "warm total (xen2kvm run)", wtotal.Seconds())
	fmt.Printf("%-32s %12.1f\n", "cold downtime (whole migration)", cold.Seconds())
	fmt.Printf("%-32s %12.1f%%   (goal: <= 10%%; from the actual stop)\n", "warm / cold downtime", 100*sinceStop/cold.Seconds())
	fmt.Printf("%-32s %12.1f%%   (from when xen2kvm saw it stopped, as the report counts)\n", "", 100*w.DowntimeSeconds/cold.Seconds())
	if os.Getenv("TIMELINE") != "" {
		fmt.Printf("\nThe warm run's log from the stop on (seconds after the guest was seen stopped):\n")
		for _, l := range wlog {
			if d := l.at.Sub(w.Stopped); d > -time.Second {
				fmt.Printf("%8.2f  %s\n", d.Seconds(), l.text)
			}
		}
		fmt.Printf("%8.2f  (report: converted guest ready)\n", w.DowntimeSeconds)
	}
}

// startLink starts a TCP relay on 127.0.0.1 to addr that moves at most
// rate bytes a second each way, as a network link would (LINK): the
// stand-in host is on loopback, where the network costs nothing but CPU.
// It returns the relay's address; it stops with the test.
func startLink(t *testing.T, addr string, rate float64) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	pace := func(dst io.Writer, src io.Reader) {
		buf := make([]byte, 64<<10)
		next := time.Now()
		for {
			n, err := src.Read(buf)
			if n > 0 {
				// The bytes leave when the link has carried those before;
				// a sleep that overran is made up for (up to 10 ms: an
				// idle link saves no more).
				if now := time.Now().Add(-10 * time.Millisecond); next.Before(now) {
					next = now
				}
				next = next.Add(time.Duration(float64(n) / rate * float64(time.Second)))
				time.Sleep(time.Until(next))
				if _, werr := dst.Write(buf[:n]); werr != nil {
					return
				}
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				s, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer s.Close()
				done := make(chan struct{}, 2)
				go func() { pace(s, c); s.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { pace(c, s); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return l.Addr().String()
}
