package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/report"
)

// fixture is a fake guest with two raw disks under dir/xen.
type fixture struct {
	dir    string
	cfg    string
	images []string
	f      *fakes
}

func newFixture(t *testing.T, name string) *fixture {
	t.Helper()
	dir := t.TempDir()
	xen := filepath.Join(dir, "xen")
	if err := os.MkdirAll(xen, 0o755); err != nil {
		t.Fatal(err)
	}
	fx := &fixture{dir: dir, cfg: filepath.Join(xen, name), f: &fakes{domains: map[string]*config.Domain{}, qemu: true}}
	d := &config.Domain{Name: name, Type: config.PV, MemoryMiB: 512, MaxMemoryMiB: 512, VCPUs: 1,
		Source: config.Source{Format: config.FormatXM},
		NICs:   []config.NIC{{MAC: "00:16:3e:00:00:01", Bridge: "xenbr0"}}}
	rng := rand.New(rand.NewSource(1))
	for i, tgt := range []string{"xvda", "xvdb"} {
		img := filepath.Join(dir, "images", name+"-"+tgt+".img")
		os.MkdirAll(filepath.Dir(img), 0o755)
		data := make([]byte, 64<<10*(i+1))
		rng.Read(data)
		if err := os.WriteFile(img, data, 0o644); err != nil {
			t.Fatal(err)
		}
		fx.images = append(fx.images, img)
		d.Disks = append(d.Disks, config.Disk{Backend: "tap:aio", Source: "/var/lib/xen/images/" + filepath.Base(img), Target: tgt, Device: "disk", Mode: "w"})
	}
	d.Disks = append(d.Disks, config.Disk{Backend: "file", Source: "/var/lib/xen/images/install.iso", Target: "hdc", Device: "cdrom", Mode: "r"})
	os.WriteFile(fx.cfg, []byte("name = '"+name+"'\n"), 0o644)
	fx.f.domains[fx.cfg] = d
	return fx
}

func (fx *fixture) opts(out string) Options {
	return Options{OutDir: out, Format: "raw", DiskMap: []PathMap{{Old: "/var/lib/xen/images", New: filepath.Join(fx.dir, "images")}}}
}

func (fx *fixture) hashes(t *testing.T) []string {
	var h []string
	for _, img := range fx.images {
		h = append(h, testutil.HashFile(t, img))
	}
	return h
}

