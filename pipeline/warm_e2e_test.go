package pipeline_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testlibvirtd"
	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/warm"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// partStart is where partition n of a disk image starts, in bytes
// (sfdisk --dump).
func partStart(t *testing.T, img string, n int) int64 {
	t.Helper()
	out := testutil.Run(t, testutil.NeedTool(t, "sfdisk"), "--dump", img)
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, img+strconv.Itoa(n)+" ") {
			continue
		}
		for _, f := range strings.Split(line, ",") {
			f = strings.TrimSpace(f)
			if _, v, ok := strings.Cut(f, "start="); ok {
				s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					t.Fatalf("sfdisk: %q", line)
				}
				return s * 512
			}
		}
	}
	t.Fatalf("no partition %d in %s:\n%s", n, img, out)
	return 0
}

// withPart runs fn on partition n of img, extracted to a file, and
// writes it back when write is set.
func withPart(t *testing.T, img string, n int, write bool, fn func(part string)) {
	t.Helper()
	start := partStart(t, img, n)
	data, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	out := testutil.Run(t, "sfdisk", "--dump", img)
	var size int64
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, img+strconv.Itoa(n)+" ") {
			_, v, _ := strings.Cut(line, "size=")
			v, _, _ = strings.Cut(v, ",")
			size, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	part := filepath.Join(t.TempDir(), "part")
	if err := os.WriteFile(part, data[start:start+size*512], 0o644); err != nil {
		t.Fatal(err)
	}
	fn(part)
	if write {
		p, err := os.ReadFile(part)
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.OpenFile(img, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(p, start); err != nil {
			t.Fatal(err)
		}
	}
}

// TestE2EWarmMigration migrates the example guest warm, through the CLI,
// from the stand-in Xen host: while pass 1 copies its disk the "running
// guest" moves its image, 4 KiB at a time and in random order, through
// garbage towards its final state (a new file on the root filesystem),
// so pass 1's copy is inconsistent; --shutdown-source asks the host to
// stop it, it finishes its writes and stops; pass 2 moves only the
// changed blocks; the result converts and boots, holds the new file, and
// the report records both passes and the downtime. The output image is
// the one the passes wrote, patched with the conversion's edits, and
// equals a cold migration's of the final image (qemu-img compare).
func TestE2EWarmMigration(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	hostDir := t.TempDir()
	img := filepath.Join(hostDir, filepath.Base(g.Images[0]))
	testutil.Run(t, "cp", "--sparse=always", g.Images[0], img)
	// The final state: a file more on the root filesystem (xvda2).
	final := filepath.Join(hostDir, "final.img")
	testutil.Run(t, "cp", "--sparse=always", img, final)
	marker := make([]byte, 3<<20+777)
	rand.Read(marker)
	markerFile := filepath.Join(hostDir, "marker")
	if err := os.WriteFile(markerFile, marker, 0o644); err != nil {
		t.Fatal(err)
	}
	debugfs := testutil.NeedTool(t, "debugfs")
	withPart(t, final, 2, true, func(part string) {
		testutil.Run(t, debugfs, "-w", "-R", "write "+markerFile+" warm-marker", part)
		testutil.Run(t, testutil.NeedTool(t, "e2fsck"), "-fn", part)
	})
	a, _ := os.ReadFile(img)
	b, _ := os.ReadFile(final)
	var chunks []int64
	for off := int64(0); off < int64(len(a)); off += 4096 {
		if !bytes.Equal(a[off:off+4096], b[off:off+4096]) {
			chunks = append(chunks, off)
		}
	}
	if len(chunks) == 0 {
		t.Fatal("the final image equals the first")
	}
	touched := map[int64]bool{}
	for _, off := range chunks {
		touched[off>>20] = true
	}

	cfg, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.ReplaceAll(cfg, []byte(filepath.Join(g.XenImageDir, filepath.Base(img))), []byte(img))
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: g.Name, Config: cfg, Running: true, Managed: true}}})

	// The running guest.
	w, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var garbage, written int
	wg.Add(1)
	go func() {
		defer wg.Done()
		rng := mrand.New(mrand.NewPCG(1, 2))
		p := make([]byte, 4096)
		for !srv.ShutdownRequested(g.Name) {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			off := chunks[rng.IntN(len(chunks))]
			if rng.IntN(2) == 0 {
				rand.Read(p)
				garbage++
			} else {
				copy(p, b[off:off+4096])
				written++
			}
			w.WriteAt(p, off)
		}
		// Shutting down: the guest writes its final state and stops.
		for _, off := range chunks {
			w.WriteAt(b[off:off+4096], off)
		}
		w.Sync()
		srv.SetRunning(g.Name, false)
	}()
	t.Cleanup(func() { close(stop); wg.Wait() })

	// The cold migration at the end stamps the guest's edits with the
	// same time.
	epoch := []string{"SOURCE_DATE_EPOCH=1700000000"}
	out := filepath.Join(t.TempDir(), "kvm")
	start := time.Now()
	code, stdout, stderr := runEnv(t, epoch, "migrate", srv.URL(g.Name), "-o", out, "--warm", "--shutdown-source",
		"--identity", srv.KeyPath, "--known-hosts", srv.KnownHostsPath, "--host-config-dir", srv.ConfigDir,
		"--boot-check", "--accel", "tcg", "--boot-timeout", "4m", "--json")
	total := time.Since(start)
	if code != 0 {
		t.Fatalf("migrate --warm: exit %d\n%s", code, stderr)
	}
	t.Logf("the guest wrote %d garbage and %d final chunks during pass 1", garbage, written)
	if testutil.HashFile(t, img) != testutil.HashFile(t, final) {
		t.Fatal("the host image is not the final image: the test's guest misbehaved")
	}
	var rep report.Guest
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	if rep.Status != report.StatusMigrated || rep.Boot == nil || !rep.Boot.OK {
		t.Fatalf("report: status %s, boot %+v", rep.Status, rep.Boot)
	}
	wr := rep.Warm
	if wr == nil {
		t.Fatal("the report has no warm section")
	}
	t.Logf("warm: %+v (total %s); the boot check took %.1f s of the downtime", *wr, total, rep.Boot.Seconds)
	size := int64(len(a))
	// Pass 1 moves the blocks the host did not hash as zeros, whole.
	if wr.Pass1.Blocks != (size+1<<20-1)>>20 || wr.Pass1.ZeroBlocks == 0 || wr.Pass1.BytesRead != (wr.Pass1.Blocks-wr.Pass1.ZeroBlocks)<<20 {
		t.Errorf("pass 1 read %d bytes of %d blocks, %d of them zeros, of the %d-byte disk", wr.Pass1.BytesRead, wr.Pass1.Blocks, wr.Pass1.ZeroBlocks, size)
	}
	if wr.Hash != "md5" && wr.Hash != "sha1" {
		t.Errorf("the report names the block hash %q", wr.Hash)
	}
	if wr.Pass2.ChangedBlocks == 0 || wr.Pass2.ChangedBlocks > int64(len(touched)) {
		t.Errorf("pass 2 changed %d blocks; the guest touched %d", wr.Pass2.ChangedBlocks, len(touched))
	}
	if wr.Pass2.BytesRead > (wr.Pass2.ChangedBlocks-wr.Pass2.ZeroBlocks)<<20 || wr.Pass2.BytesRead == 0 {
		t.Errorf("pass 2 moved %d bytes for %d changed blocks", wr.Pass2.BytesRead, wr.Pass2.ChangedBlocks)
	}
	if wr.ShutdownBy != "xen2kvm" || wr.Stopped.IsZero() || wr.DowntimeSeconds <= 0 || wr.DowntimeSeconds > total.Seconds() {
		t.Errorf("shutdown by %q at %s, downtime %.1fs of %s", wr.ShutdownBy, wr.Stopped, wr.DowntimeSeconds, total)
	}
	// The output image is the one the passes wrote, patched with the
	// conversion's edits (it booted: the edits are in it).
	if wr.OutputFromPasses != 1 || wr.PatchedBytes == 0 {
		t.Errorf("output images from the passes: %d, patched with %d bytes", wr.OutputFromPasses, wr.PatchedBytes)
	}
	if _, err := os.Stat(filepath.Join(out, "."+g.Name+".warm")); !os.IsNotExist(err) {
		t.Errorf("the warm copies were left: %v", err)
	}
	// The migrated disk has the guest's final state: the new file.
	raw := filepath.Join(t.TempDir(), "out.raw")
	testutil.Run(t, testutil.NeedTool(t, "qemu-img"), "convert", "-O", "raw", filepath.Join(out, g.Name+"-vda.qcow2"), raw)
	withPart(t, raw, 2, false, func(part string) {
		got := testutil.Run(t, debugfs, "-R", "cat warm-marker", part)
		if !bytes.Equal(got, marker) {
			t.Errorf("the migrated root filesystem's warm-marker is %d bytes, not the %d the guest wrote last", len(got), len(marker))
		}
	})
	log, _ := os.ReadFile(srv.XMLog)
	if !strings.Contains(string(log), "shutdown -w "+g.Name) {
		t.Errorf("xm log:\n%s", log)
	}
	// The patched image holds what a cold migration of the final image
	// writes.
	hostCfg := filepath.Join(t.TempDir(), g.Name)
	if err := os.WriteFile(hostCfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	cold := filepath.Join(t.TempDir(), "cold")
	if code, _, stderr := runEnv(t, epoch, "migrate", hostCfg, "-o", cold, "--no-boot-check"); code != 0 {
		t.Fatalf("cold migrate: exit %d\n%s", code, stderr)
	}
	if b, err := exec.Command(testutil.NeedTool(t, "qemu-img"), "compare", filepath.Join(out, g.Name+"-vda.qcow2"), filepath.Join(cold, g.Name+"-vda.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare warm vs cold image: %v\n%s", err, b)
	}
}

