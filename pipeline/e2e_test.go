package pipeline_test

// End-to-end tests: guestgen's CentOS 5 Xen guests go through the real
// xen2kvm binary and the results are booted under QEMU (TCG). They are
// skipped with -short.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image/color"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/assemble"
	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
)

// needE2E marks an end-to-end test: skipped with -short, and run in
// parallel with the other end-to-end tests (each boot keeps one core
// busy: go test -parallel bounds how many run at once).
func needE2E(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end: builds guests and boots VMs; skipped with -short")
	}
	t.Parallel()
	testutil.NeedTool(t, "mke2fs")
	testutil.NeedTool(t, "busybox")
	testutil.NeedTool(t, "qemu-system-x86_64")
	testkernel.ForTest(t)
}

// guest builds (or takes from the cache) a guestgen preset.
func guest(t *testing.T, s guestgen.Spec) *guestgen.Guest {
	t.Helper()
	cache, err := testkernel.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := guestgen.BuildCached(context.Background(), filepath.Join(cache, "pipeline-e2e"), s)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func diskMap(g *guestgen.Guest) string {
	return g.XenImageDir + "=" + filepath.Dir(g.Images[0])
}

// sourcesUnchanged hashes a guest's images now and checks them again when
// the test ends.
func sourcesUnchanged(t *testing.T, g *guestgen.Guest) {
	t.Helper()
	var before []string
	for _, img := range g.Images {
		before = append(before, testutil.HashFile(t, img))
	}
	t.Cleanup(func() {
		for i, img := range g.Images {
			if testutil.HashFile(t, img) != before[i] {
				t.Errorf("source image %s changed", img)
			}
		}
	})
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// xen2kvm builds the command once per test binary.
func xen2kvm(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "xen2kvm-e2e-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "xen2kvm")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/xen2kvm").CombinedOutput()
		if err != nil {
			binErr = errors.New(string(out))
		}
	})
	if binErr != nil {
		t.Fatalf("building xen2kvm: %v", binErr)
	}
	return binPath
}

// run runs the xen2kvm binary and returns its exit code, stdout, stderr.
func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return runEnv(t, nil, args...)
}