func (fx *fixture) migrate(t *testing.T, opts Options) (*Result, error) {
	t.Helper()
	return migrate(context.Background(), fx.f.parts(), fx.cfg, opts)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func TestMigrateWritesCompleteGuest(t *testing.T) {
	fx := newFixture(t, "web01")
	before := fx.hashes(t)
	out := filepath.Join(fx.dir, "kvm")
	var mu sync.Mutex
	progress := map[string]bool{}
	opts := fx.opts(out)
	opts.Progress = func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Finish {
			progress[p.Disk] = true
		}
	}
	res, err := fx.migrate(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"web01-vda.raw", "web01-vdb.raw", "web01.boot.log", "web01.report.json", "web01.sh", "web01.xml"}
	if got := listDir(t, out); !slices.Equal(got, want) {
		t.Errorf("output folder holds %v, want %v", got, want)
	}
	if len(res.Files) != len(want) {
		t.Errorf("Result.Files = %v", res.Files)
	}
	if !progress["vda"] || !progress["vdb"] {
		t.Errorf("progress finished for %v, want vda and vdb", progress)
	}
	// The source is untouched, the output holds the conversion.
	if after := fx.hashes(t); !slices.Equal(before, after) {
		t.Error("source images changed")
	}
	got, _ := os.ReadFile(filepath.Join(out, "web01-vda.raw"))
	src, _ := os.ReadFile(fx.images[0])
	if !bytes.Equal(got[:4], []byte(marker)) || !bytes.Equal(got[4:], src[4:]) {
		t.Error("vda output is not the source with the conversion applied")
	}
	got, _ = os.ReadFile(filepath.Join(out, "web01-vdb.raw"))
	src, _ = os.ReadFile(fx.images[1])
	if !bytes.Equal(got, src) {
		t.Error("vdb output differs from its source")
	}
	// The boot check ran on the staged images, which are gone now.
	for _, p := range fx.f.booted {
		if strings.HasSuffix(p, ".raw") && !strings.Contains(p, stagingName("web01")) {
			t.Errorf("booted %s, not a staged image", p)
		}
	}
	var rep report.Guest
	data, _ := os.ReadFile(filepath.Join(out, "web01.report.json"))
	if err := json.Unmarshal(data, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Status != report.StatusMigrated || len(rep.Disks) != 2 || rep.Disks[1].NewTarget != "vdb" ||
		rep.Disks[0].Path != fx.images[0] || rep.Boot == nil || !rep.Boot.OK || rep.Source.NICs[0].NewModel != "virtio" {
		t.Errorf("report: %+v", rep)
	}
	xml, _ := os.ReadFile(filepath.Join(out, "web01.xml"))
	if !strings.Contains(string(xml), filepath.Join(out, "web01-vda.raw")) {
		t.Errorf("XML does not name the final image path: %s", xml)
	}
	if !strings.Contains(string(xml), filepath.Join(fx.dir, "images", "install.iso")) {
		t.Errorf("XML does not name the CD-ROM image where --disk-map moved it: %s", xml)
	}
}

func TestMigrateRefusesExistingGuest(t *testing.T) {
	fx := newFixture(t, "db02")
	out := filepath.Join(fx.dir, "kvm")
	// The first migration has a third disk: its image is recorded in the
	// report, and a later --force run without that disk removes it.
	d := fx.f.domains[fx.cfg]
	d.Disks = append(d.Disks, config.Disk{Backend: "file", Source: d.Disks[0].Source, Target: "xvdc", Device: "disk", Mode: "w"})
	if _, err := fx.migrate(t, fx.opts(out)); err != nil {
		t.Fatal(err)
	}
	d.Disks = d.Disks[:3] // without xvdc
	// Files named like outputs that no run recorded: a user's, and an
	// image name this run does not write.
	mine := map[string]string{"db02-old.qcow2": "user", "db02-vdz.raw": "user", "db02.notes": "user", "db02-x-vda.raw": "other guest"}
	for f, c := range mine {
		os.WriteFile(filepath.Join(out, f), []byte(c), 0o644)
	}
	_, err := fx.migrate(t, fx.opts(out))
	var ee *ExistsError
	if !errors.Is(err, ErrExists) || !errors.As(err, &ee) || !ee.Complete || ee.Hint() == "" {
		t.Fatalf("second run: %v, want ErrExists for a complete guest", err)
	}
	opts := fx.opts(out)
	opts.Force = true
	if _, err := fx.migrate(t, opts); err != nil {
		t.Fatalf("--force: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "db02-vdc.raw")); !errors.Is(err, os.ErrNotExist) {
		t.Error("--force left the older migration's extra image")
	}
	for f, c := range mine {
		if data, err := os.ReadFile(filepath.Join(out, f)); err != nil || string(data) != c {
			t.Errorf("--force removed or changed %s, which no migration wrote: %v", f, err)
		}
	}
	want := []string{"db02-old.qcow2", "db02-vda.raw", "db02-vdb.raw", "db02-vdz.raw", "db02-x-vda.raw", "db02.boot.log", "db02.notes", "db02.report.json", "db02.sh", "db02.xml"}
	if got := listDir(t, out); !slices.Equal(got, want) {
		t.Errorf("output folder holds %v, want %v", got, want)
	}
	// Another guest whose name starts the same is not "this guest".
	if files, _ := guestFiles(out, "db02"); contains(files, "db02-x-vda.raw") || contains(files, "db02-old.qcow2") {
		t.Errorf("guestFiles claims files that are not the guest's: %v", files)
	}
}

// TestForeignFilesNeedForce: files with the names a migration writes
// that no run recorded are refused without --force and replaced with it.
func TestForeignFilesNeedForce(t *testing.T) {
	for _, f := range []string{"g.xml", "g.sh", "g-vda.raw", "g-hdb.qcow2", "g.report.json"} {
		t.Run(f, func(t *testing.T) {
			fx := newFixture(t, "g")
			out := filepath.Join(fx.dir, "kvm")
			os.MkdirAll(out, 0o755)
			os.WriteFile(filepath.Join(out, f), []byte("{}"), 0o644)
			_, err := fx.migrate(t, fx.opts(out))
			var ee *ExistsError
			if !errors.As(err, &ee) || !contains(ee.Files, f) {
				t.Fatalf("err = %v, want ExistsError naming %s", err, f)
			}
			opts := fx.opts(out)
			opts.Force = true
			if _, err := fx.migrate(t, opts); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestInterruptedCommitRerun: a commit killed half way (its owned list
// written, some files moved, no report) is xen2kvm's own leftover: the
// next run removes it and starts afresh without --force, as the help
// says, while files nobody recorded stay.
func TestInterruptedCommitRerun(t *testing.T) {
	fx := newFixture(t, "g")
	out := filepath.Join(fx.dir, "kvm")
	if _, err := fx.migrate(t, fx.opts(out)); err != nil {
		t.Fatal(err)
	}
	// Simulate the kill: the owned list of a new commit is written, the
	// old report removed, an image of the new run moved in.
	os.WriteFile(filepath.Join(out, ownedName("g")), []byte(`{"files":["g-vda.raw","g-vdb.raw","g-vdc.raw","g.xml","g.sh","g.boot.log","g.report.json"]}`), 0o644)
	os.Remove(filepath.Join(out, "g.report.json"))
	os.WriteFile(filepath.Join(out, "g-vdc.raw"), []byte("half"), 0o644)
	os.WriteFile(filepath.Join(out, "g-keep.raw"), []byte("user"), 0o644)
	if _, err := fx.migrate(t, fx.opts(out)); err != nil {
		t.Fatalf("re-run after an interrupted commit: %v", err)
	}
	want := []string{"g-keep.raw", "g-vda.raw", "g-vdb.raw", "g.boot.log", "g.report.json", "g.sh", "g.xml"}
	if got := listDir(t, out); !slices.Equal(got, want) {
		t.Errorf("output folder holds %v, want %v", got, want)
	}
	// A tampered owned list cannot make a run remove other files.
	os.WriteFile(filepath.Join(out, ownedName("g")), []byte(`{"files":["../victim","g-keep.raw/../../victim","/etc/passwd","other.raw"]}`), 0o644)
	os.Remove(filepath.Join(out, "g.report.json"))
	victim := filepath.Join(fx.dir, "victim")
	os.WriteFile(victim, []byte("v"), 0o644)
	os.WriteFile(filepath.Join(out, "other.raw"), []byte("v"), 0o644)
	opts := fx.opts(out)
	opts.Force = true
	if _, err := fx.migrate(t, opts); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{victim, filepath.Join(out, "other.raw")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s removed: %v", f, err)
		}
	}
}

func TestDryRunWritesNothing(t *testing.T) {
	fx := newFixture(t, "web01")
	out := filepath.Join(fx.dir, "kvm")
	opts := fx.opts(out)
	opts.DryRun = true
	opts.Format = "qcow2"
	res, err := fx.migrate(t, opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dry run created %s", out)
	}
	r := res.Report
	if r.Status != report.StatusPlanned || !r.DryRun || len(r.Edits) != 1 || r.TargetXML == "" {
		t.Errorf("report: %+v", r)
	}
	d := r.Disks[0]
	if d.VirtualSize != 64<<10 || d.Allocated != 64<<10 || d.EstimatedSize <= d.Allocated || d.EstimatedCopySeconds <= 0 || d.Output != "web01-vda.qcow2" {
		t.Errorf("disk estimate: %+v", d)
	}
	if fx.f.booted != nil {
		t.Error("dry run booted the guest")
	}
}

func TestFailuresLeaveNothingComplete(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(f *fakes)
		want  error
	}{
		{"copy of the second disk fails", func(f *fakes) { f.copyErr = map[string]error{"g-vdb.raw": errFake} }, errFake},
		{"validation fails", func(f *fakes) { f.badValidate = true }, ErrValidation},
		{"boot fails", func(f *fakes) { f.bootErr = errFake }, ErrBoot},
		{"blocked", func(f *fakes) { f.blockers = []string{"only Xen kernels installed"} }, ErrBlocked},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, "g")
			tc.setup(fx.f)
			before := fx.hashes(t)
			out := filepath.Join(fx.dir, "kvm")
			res, err := fx.migrate(t, fx.opts(out))
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			left := listDir(t, out)
			if tc.want == ErrBoot && len(left) == 1 && left[0] == "g.boot-failed.log" {
				left = nil // the serial log of the failed boot is kept
			}
			if len(left) != 0 {
				t.Errorf("output folder holds %v after a failure", left)
			}
			if res.Report.Error == "" || (res.Report.Status != report.StatusFailed && res.Report.Status != report.StatusBlocked) {
				t.Errorf("report: status %s, error %q", res.Report.Status, res.Report.Error)
			}
			if !slices.Equal(before, fx.hashes(t)) {
				t.Error("source images changed")
			}
		})
	}
}

func TestMissingDisksReportedTogether(t *testing.T) {
	fx := newFixture(t, "g")
	for _, img := range fx.images {
		os.Remove(img)
	}
	_, err := fx.migrate(t, fx.opts(filepath.Join(fx.dir, "kvm")))
	if err == nil || !strings.Contains(err.Error(), "disk xvda") || !strings.Contains(err.Error(), "disk xvdb") || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want both missing disks named", err)
	}
}

func TestBootModes(t *testing.T) {
	fx := newFixture(t, "g")
	fx.f.qemu = false
	opts := fx.opts(filepath.Join(fx.dir, "kvm"))
	opts.Boot = BootAlways
	if _, err := fx.migrate(t, opts); !errors.Is(err, ErrNoQEMU) {
		t.Errorf("BootAlways without QEMU: %v", err)
	}
	opts.Boot = BootAuto
	res, err := fx.migrate(t, opts)
	if err != nil || res.Report.Boot.Ran || !strings.Contains(res.Report.Boot.Skipped, "not found") {
		t.Errorf("BootAuto without QEMU: %v, %+v", err, res.Report.Boot)
	}
	fx.f.qemu = true
	opts.Boot, opts.Force = BootNever, true
	res, err = fx.migrate(t, opts)
	if err != nil || res.Report.Boot.Ran || fx.f.booted != nil {
		t.Errorf("BootNever: %v, %+v", err, res.Report.Boot)
	}
}

func TestStaleStagingIsReplaced(t *testing.T) {
	fx := newFixture(t, "g")
	out := filepath.Join(fx.dir, "kvm")
	stale := filepath.Join(out, stagingName("g"))
	os.MkdirAll(stale, 0o755)
	os.WriteFile(filepath.Join(stale, "g-vda.raw.tmp"), []byte("half"), 0o644)
	if _, err := fx.migrate(t, fx.opts(out)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Error("the stale staging folder is still there")
	}
}

func TestDisksCopiedConcurrently(t *testing.T) {
	fx := newFixture(t, "g")
	var started sync.WaitGroup
	started.Add(2)
	both := make(chan struct{})
	go func() { started.Wait(); close(both) }()
	fx.f.copyGate = func(string) {
		started.Done()
		select {
		case <-both:
		case <-time.After(5 * time.Second):
		}
	}
	if _, err := fx.migrate(t, fx.opts(filepath.Join(fx.dir, "kvm"))); err != nil {
		t.Fatal(err)
	}
	select {
	case <-both:
	default:
		t.Error("the two disks were not copied at the same time")
	}
}

func TestCancelDuringCopy(t *testing.T) {
	fx := newFixture(t, "g")
	ctx, cancel := context.WithCancel(context.Background())
	fx.f.copyGate = func(string) { cancel() }
	out := filepath.Join(fx.dir, "kvm")
	_, err := migrate(ctx, fx.f.parts(), fx.cfg, fx.opts(out))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if left := listDir(t, out); len(left) != 0 {
		t.Errorf("cancelled run left %v", left)
	}
}

// countingDevice records the most concurrent ReadAt calls it saw.
type countingDevice struct {
	diskimg.Device
	cur, max atomic.Int32
}

func (c *countingDevice) ReadAt(p []byte, off int64) (int, error) {
	n := c.cur.Add(1)
	for {
		m := c.max.Load()
		if n <= m || c.max.CompareAndSwap(m, n) {
			break
		}
	}
	time.Sleep(time.Millisecond)
	defer c.cur.Add(-1)
	return c.Device.ReadAt(p, off)
}

func TestLimiterBoundsReads(t *testing.T) {
	fx := newFixture(t, "g")
	src, err := openFileSource(fx.images[0], "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	cd := &countingDevice{Device: src}
	lim := NewLimiter(3)
	dev := limit(cd, lim)
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for j := 0; j < 10; j++ {
				dev.ReadAt(buf, int64(j*512))
			}
		}()
	}
	wg.Wait()
	if m := cd.max.Load(); m > 3 || m < 2 {
		t.Errorf("at most %d reads ran at once, want 2..3", m)
	}
}