// TestWarmResumeBatch: a warm migration whose guest is not stopped in
// time fails after pass 1 and keeps its copy (and says why); a batch with
// warm: true then resumes it from pass 2 (moving nothing: the guest did
// not write), shuts the guest down itself and converts it into the
// output image the resumed session wrote again from its copy before the
// stop (an image lives only in the run that writes it): the disk is not
// copied again while the guest is down, and the converted image's
// filesystems are sound (e2fsck -fn) and converted (fstab names vda).
func TestWarmResumeBatch(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	cfg, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	// The host's copy of the image, apart from the shared guest cache.
	hostDir := t.TempDir()
	img := filepath.Join(hostDir, filepath.Base(g.Images[0]))
	testutil.Run(t, "cp", "--sparse=always", g.Images[0], img)
	before := testutil.HashFile(t, img)
	cfg = bytes.ReplaceAll(cfg, []byte(g.XenImageDir), []byte(hostDir))
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: g.Name, Config: cfg, Running: true, Managed: true, StopsOnShutdown: true}}})
	t.Cleanup(func() {
		if testutil.HashFile(t, img) != before {
			t.Error("the warm migration wrote the host's image")
		}
	})
	ssh := &xenhost.Options{Identities: []string{srv.KeyPath}, KnownHosts: srv.KnownHostsPath, ConfigDir: srv.ConfigDir, NoAgent: true}
	outRoot := t.TempDir()
	out := filepath.Join(outRoot, g.Name)
	var said []string
	_, err = pipeline.Migrate(context.Background(), srv.URL(g.Name), pipeline.Options{
		RunOptions: pipeline.RunOptions{SSH: ssh}, OutDir: out, Boot: pipeline.BootNever,
		Warm: &pipeline.WarmOptions{Wait: 2 * time.Second, Poll: 200 * time.Millisecond, Say: func(s string) { said = append(said, s) }},
	})
	if !errors.Is(err, warm.ErrStillRunning) {
		t.Fatalf("warm migration of a guest nobody stops: %v", err)
	}
	if !strings.Contains(strings.Join(said, "\n"), "waiting for "+g.Name+" to stop") {
		t.Errorf("it did not say it waits: %q", said)
	}
	if _, err := os.Stat(filepath.Join(out, "."+g.Name+".warm", "state.json")); err != nil {
		t.Fatalf("pass 1's state is gone: %v", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 1 {
		t.Errorf("the output folder holds more than the warm copies: %v", ents)
	}

	manifest := filepath.Join(t.TempDir(), "m.yaml")
	os.WriteFile(manifest, []byte("defaults:\n  output: "+outRoot+"\n  boot_check: false\nguests:\n  - config: "+srv.URL(g.Name)+"\n    warm: true\n"), 0o644)
	m, err := pipeline.LoadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}
	res, err := pipeline.RunBatch(context.Background(), m, pipeline.BatchOptions{RunOptions: pipeline.RunOptions{SSH: ssh},
		Warm: pipeline.WarmOptions{ShutdownSource: true, Poll: 200 * time.Millisecond}})
	if err != nil {
		t.Fatalf("batch: %v (%+v)", err, res)
	}
	r := res.Guests[0]
	if r.Status != pipeline.GuestMigrated || r.Report == nil || r.Report.Warm == nil {
		t.Fatalf("batch result %+v", r)
	}
	w := r.Report.Warm
	if !w.Resumed || w.Pass2.BytesRead != 0 || w.Pass2.ChangedBlocks != 0 || w.ShutdownBy != "xen2kvm" || w.DowntimeSeconds <= 0 || w.OutputFromPasses != 1 {
		t.Errorf("warm report %+v", *w)
	}
	raw := filepath.Join(t.TempDir(), "out.raw")
	testutil.Run(t, testutil.NeedTool(t, "qemu-img"), "convert", "-O", "raw", filepath.Join(out, g.Name+"-vda.qcow2"), raw)
	for _, n := range []int{1, 2} {
		withPart(t, raw, n, false, func(part string) {
			testutil.Run(t, testutil.NeedTool(t, "e2fsck"), "-fn", part)
			if n == 2 {
				fstab := testutil.Run(t, testutil.NeedTool(t, "debugfs"), "-R", "cat /etc/fstab", part)
				if !bytes.Contains(fstab, []byte("/dev/vda")) || bytes.Contains(fstab, []byte("/dev/xvda")) {
					t.Errorf("the converted fstab:\n%s", fstab)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(out, "."+g.Name+".warm")); !os.IsNotExist(err) {
		t.Errorf("the warm copies were left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, g.Name+".report.json")); err != nil {
		t.Error(err)
	}
}

// TestE2EWarmMigrateToLibvirt: --warm with --to: pass 1 copies the
// running guest off the stand-in Xen host, xen2kvm shuts it down, pass 2
// runs, and the converted guest is delivered to a private libvirt
// daemon (no output image is written locally; the warm copies are gone
// afterwards); the volume equals what a cold local migration of the same
// image writes (qemu-img compare).
func TestE2EWarmMigrateToLibvirt(t *testing.T) {
	needE2E(t)
	qimg := testutil.NeedTool(t, "qemu-img")
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	hostDir := t.TempDir()
	img := filepath.Join(hostDir, filepath.Base(g.Images[0]))
	testutil.Run(t, "cp", "--sparse=always", g.Images[0], img)
	cfg, err := os.ReadFile(noVif(t, g))
	if err != nil {
		t.Fatal(err)
	}
	cfg = bytes.ReplaceAll(cfg, []byte(g.XenImageDir), []byte(hostDir))
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: g.Name, Config: cfg, Running: true, Managed: true, StopsOnShutdown: true}}})
	// Both migrations stamp the guest's edits with the same time.
	epoch := []string{"SOURCE_DATE_EPOCH=1700000000"}

	out := filepath.Join(t.TempDir(), "report")
	code, stdout, stderr := runEnv(t, epoch, "migrate", srv.URL(g.Name), "--warm", "--shutdown-source", "--to", d.URI, "-o", out,
		"--identity", srv.KeyPath, "--known-hosts", srv.KnownHostsPath, "--host-config-dir", srv.ConfigDir, "--no-boot-check", "--json")
	if code != 0 {
		t.Fatalf("migrate --warm --to: exit %d\n%s", code, stderr)
	}
	var rep report.Guest
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	if rep.Status != report.StatusMigrated || rep.Destination == nil || !rep.Destination.Defined || rep.Warm == nil {
		t.Fatalf("report: status %s, destination %+v, warm %+v", rep.Status, rep.Destination, rep.Warm)
	}
	if w := rep.Warm; w.ShutdownBy != "xen2kvm" || w.Pass1.BytesRead == 0 || w.Pass2.Blocks == 0 || w.DowntimeSeconds <= 0 || w.OutputFromPasses != 0 {
		t.Errorf("warm report %+v", *w)
	}
	if m, _ := filepath.Glob(filepath.Join(out, "*.qcow2")); len(m) > 0 {
		t.Errorf("images written locally: %v", m)
	}
	if _, err := os.Stat(filepath.Join(out, "."+g.Name+".warm")); !os.IsNotExist(err) {
		t.Errorf("the warm copies were left: %v", err)
	}
	if st := strings.TrimSpace(d.Virsh(t, "domstate", g.Name)); st != "shut off" {
		t.Errorf("domstate %q, want the guest defined and shut off", st)
	}
	local := filepath.Join(t.TempDir(), "local")
	hostCfg := filepath.Join(t.TempDir(), g.Name)
	if err := os.WriteFile(hostCfg, cfg, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runEnv(t, epoch, "migrate", hostCfg, "-o", local, "--no-boot-check"); code != 0 {
		t.Fatalf("cold local migrate: exit %d\n%s", code, stderr)
	}
	vol := filepath.Join(poolDir, g.Name+"-vda.qcow2")
	if b, err := exec.Command(qimg, "compare", vol, filepath.Join(local, g.Name+"-vda.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare volume vs cold local image: %v\n%s", err, b)
	}
}

// TestWarmDryRun: --warm --dry-run plans the migration of a running
// guest off its host without stopping it or writing anything: the report
// says what pass 1 would copy (the disk's size, in 1 MiB blocks) and
// where; xm was only asked to list the guest (no shutdown), the guest
// still runs, the output folder is not created and the host's image is
// unchanged. --warm with a local config is refused, dry run or not.
func TestWarmDryRun(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	cfg, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	srv := testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{{Name: g.Name, Config: bytes.ReplaceAll(cfg, []byte(g.XenImageDir), []byte(filepath.Dir(g.Images[0]))), Running: true, Managed: true, StopsOnShutdown: true}}})
	ssh := &xenhost.Options{Identities: []string{srv.KeyPath}, KnownHosts: srv.KnownHostsPath, ConfigDir: srv.ConfigDir, NoAgent: true}
	out := filepath.Join(t.TempDir(), "kvm")
	res, err := pipeline.Migrate(context.Background(), srv.URL(g.Name), pipeline.Options{
		RunOptions: pipeline.RunOptions{SSH: ssh, DryRun: true}, OutDir: out,
		Warm: &pipeline.WarmOptions{ShutdownSource: true},
	})
	if err != nil {
		t.Fatalf("warm dry run: %v", err)
	}
	rep := res.Report
	fi, err := os.Stat(g.Images[0])
	if err != nil {
		t.Fatal(err)
	}
	w := rep.Warm
	if rep.Status != report.StatusPlanned || w == nil {
		t.Fatalf("report: status %s, warm %+v", rep.Status, w)
	}
	if w.PlannedBytes != fi.Size() || w.Pass1.Blocks != (fi.Size()+1<<20-1)>>20 || w.BlockSize != 1<<20 ||
		w.Folder != filepath.Join(out, "."+g.Name+".warm") || w.ShutdownBy != "xen2kvm" || w.Pass1.BytesRead != 0 || !w.Stopped.IsZero() {
		t.Errorf("warm plan %+v, want %d bytes in 1 MiB blocks", *w, fi.Size())
	}
	if len(rep.Edits) == 0 || !strings.Contains(strings.Join(rep.Warnings, "\n"), g.Name+" runs on") {
		t.Errorf("the plan has %d edits, warnings %q", len(rep.Edits), rep.Warnings)
	}
	if srv.ShutdownRequested(g.Name) {
		t.Error("the dry run asked the host to shut the guest down")
	}
	log, _ := os.ReadFile(srv.XMLog)
	for _, l := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if f := strings.Fields(l); len(f) == 0 || f[0] != "list" {
			t.Errorf("the dry run ran xm %q (only listing is read-only)", l)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("the dry run created the output folder: %v", err)
	}

	_, err = pipeline.Migrate(context.Background(), g.Config, pipeline.Options{RunOptions: pipeline.RunOptions{DryRun: true}, OutDir: out, Warm: &pipeline.WarmOptions{}})
	if !errors.Is(err, pipeline.ErrWarmLocal) {
		t.Errorf("--warm --dry-run of a local config: %v, want ErrWarmLocal", err)
	}
}