// runEnv is run with env (NAME=VALUE) added to the binary's environment;
// the end-to-end tests run in parallel, so none of them changes the test
// process's own.
func runEnv(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(xen2kvm(t), args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	t.Logf("xen2kvm %s: exit %d\n%s", strings.Join(args, " "), code, stderr.String())
	return code, stdout.String(), stderr.String()
}

// runJSON runs xen2kvm with env (nil: none) and args, which ask for
// --json; it fails the test unless the run exits with code want, and
// decodes the standard output into v. It returns the standard error.
func runJSON(t *testing.T, env []string, want int, v any, args ...string) (stderr string) {
	t.Helper()
	code, stdout, stderr := runEnv(t, env, args...)
	if code != want {
		t.Fatalf("xen2kvm %s: exit %d, want %d\n%s", strings.Join(args, " "), code, want, stderr)
	}
	if err := json.Unmarshal([]byte(stdout), v); err != nil {
		t.Fatalf("xen2kvm %s: decoding its JSON: %v\n%s", args[0], err, stdout)
	}
	return stderr
}

// TestE2EMigrateBoots migrates the LVM guest with the CLI and boots the
// result to its login prompt; the output passes qemu-img check and
// virt-xml-validate, and the sources are untouched. (The plain guest
// migrates and boots in TestE2EBatchWithBrokenGuests.)
func TestE2EMigrateBoots(t *testing.T) {
	needE2E(t)
	for _, s := range []guestgen.Spec{guestgen.CentOS5PV, guestgen.CentOS5LVM} {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			g := guest(t, s)
			sourcesUnchanged(t, g)
			out := filepath.Join(t.TempDir(), "kvm")
			// Nothing of a migration goes to $TMPDIR, where a killed run
			// would leave it for good.
			tmp := t.TempDir()
			var rep report.Guest
			runJSON(t, []string{"TMPDIR=" + tmp}, 0, &rep, "migrate", g.Config, "-o", out, "--disk-map", diskMap(g),
				"--boot-check", "--accel", "tcg", "--boot-timeout", "6m", "--json")
			if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
				t.Errorf("migrate used $TMPDIR: %v", ents)
			}
			if rep.Status != report.StatusMigrated || rep.Boot == nil || !rep.Boot.OK {
				t.Fatalf("report: status %s, boot %+v", rep.Status, rep.Boot)
			}
			// The guest relabels and reboots once when the conversion left
			// /.autorelabel (a guest whose files it could label gets none).
			relabels := relabelsPlanned(&rep)
			if s.Name == guestgen.CentOS5PV.Name && relabels != 1 {
				t.Errorf("the plain guest's conversion left no /.autorelabel: nothing proves a relabel reboot is followed")
			}
			firstBootProven(t, rep.Boot, s, relabels)
			labelled := false
			for _, c := range rep.Validation {
				if !c.OK {
					t.Errorf("validation %s: %s", c.Name, c.Detail)
				}
				labelled = labelled || c.Name == "SELinux labels on the files xen2kvm wrote" && strings.HasSuffix(c.Detail, "files labelled")
			}
			if s.SELinuxLabels && !labelled {
				t.Errorf("no SELinux label check read the files xen2kvm wrote back: %+v", rep.Validation)
			}
			// kernel-debug of the same version is never the kernel chosen.
			if rep.OS == nil || strings.Contains(rep.OS.Kernel, "debug") {
				t.Errorf("boots %+v, want the plain kernel", rep.OS)
			}
			serial, _ := os.ReadFile(filepath.Join(out, g.Name+".boot.log"))
			if !bytes.Contains(serial, []byte("login:")) {
				t.Errorf("the serial log has no login prompt:\n%s", serial)
			}
			// The guest's kdump found its renamed dump target (without
			// the kdump rule it fails: TestE2ERuleLeftOut).
			if s.Kdump && !bytes.Contains(serial, []byte("Starting kdump:  [  OK  ]")) {
				t.Errorf("kdump did not start at the first boot:\n%s", serial)
			}
			img := filepath.Join(out, g.Name+"-vda.qcow2")
			if b, err := exec.Command(testutil.NeedTool(t, "qemu-img"), "check", img).CombinedOutput(); err != nil {
				t.Errorf("qemu-img check %s: %v\n%s", img, err, b)
			}
			xml := filepath.Join(out, g.Name+".xml")
			if b, err := exec.Command(testutil.NeedTool(t, "virt-xml-validate"), xml, "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate: %v\n%s", err, b)
			}
			// The output re-read from the written XML boots as well (this
			// is what xen2kvm boot OUTDIR does).
			data, err := os.ReadFile(xml)
			if err != nil {
				t.Fatal(err)
			}
			k, err := config.ParseKVMXML(data)
			if err != nil {
				t.Fatal(err)
			}
			if k.Disks[0].Path != img {
				t.Errorf("the XML names %s, not %s", k.Disks[0].Path, img)
			}
			// And xen2kvm boot OUTDIR boots the result again on its own.
			before := testutil.HashFile(t, img)
			var res struct {
				Match string
				Boot  *report.Boot
			}
			runJSON(t, nil, 0, &res, "boot", out, "--accel", "tcg", "--timeout", "6m", "--json")
			if !strings.Contains(res.Match, "login:") {
				t.Errorf("xen2kvm boot matched %q, want the login prompt", res.Match)
			}
			// The same first-boot proof: the image still holds any
			// /.autorelabel the conversion left (the boot check ran on an
			// overlay), so the guest relabels again.
			firstBootProven(t, res.Boot, s, relabels)
			if testutil.HashFile(t, img) != before {
				t.Error("xen2kvm boot wrote to the migrated image (it boots with a snapshot)")
			}
		})
	}
}

// relabelsPlanned is how often a converted guest relabels and reboots at
// its first boot: once when the conversion left /.autorelabel (a guest
// whose files it could label gets none).
func relabelsPlanned(rep *report.Guest) int {
	for _, e := range rep.Edits {
		if e.Path == ".autorelabel" {
			return 1
		}
	}
	return 0
}