// TestLaunchScriptFromAnyDirectory runs NAME.sh from another directory
// with a fake QEMU that prints its arguments: the image paths it gets are
// the images next to the script, also after the folder moved.
func TestLaunchScriptFromAnyDirectory(t *testing.T) {
	fx := newFixture(t, "g")
	out := filepath.Join(fx.dir, "kvm,dir")
	if _, err := fx.migrate(t, fx.opts(out)); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(fx.dir, "bin")
	os.MkdirAll(bin, 0o755)
	os.WriteFile(filepath.Join(bin, "qemu-system-x86_64"), []byte("#!/bin/sh\nfor a in \"$@\"; do echo \"$a\"; done\n"), 0o755)
	moved := filepath.Join(fx.dir, "moved here")
	if err := os.Rename(out, moved); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", filepath.Join(moved, "g.sh"), "-display", "none")
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), "PATH="+bin+":/usr/bin:/bin", "ACCEL=tcg")
	outb, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, outb)
	}
	args := strings.Split(strings.TrimSpace(string(outb)), "\n")
	qmoved := strings.ReplaceAll(moved, ",", ",,")
	want := "file=" + qmoved + "/g-vda.raw,if=virtio,format=raw"
	if !contains(args, want) || !contains(args, "tcg") || args[len(args)-1] != "none" {
		t.Errorf("QEMU got %q, want %q among them", args, want)
	}
}

// TestPygrubGuestGetsItsKernel: a guest that booted through pygrub has no
// boot loader, so its kernel and initrd are copied next to the images for
// NAME.sh and the XML, while the boot check reads grub from the image.
func TestPygrubGuestGetsItsKernel(t *testing.T) {
	fx := newFixture(t, "pv")
	fx.f.pygrub = true
	out := filepath.Join(fx.dir, "kvm")
	res, err := fx.migrate(t, fx.opts(out))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"pv-vmlinuz", "pv-initrd.img"} {
		if !contains(res.Report.Files, f) {
			t.Errorf("%s not among %v", f, res.Report.Files)
		}
	}
	xml, _ := os.ReadFile(filepath.Join(out, "pv.xml"))
	if !strings.Contains(string(xml), "<kernel>"+filepath.Join(out, "pv-vmlinuz")+"</kernel>") {
		t.Errorf("XML: %s", xml)
	}
	sh, _ := os.ReadFile(filepath.Join(out, "pv.sh"))
	if !strings.Contains(string(sh), `-kernel "$dir"/pv-vmlinuz`) || !strings.Contains(string(sh), "'ro root=/dev/vda2 console=ttyS0'") {
		t.Errorf("script: %s", sh)
	}
	for _, b := range fx.f.booted {
		if strings.HasPrefix(b, "kernel ") {
			t.Errorf("the boot check booted %s instead of the image's grub entry", b)
		}
	}
	// A second run with --force replaces the kernel too.
	opts := fx.opts(out)
	opts.Force = true
	if _, err := fx.migrate(t, opts); err != nil {
		t.Fatal(err)
	}
}