// firstBootProven checks a passed boot check's first-boot proof of a
// converted guestgen guest: it rebooted as often as it relabelled,
// powered off cleanly, its sshd
// stand-in answered over the network shaped to its own ifcfg, and the
// drift lists what every boot writes and flags nothing.
func firstBootProven(t *testing.T, b *report.Boot, s guestgen.Spec, reboots int) {
	t.Helper()
	if b == nil {
		t.Fatal("no boot result")
	}
	if !b.OK || b.Reboots != reboots || b.Shutdown != kvmrun.ShutdownPowerdown {
		t.Errorf("boot: ok %v, %d reboots, shutdown %q; want ok, %d reboots (relabels), powerdown\n%s", b.OK, b.Reboots, b.Shutdown, reboots, b.Detail)
	}
	if n := b.Network; n == nil || !n.OK || n.Proof != kvmrun.ProofTCP || !strings.Contains(n.Detail, "SSH-2.0-") {
		t.Errorf("network proof: %+v", n)
	} else if s.IPAddr != "" && (n.GuestIP != strings.Split(s.IPAddr, "/")[0] || !strings.HasPrefix(n.Config, "static "+s.IPAddr)) {
		t.Errorf("network proof of a static guest: %+v", n)
	}
	d := b.Drift
	if d == nil || d.Error != "" || d.Flagged != 0 {
		t.Fatalf("drift: %+v", d)
	}
	changed := map[string]string{}
	for _, f := range d.Files {
		changed[f.Path] = f.Change
	}
	for p, c := range map[string]string{"etc/mtab": "created", "var/lib/random-seed": "changed", "var/log/messages": "changed", "var/log/dmesg": "created"} {
		if changed[p] != c {
			t.Errorf("drift: %s %q, want %s (drift %v)", p, changed[p], c, changed)
		}
	}
	for _, f := range b.Findings {
		t.Errorf("console finding: %+v", f)
	}
}

// TestE2EUnconvertedDoesNotBoot boots the Xen guests as they are on the
// KVM hardware a migration gives them, with only the serial console moved
// to ttyS0 so the failure can be seen: the same non-Xen kernel the
// conversion picks, its own initrd and root=, on virtio disks (the
// two-disk guest with both). They must not reach a login prompt: the
// initrd has no driver for the disk.
func TestE2EUnconvertedDoesNotBoot(t *testing.T) {
	needE2E(t)
	for _, s := range []guestgen.Spec{guestgen.CentOS5PV, guestgen.TwoDisks} {
		t.Run(s.Name, func(t *testing.T) {
			t.Parallel()
			unconvertedDoesNotBoot(t, guest(t, s))
		})
	}
}

func unconvertedDoesNotBoot(t *testing.T, g *guestgen.Guest) {
	t.Helper()
	sourcesUnchanged(t, g)
	d, err := config.ParseFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Disks) != len(g.Images) {
		t.Fatalf("%d disks in the config, %d images", len(d.Disks), len(g.Images))
	}
	images := map[string]config.Image{}
	for i, disk := range d.Disks {
		images[disk.Target] = config.Image{Path: g.Images[i], Format: "raw"}
	}
	k, err := config.ToKVM(d, config.KVMOptions{Virtio: true, OS: "linux", Images: images})
	if err != nil {
		t.Fatal(err)
	}
	// The non-Xen kernel and its initrd, read from the source read-only.
	var release string
	for _, r := range g.Kernels {
		if !guestgen.IsXen(r) {
			release = r
		}
	}
	root := readOnlyGuest(t, g.Images[0], "xvda")
	kernel, initrd := bootFiles(t, root, "boot/vmlinuz-"+release, "boot/initrd-"+release+".img")
	// panic=1 with QEMU's -no-reboot ends the run when the kernel gives up.
	be := bootFails(t, k, kernel, initrd, "ro root=/dev/xvda2 console=ttyS0 panic=1")
	if be.Stage != kvmrun.StageInitrd && be.Stage != kvmrun.StageKernel {
		t.Errorf("stopped in stage %s, want the initrd failing to find its root", be.Stage)
	}
}