func TestSecondRunOfSameGuestIsRefused(t *testing.T) {
	fx := newFixture(t, "g")
	out := filepath.Join(fx.dir, "kvm")
	// Buffered: a copy that starts before the test waits on started must
	// not skip the signal (both copies would then wait on release, and
	// the test on started, for ever).
	started := make(chan struct{}, 1)
	release := make(chan struct{})
	fx.f.copyGate = func(string) {
		select {
		case started <- struct{}{}:
		default:
		}
		<-release
	}
	done := make(chan error)
	go func() { _, err := fx.migrate(t, fx.opts(out)); done <- err }()
	<-started
	_, err := migrate(context.Background(), (&fakes{domains: fx.f.domains, qemu: true}).parts(), fx.cfg, fx.opts(out))
	close(release)
	if !errors.Is(err, ErrBusy) {
		t.Errorf("second run: %v, want ErrBusy", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("first run: %v", err)
	}
	if left := listDir(t, out); contains(left, ".g.xen2kvm-lock") {
		t.Error("the lock file stayed")
	}
}

// TestOutputsNeverNameSources: a Xen target given twice (which
// config.Parse refuses) reaching the pipeline anyway is refused before
// anything is copied, and checkOutputsApart fails a KVM domain that
// points a disk at a source image or two disks at one image.
func TestOutputsNeverNameSources(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(d *config.Domain)
	}{
		{"same target twice", func(d *config.Domain) { d.Disks[1].Target = "xvda" }},
		{"same target twice, mapped path", func(d *config.Domain) { d.Disks[1].Target = "xvda"; d.Disks[1].Source = d.Disks[0].Source }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fx := newFixture(t, "g")
			tc.setup(fx.f.domains[fx.cfg])
			before := fx.hashes(t)
			out := filepath.Join(fx.dir, "kvm")
			res, err := fx.migrate(t, fx.opts(out))
			if err == nil || !strings.Contains(err.Error(), "would both be written to g-vda.raw") || res.Report.Status != report.StatusFailed {
				t.Fatalf("err = %v, want the two disks named", err)
			}
			if left := listDir(t, out); len(left) != 0 {
				t.Errorf("output folder holds %v", left)
			}
			if !slices.Equal(before, fx.hashes(t)) {
				t.Error("source images changed")
			}
		})
	}
}