// readOnlyGuest opens the disk image at path (a source image or an
// overlay) and assembles the guest on it as target, read-only; both are
// closed when the test ends.
func readOnlyGuest(t *testing.T, path, target string) guestfs.FS {
	t.Helper()
	img, err := diskimg.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	ag, err := assemble.Open(context.Background(), []assemble.Disk{{Target: target, Dev: img}}, assemble.ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Close() })
	return ag.Root
}

// bootFiles copies a guest's kernel and initrd (paths in root) out to a
// temporary folder and returns their paths there, for QEMU's -kernel and
// -initrd.
func bootFiles(t *testing.T, root guestfs.FS, kernel, initrd string) (kernelPath, initrdPath string) {
	t.Helper()
	dir := t.TempDir()
	kernelPath, initrdPath = filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd.img")
	for src, dst := range map[string]string{kernel: kernelPath, initrd: initrdPath} {
		data, err := root.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return kernelPath, initrdPath
}

// bootFails boots k under TCG (a snapshot of its disks) from kernel and
// initrd with the kernel command line cmdline, and returns the
// BootError that must end the boot, logged with its serial tail; a boot
// that ends otherwise fails the test.
func bootFails(t *testing.T, k *config.KVMDomain, kernel, initrd, cmdline string) *kvmrun.BootError {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	_, err := kvmrun.Boot(ctx, k, kvmrun.WithAccel(kvmrun.AccelTCG), kvmrun.WithTimeout(3*time.Minute), kvmrun.WithSnapshot(true),
		kvmrun.WithQEMUOptions(config.QEMUOptions{Kernel: kernel, Initrd: initrd, Append: cmdline}))
	var be *kvmrun.BootError
	if !errors.As(err, &be) {
		t.Fatalf("the unconverted guest: %v, want a BootError", err)
	}
	t.Logf("unconverted guest stopped in stage %s: %s\n%s", be.Stage, be.Clue, strings.Join(be.SerialTail, "\n"))
	return be
}

// killDuring runs xen2kvm with args and kills it with SIGKILL as soon as
// during (asked every millisecond) says the run is where the test kills
// it. A run that ends first is undone with undo and tried again, five
// times at most; killDuring tells whether a run was killed.
func killDuring(t *testing.T, args []string, during func() bool, undo func()) bool {
	t.Helper()
	for attempt := 0; attempt < 5; attempt++ {
		cmd := exec.Command(xen2kvm(t), args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { cmd.Wait(); close(exited) }()
		for running := true; running; {
			select {
			case <-exited:
				running = false
			case <-time.After(time.Millisecond):
				if during() {
					cmd.Process.Signal(syscall.SIGKILL)
					<-exited
					return true
				}
			}
		}
		undo()
	}
	return false
}

// TestE2EKilledMidCopy kills xen2kvm with SIGKILL while it copies: nothing
// in OUTDIR looks complete, and running it again finishes the guest.
func TestE2EKilledMidCopy(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	out := filepath.Join(t.TempDir(), "kvm")
	args := []string{"migrate", g.Config, "-o", out, "--disk-map", diskMap(g), "--no-boot-check", "--workers", "1"}
	staging := filepath.Join(out, "."+g.Name+".xen2kvm-partial")
	// The copy takes a fraction of a second: watch for the copy engine's
	// temporary output and kill at once; try again if the run was faster.
	copying := func() bool {
		ents, _ := os.ReadDir(staging)
		for _, e := range ents {
			if strings.Contains(e.Name(), ".part-") { // diskimg.Convert's temporary output
				return true
			}
		}
		return false
	}
	if !killDuring(t, args, copying, func() { os.RemoveAll(out) }) {
		t.Fatal("never saw a temporary output file to kill the copy at")
	}
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("the killed run left %s in OUTDIR", e.Name())
		}
	}
	code, _, stderr := run(t, args...)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s", code, stderr)
	}
	for _, f := range []string{g.Name + ".report.json", g.Name + "-vda.qcow2", g.Name + ".xml", g.Name + ".sh"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Errorf("re-run: %v", err)
		}
	}
	if _, err := os.Stat(staging); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("re-run left the staging folder")
	}
}