func TestCheckOutputsApart(t *testing.T) {
	fx := newFixture(t, "g")
	out := filepath.Join(fx.dir, "kvm")
	res, err := fx.migrate(t, fx.opts(out))
	if err != nil {
		t.Fatal(err)
	}
	if c := res.Report.Validation[0]; !c.OK || !strings.Contains(c.Detail, "2 disks") {
		t.Fatalf("first check %+v", c)
	}
	m := &migration{opts: fx.opts(out), rep: &report.Guest{OutDir: out}}
	for i, img := range fx.images {
		m.disks = append(m.disks, &disk{xen: config.Disk{Source: "/var/lib/xen/images/" + filepath.Base(img), Target: []string{"xvda", "xvdb"}[i]}, outName: []string{"g-vda.raw", "g-vdb.raw"}[i]})
	}
	link := filepath.Join(fx.dir, "link.img")
	os.Symlink(fx.images[1], link)
	for _, tc := range []struct {
		paths []string
		want  string
	}{
		{[]string{filepath.Join(out, "g-vda.raw"), filepath.Join(out, "g-vdb.raw")}, ""},
		{[]string{fx.images[0], filepath.Join(out, "g-vdb.raw")}, "vda is the source image of xvda"},
		{[]string{"/var/lib/xen/images/" + filepath.Base(fx.images[0]), filepath.Join(out, "g-vdb.raw")}, "vda is the source image of xvda"},
		{[]string{filepath.Join(out, "g-vda.raw"), link}, "vdb (" + link + ") is a source image"},
		{[]string{filepath.Join(out, "g-vda.raw"), filepath.Join(out, "g-vda.raw")}, "vda and vdb share"},
		{[]string{filepath.Join(out, "g-vda.raw"), "/srv/elsewhere.raw"}, "vdb is /srv/elsewhere.raw, not a copy"},
	} {
		k := &config.KVMDomain{}
		for i, p := range tc.paths {
			k.Disks = append(k.Disks, config.KVMDisk{Path: p, Target: []string{"vda", "vdb"}[i], Device: "disk"})
		}
		k.Disks = append(k.Disks, config.KVMDisk{Path: fx.images[0], Target: "hdc", Device: "cdrom"})
		c := m.checkOutputsApart(k)
		if c.OK != (tc.want == "") || !strings.Contains(c.Detail, tc.want) {
			t.Errorf("%v: %+v, want %q", tc.paths, c, tc.want)
		}
	}
}