// TestE2EBatchWithBrokenGuests runs a batch of a good guest and three
// broken ones: the good one migrates and boots, each broken one is
// reported with its reason, and the exit status is 1.
func TestE2EBatchWithBrokenGuests(t *testing.T) {
	needE2E(t)
	good := guest(t, guestgen.CentOS5PV)
	xenOnly := guest(t, guestgen.XenOnly)
	sourcesUnchanged(t, good)
	dir := t.TempDir()
	cfg, err := os.ReadFile(good.Config)
	if err != nil {
		t.Fatal(err)
	}
	// A copy of the good config whose disk is not there, and a config
	// that is not a config.
	missing := filepath.Join(dir, "nodisk")
	nodisk := strings.NewReplacer(`"`+good.Name+`"`, `"nodisk"`, `'`+good.Name+`'`, `'nodisk'`, good.Name+".img", "nodisk.img", "uuid", "#uuid").Replace(string(cfg))
	if !strings.Contains(nodisk, "nodisk.img") || !strings.Contains(nodisk, "nodisk\"") && !strings.Contains(nodisk, "nodisk'") {
		t.Fatalf("could not rename the config copy:\n%s", nodisk)
	}
	os.WriteFile(missing, []byte(nodisk), 0o644)
	corrupt := filepath.Join(dir, "corrupt")
	os.WriteFile(corrupt, []byte("name = 'corrupt\nmemory = [[[\n"), 0o644)
	manifest := filepath.Join(dir, "guests.yaml")
	os.WriteFile(manifest, []byte(`defaults:
  output: kvm
  disk_map:
    /var/lib/xen/images: `+filepath.Dir(good.Images[0])+`
guests:
  - config: `+good.Config+`
  - config: nodisk
  - config: corrupt
  - config: `+xenOnly.Config+`
    disk_map:
      /var/lib/xen/images: `+filepath.Dir(xenOnly.Images[0])+`
`), 0o644)
	var res pipeline.BatchResult
	runJSON(t, nil, 1, &res, "batch", manifest, "--jobs", "2", "--accel", "tcg", "--boot-timeout", "5m", "--json")
	want := []struct {
		status pipeline.GuestStatus
		reason string
	}{
		{pipeline.GuestMigrated, ""},
		{pipeline.GuestFailed, "nodisk.img"},
		{pipeline.GuestFailed, "corrupt"},
		{pipeline.GuestBlocked, "kernel"},
	}
	if len(res.Guests) != 4 {
		t.Fatalf("%d guests in the result", len(res.Guests))
	}
	for i, w := range want {
		g := res.Guests[i]
		if g.Status != w.status || !strings.Contains(g.Error, w.reason) {
			t.Errorf("guest %d (%s): %s %q, want %s with %q", i, g.Name, g.Status, g.Error, w.status, w.reason)
		}
	}
	r := res.Guests[0].Report
	if r == nil || r.Boot == nil || !r.Boot.OK {
		t.Errorf("the good guest did not boot: %+v", r)
	}
	// A re-run skips the migrated guest and tries the others again.
	code, stdout, _ := run(t, "batch", manifest, "--json")
	if code != 1 || json.Unmarshal([]byte(stdout), &res) != nil || res.Guests[0].Status != pipeline.GuestSkipped {
		t.Errorf("re-run: exit %d, %s", code, stdout)
	}
}

// TestE2EDryRunReport plans the plain guest without writing anything: the
// report has the diffs of grub.conf, fstab, modprobe.conf, inittab and
// the initrd change, and its HTML page renders in headless chromium with
// the guest's name and a diff line.
func TestE2EDryRunReport(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	dir := t.TempDir()
	out := filepath.Join(dir, "kvm")
	page := filepath.Join(dir, "plan.html")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, "migrate", g.Config, "-o", out, "--disk-map", diskMap(g), "--dry-run", "--json", "--report", page)
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dry run created %s", out)
	}
	edited := map[string]report.Edit{}
	for _, e := range rep.Edits {
		edited[e.Path] = e
	}
	for _, want := range []string{"boot/grub/grub.conf", "etc/fstab", "etc/modprobe.conf", "etc/inittab"} {
		e, ok := edited[want]
		if !ok || !strings.Contains(e.Diff, "\n+") || !strings.Contains(e.Diff, "\n-") {
			t.Errorf("no diff for /%s: %+v", want, e)
		}
	}
	initrd := false
	for p := range edited {
		if strings.HasPrefix(p, "boot/initrd-") && !strings.HasSuffix(p, "xen.img") {
			initrd = true
		}
	}
	if !initrd {
		t.Errorf("no initrd change among %v", rep.Edits)
	}
	if !strings.Contains(edited["etc/fstab"].Diff, "+/dev/vda") {
		t.Errorf("fstab diff does not move to vda:\n%s", edited["etc/fstab"].Diff)
	}
	d := rep.Disks[0]
	if d.VirtualSize != 256<<20 || d.Allocated <= 0 || d.Allocated > d.VirtualSize || d.EstimatedSize <= 0 || d.NewTarget != "vda" {
		t.Errorf("disk: %+v", d)
	}
	if !strings.Contains(rep.TargetXML, "<domain type=\"kvm\"") && !strings.Contains(rep.TargetXML, "<domain type='kvm'") {
		t.Errorf("target XML: %s", rep.TargetXML)
	}

	// The page in a real browser.
	bin := testutil.NeedTool(t, "chromium")
	flags := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
		"--user-data-dir=" + t.TempDir()}
	dom, err := exec.Command(bin, append(flags, "--dump-dom", "file://"+page)...).Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	if !bytes.Contains(dom, []byte(g.Name)) || !bytes.Contains(dom, []byte("+/dev/vda")) {
		t.Errorf("the rendered page lacks the guest's name or the fstab diff")
	}
	shot := filepath.Join(dir, "plan.png")
	if b, err := exec.Command(bin, append(flags, "--screenshot="+shot, "--window-size=1200,2400", "file://"+page)...).CombinedOutput(); err != nil {
		t.Fatalf("chromium --screenshot: %v\n%s", err, b)
	}
	f, err := os.Open(shot)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	colours := map[color.Color]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 3 {
		for x := b.Min.X; x < b.Max.X; x += 3 {
			colours[img.At(x, y)] = true
		}
	}
	if len(colours) < 8 {
		t.Errorf("the screenshot has %d colours: the page did not render", len(colours))
	}
}

// TestE2ERuleLeftOut shows the conversion rules matter: without the
// initrd rebuild the output fails validation (its initrd has no virtio
// driver), without the console rule the guest boots but never shows a
// login prompt on the serial console, and without the rules for RHEL 5's
// Xen leftovers the guest logs in but the first-boot check names what its
// boot showed. None leaves a finished guest behind. (With every rule,
// TestE2EMigrateBoots boots the same guests and passes.)
func TestE2ERuleLeftOut(t *testing.T) {
	needE2E(t)
	for _, tc := range []struct {
		spec       guestgen.Spec
		rule, want string
		// timeout is the boot's: 120s where no login prompt comes,
		// longer where the guest logs in and is checked after.
		timeout string
	}{
		{guestgen.CentOS5PV, "initrd", "initrd loads the virtio drivers", "120s"},
		{guestgen.CentOS5PV, "console", "boot check failed", "120s"},
		// The LVM guest's files carry SELinux labels: without the rule,
		// the files xen2kvm creates have none, and reading the output
		// back names them.
		{guestgen.CentOS5LVM, "selinux", "have no security.selinux label", "120s"},
		// Its LVM filter accepts only Xen disks: without the rule the
		// initrd's LVM does not see the root VG on virtio.
		{guestgen.CentOS5LVM, "lvm-filter", `Volume group \"VolGroup00\" not found`, "120s"},
		// The guest reaches its login prompt in these; what breaks is
		// on its console or in what it booted. Its rc.local insmods
		// kmod-xenpv's xen-vbd.ko, which finds no Xen device on KVM.
		{guestgen.CentOS5LVM, "rc-xen-modules", "names a Xen PV driver or disk, which KVM has not: \"insmod: can't insert '/lib/modules/2.6.18-164.el5/extra/xenpv/xen-vbd.ko'", "6m"},
		// Its kdump service dumps to /dev/xvda1, which is not there.
		{guestgen.CentOS5LVM, "kdump", "mkdumprd: dump target /dev/xvda1 (ext3) is not a block device", "6m"},
		// kernel-debug of the same version as kernel becomes grub's
		// default.
		{guestgen.CentOS5LVM, convert.RuleKernelChoice, "the guest booted kernel 2.6.18-164.el5debug (kernel-debug), a debug flavour", "6m"},
		// The RHEL 6 guest's ifcfg-eth0 has no HWADDR; its eth0 rests
		// on the 70-persistent-net.rules entry for the Xen NIC's MAC.
		// Migrated from a config whose vif gives no MAC (Xen drew one
		// at every boot), the KVM NIC has a new MAC, and udev names it
		// eth1. (With the rule, udev gives it eth0: see
		// TestE2ERHEL6.)
		{guestgen.RHEL6, "persistent-net", "udev recorded a new interface eth1: the NIC was renamed", "6m"},
	} {
		t.Run(tc.spec.Name+"/"+tc.rule, func(t *testing.T) {
			t.Parallel()
			cfg := ""
			if tc.spec.Name == guestgen.RHEL6.Name {
				testutil.NeedTool(t, "dracut")
				testutil.NeedTool(t, "depmod")
			}
			g := guest(t, tc.spec)
			sourcesUnchanged(t, g)
			if cfg = g.Config; tc.spec.Name == guestgen.RHEL6.Name {
				cfg = noVifMAC(t, g)
			}
			out := filepath.Join(t.TempDir(), "kvm")
			code, _, stderr := run(t, "migrate", cfg, "-o", out, "--disk-map", diskMap(g), "--skip-rule", tc.rule,
				"--boot-check", "--accel", "tcg", "--boot-timeout", tc.timeout)
			if code != 1 || !strings.Contains(stderr, tc.want) {
				t.Fatalf("exit %d, want 1 with %q in\n%s", code, tc.want, stderr)
			}
			if _, err := os.Stat(filepath.Join(out, g.Name+".report.json")); err == nil {
				t.Error("a report marks the failed guest as finished")
			}
		})
	}
}

// TestE2ETwoDisksMountsData migrates the two-disk guest: its data disk
// (volume group DataVG on xvdb1, DataVG/data on /data from fstab) becomes
// vdb, the initrd activates DataVG there and the first boot mounts it;
// rc.sysinit would print [FAILED] (a console finding) and stop at the
// maintenance prompt otherwise.
func TestE2ETwoDisksMountsData(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.TwoDisks)
	sourcesUnchanged(t, g)
	out := filepath.Join(t.TempDir(), "kvm")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, "migrate", g.Config, "-o", out, "--disk-map", diskMap(g),
		"--boot-check", "--accel", "tcg", "--boot-timeout", "6m", "--json")
	firstBootProven(t, rep.Boot, guestgen.TwoDisks, relabelsPlanned(&rep))
	if _, err := os.Stat(filepath.Join(out, g.Name+"-vdb.qcow2")); err != nil {
		t.Errorf("no image for the data disk: %v", err)
	}
	readable := false
	for _, c := range rep.Validation {
		readable = readable || c.Name == "filesystem DataVG/data readable" && c.OK
	}
	if !readable {
		t.Errorf("validation did not read DataVG/data: %+v", rep.Validation)
	}
	serial, _ := os.ReadFile(filepath.Join(out, g.Name+".boot.log"))
	if !bytes.Contains(serial, []byte(`1 logical volume(s) in volume group "DataVG" now active`)) ||
		!bytes.Contains(serial, []byte("Mounting local filesystems:  [  OK  ]")) || !bytes.Contains(serial, []byte("/data: clean, checked")) {
		t.Errorf("the boot did not check and mount /data:\n%s", serial)
	}
}
