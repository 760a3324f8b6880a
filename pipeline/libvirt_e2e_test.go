package pipeline_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testlibvirtd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
)

// noVif copies a guest's Xen config without its network: the private
// test daemon runs in session mode and cannot attach a guest to the
// config's bridge, so --start needs a guest without one.
func noVif(t *testing.T, g *guestgen.Guest) string {
	t.Helper()
	b, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "vif") {
			keep = append(keep, l)
		}
	}
	p := filepath.Join(t.TempDir(), g.Name)
	if err := os.WriteFile(p, []byte(strings.Join(keep, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestE2EMigrateToLibvirt migrates the example guest --to a private
// libvirt daemon: the volumes and the domain are there (virsh as the
// oracle), the boot check ran on the destination through libvirt's
// console stream, the volume equals a local migration's image (qemu-img
// compare), a second run without --force is refused without touching
// anything, and one with --force --start replaces the guest and leaves it
// running.
func TestE2EMigrateToLibvirt(t *testing.T) {
	needE2E(t)
	qimg := testutil.NeedTool(t, "qemu-img")
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	cfg := noVif(t, g)
	// Both migrations stamp the guest's edits with the same time, so the
	// volume and the local image hold the same guest data.
	epoch := []string{"SOURCE_DATE_EPOCH=1700000000"}
	out := filepath.Join(t.TempDir(), "report")
	args := []string{"migrate", cfg, "--to", d.URI, "-o", out, "--disk-map", diskMap(g), "--boot-check", "--boot-timeout", "4m"}
	var rep report.Guest
	runJSON(t, epoch, 0, &rep, append(args, "--json")...)
	if rep.Status != report.StatusMigrated || rep.Boot == nil || !rep.Boot.OK || rep.Destination == nil || !rep.Destination.Defined || rep.Destination.Started {
		t.Fatalf("report: status %s, boot %+v, destination %+v", rep.Status, rep.Boot, rep.Destination)
	}
	if rep.Destination.DomainType != "qemu" {
		t.Errorf("domain type %q, want qemu (the test daemon has no KVM)", rep.Destination.DomainType)
	}
	// The report and XML are written locally; no image is.
	for _, f := range []string{g.Name + ".report.json", g.Name + ".xml", g.Name + ".boot.log"} {
		if _, err := os.Stat(filepath.Join(out, f)); err != nil {
			t.Error(err)
		}
	}
	if m, _ := filepath.Glob(filepath.Join(out, "*.qcow2")); len(m) > 0 {
		t.Errorf("images written locally: %v", m)
	}
	if serial, _ := os.ReadFile(filepath.Join(out, g.Name+".boot.log")); !regexp.MustCompile(`login:`).Match(serial) {
		t.Errorf("the destination's console log has no login prompt:\n%s", serial)
	}

	vols := d.Volumes(t, "default")
	want := []string{g.Name + "-initrd.img", g.Name + "-vda.qcow2", g.Name + "-vmlinuz"}
	if strings.Join(vols, " ") != strings.Join(want, " ") {
		t.Errorf("vol-list: %v, want %v (no state volume, no boot overlay)", vols, want)
	}
	info := d.Virsh(t, "vol-info", "--pool", "default", g.Name+"-vda.qcow2", "--bytes")
	if !strings.Contains(info, "file") {
		t.Errorf("vol-info:\n%s", info)
	}
	xml := d.Virsh(t, "dumpxml", g.Name)
	for _, w := range []string{`<domain type='qemu'`, `<source pool='default' volume='` + g.Name + `-vda.qcow2'`, `<driver name='qemu' type='qcow2'/>`, filepath.Join(poolDir, g.Name+"-vmlinuz")} {
		if !strings.Contains(xml, w) {
			t.Errorf("dumpxml has no %s:\n%s", w, xml)
		}
	}
	if st := strings.TrimSpace(d.Virsh(t, "domstate", g.Name)); st != "shut off" {
		t.Errorf("domstate %s without --start", st)
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != g.Name {
		t.Errorf("domains: %q, want only %s (the boot check's transient copy is gone)", l, g.Name)
	}

	// The volume holds what a local migration writes.
	local := filepath.Join(t.TempDir(), "local")
	if code, _, stderr := runEnv(t, epoch, "migrate", cfg, "-o", local, "--disk-map", diskMap(g), "--no-boot-check"); code != 0 {
		t.Fatalf("local migrate: exit %d\n%s", code, stderr)
	}
	vol := filepath.Join(poolDir, g.Name+"-vda.qcow2")
	if b, err := exec.Command(qimg, "compare", vol, filepath.Join(local, g.Name+"-vda.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare volume vs local image: %v\n%s", err, b)
	}
	if b, err := exec.Command(qimg, "check", vol).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check %s: %v\n%s", vol, err, b)
	}

	// Again, without --force: refused, nothing changes.
	code, _, stderr := runEnv(t, epoch, append(args, "-o", t.TempDir())...)
	if code != 1 || !strings.Contains(stderr, "domain "+g.Name+" already exists") {
		t.Errorf("second run: exit %d, want 1 and an error saying the domain exists:\n%s", code, stderr)
	}
	if v := d.Volumes(t, "default"); strings.Join(v, " ") != strings.Join(want, " ") {
		t.Errorf("after the refused run: %v", v)
	}
	uuid := d.Virsh(t, "domuuid", g.Name)

	// With --force --start: replaced and running.
	code, _, stderr = runEnv(t, epoch, append(args[:len(args)-3], "-o", t.TempDir(), "--no-boot-check", "--force", "--start")...)
	if code != 0 {
		t.Fatalf("--force --start: exit %d\n%s", code, stderr)
	}
	if st := strings.TrimSpace(d.Virsh(t, "domstate", g.Name)); st != "running" {
		t.Errorf("domstate %s after --start", st)
	}
	if d.Virsh(t, "domuuid", g.Name) != uuid {
		t.Errorf("the replaced domain has another UUID")
	}
	if v := d.Volumes(t, "default"); strings.Join(v, " ") != strings.Join(want, " ") {
		t.Errorf("after --force: %v", v)
	}
}

// TestE2EMigrateToFullPool: a pool without room for the guest is refused
// before anything is written, with an error that says so.
func TestE2EMigrateToFullPool(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	d.TmpfsPool(t, "small", 16)
	code, _, stderr := run(t, "migrate", g.Config, "--to", d.URI, "--pool", "small", "-o", t.TempDir(), "--disk-map", diskMap(g), "--no-boot-check")
	if code != 1 || !strings.Contains(stderr, "not enough free space in the storage pool") {
		t.Errorf("exit %d, want 1 and a pool-full error:\n%s", code, stderr)
	}
	if v := d.Volumes(t, "small"); len(v) != 0 {
		t.Errorf("the pool has %v", v)
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != "" {
		t.Errorf("domains defined: %s", l)
	}
}

// TestE2EBatchFleet: a batch with two destinations places the guest on
// the one whose pool has room (the other's is a 16 MiB tmpfs) and says
// why in the report; the other destination is left untouched.
func TestE2EBatchFleet(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	small := testlibvirtd.Start(t)
	small.TmpfsPool(t, "default", 16)
	big := testlibvirtd.Start(t)
	big.DirPool(t, "default")
	dir := t.TempDir()
	manifest := filepath.Join(dir, "fleet.yaml")
	yaml := "defaults:\n  output: " + filepath.Join(dir, "out") + "\n  boot_check: false\n" +
		"  disk_map:\n    " + g.XenImageDir + ": " + filepath.Dir(g.Images[0]) + "\n" +
		"  to: ['" + small.URI + "', '" + big.URI + "']\n" +
		"guests:\n  - config: " + g.Config + "\n"
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var res batchResult
	runJSON(t, nil, 0, &res, "batch", manifest, "--json")
	if len(res.Guests) != 1 || res.Guests[0].Report == nil || res.Guests[0].Report.Destination == nil {
		t.Fatalf("batch result: %+v", res.Guests)
	}
	dest := res.Guests[0].Report.Destination
	if dest.URI != big.URI || !strings.Contains(dest.Placement, "pool has 16 MiB available") {
		t.Errorf("placed on %s (%s), want %s with the small pool left out", dest.URI, dest.Placement, big.URI)
	}
	if v := big.Volumes(t, "default"); len(v) != 3 {
		t.Errorf("the chosen destination's pool: %v", v)
	}
	if v := small.Volumes(t, "default"); len(v) != 0 {
		t.Errorf("the full destination's pool: %v", v)
	}
	if l := strings.TrimSpace(big.Virsh(t, "list", "--all", "--name")); l != g.Name {
		t.Errorf("domains on the chosen destination: %q", l)
	}
}

// TestE2EMigrateToKilled kills xen2kvm with SIGKILL while it uploads: no
// domain is defined, the state volume names what was left, and a re-run
// without --force recognises those volumes and replaces them.
func TestE2EMigrateToKilled(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	args := []string{"migrate", g.Config, "--to", d.URI, "-o", t.TempDir(), "--disk-map", diskMap(g), "--no-boot-check", "--workers", "1"}
	vol := filepath.Join(poolDir, g.Name+"-vda.qcow2")
	// Past the qcow2 header qemu-img wrote: the upload is under way.
	uploading := func() bool {
		fi, err := os.Stat(vol)
		return err == nil && fi.Size() > 4<<20
	}
	undo := func() {
		d.VirshErr("undefine", g.Name)
		for _, v := range d.Volumes(t, "default") {
			d.VirshErr("vol-delete", "--pool", "default", v)
		}
	}
	if !killDuring(t, args, uploading, undo) {
		t.Fatal("never caught the upload under way")
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != "" {
		t.Errorf("the killed run left a domain: %s", l)
	}
	left := d.Volumes(t, "default")
	if !slices.Contains(left, g.Name+".xen2kvm-state") {
		t.Fatalf("the killed run left %v, without its state volume", left)
	}
	var rep report.Guest
	runJSON(t, nil, 0, &rep, append(args, "--json")...)
	if rep.Destination == nil || !slices.Contains(rep.Destination.Recovered, g.Name+"-vda.qcow2") {
		t.Errorf("the re-run did not say it replaced the killed run's volume: %+v", rep.Destination)
	}
	if v := d.Volumes(t, "default"); slices.Contains(v, g.Name+".xen2kvm-state") || len(v) != 3 {
		t.Errorf("after the re-run: %v", v)
	}
	if b, err := exec.Command(testutil.NeedTool(t, "qemu-img"), "check", vol).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, b)
	}
}

// TestE2EMigrateToBootFails: a boot check on the destination that fails
// (here: it cannot reach the login prompt in 15 seconds) fails the
// migration and leaves nothing there: no domain, no volume, no overlay.
func TestE2EMigrateToBootFails(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	out := t.TempDir()
	code, _, stderr := run(t, "migrate", g.Config, "--to", d.URI, "-o", out, "--disk-map", diskMap(g), "--boot-check", "--boot-timeout", "15s")
	if code != 1 || !strings.Contains(stderr, "the guest did not boot on "+d.URI+": no login prompt on the console within 15s") {
		t.Fatalf("exit %d, want 1 and the boot failure:\n%s", code, stderr)
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != "" {
		t.Errorf("domains left: %s", l)
	}
	if v := d.Volumes(t, "default"); len(v) != 0 {
		t.Errorf("volumes left: %v", v)
	}
	if _, err := os.Stat(filepath.Join(out, g.Name+".boot-failed.log")); err != nil {
		t.Errorf("no console log kept: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, g.Name+".report.json")); err == nil {
		t.Error("a report marks the failed guest as done")
	}
}

// TestE2EMigrateToKilledDuringBoot kills xen2kvm while the boot check
// runs on the destination: the re-run stops the transient copy the killed
// run left, deletes its overlays and finishes the guest.
func TestE2EMigrateToKilledDuringBoot(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	args := []string{"migrate", g.Config, "--to", d.URI, "-o", t.TempDir(), "--disk-map", diskMap(g)}
	cmd := exec.Command(xen2kvm(t), append(args, "--boot-check", "--boot-timeout", "5m")...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	boot := g.Name + "-xen2kvm-boot"
	deadline := time.Now().Add(3 * time.Minute)
	for {
		out, _ := d.VirshErr("list", "--name")
		if strings.Contains(out, boot) {
			break
		}
		select {
		case <-exited:
			t.Fatal("xen2kvm ended before its boot check started")
		default:
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the boot check's transient domain never appeared")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
	if out := d.Virsh(t, "list", "--name"); !strings.Contains(out, boot) {
		t.Fatalf("the transient copy died with xen2kvm (%q): nothing for the re-run to clean", out)
	}
	code, _, stderr := run(t, append(args, "--no-boot-check")...)
	if code != 0 {
		t.Fatalf("re-run: exit %d\n%s", code, stderr)
	}
	if l := strings.TrimSpace(d.Virsh(t, "list", "--all", "--name")); l != g.Name {
		t.Errorf("domains after the re-run: %q, want only %s", l, g.Name)
	}
	if v := d.Volumes(t, "default"); len(v) != 3 {
		t.Errorf("volumes after the re-run: %v", v)
	}
}

// TestE2EBatchRerunKeepsForeignDomain: a batch guest refused because the
// destination has a domain of its name is refused again when the batch
// is re-run (a re-run replaces only what xen2kvm's own interrupted runs
// left), and the domain that was there is untouched.
func TestE2EBatchRerunKeepsForeignDomain(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	dir := t.TempDir()
	foreign := filepath.Join(dir, "foreign.xml")
	os.WriteFile(foreign, []byte(`<domain type='qemu'><name>`+g.Name+`</name><memory unit='MiB'>32</memory><os><type arch='x86_64'>hvm</type></os></domain>`), 0o644)
	d.Virsh(t, "define", foreign)
	uuid := d.Virsh(t, "domuuid", g.Name)
	manifest := filepath.Join(dir, "m.yaml")
	yaml := "defaults:\n  output: " + filepath.Join(dir, "out") + "\n  boot_check: false\n" +
		"  disk_map:\n    " + g.XenImageDir + ": " + filepath.Dir(g.Images[0]) + "\n" +
		"  to: '" + d.URI + "'\nguests:\n  - config: " + g.Config + "\n"
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 2; i++ {
		code, stdout, _ := run(t, "batch", manifest, "--json")
		if code != 1 || !strings.Contains(stdout, "domain "+g.Name+" already exists") {
			t.Errorf("run %d: exit %d, want 1 and the guest refused:\n%s", i, code, stdout)
		}
	}
	if d.Virsh(t, "domuuid", g.Name) != uuid {
		t.Error("the batch re-run replaced the domain that was there")
	}
	if v := d.Volumes(t, "default"); len(v) != 0 {
		t.Errorf("volumes: %v", v)
	}
}

// TestE2EBatchUploadsPerHost delivers three guests of a batch (--jobs 3)
// to one libvirt host with one upload slot per host: the uploads are
// counted from the batch's progress callbacks, which run inside the
// uploads, and the first one holds its upload until the other two
// guests wait for the slot, so all three are ready to upload at once and
// still never more than one does. Every guest ends defined there.
func TestE2EBatchUploadsPerHost(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	dir := t.TempDir()
	src, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"upa", "upb", "upc"}
	yaml := "defaults:\n  output: " + filepath.Join(dir, "out") + "\n  boot_check: false\n" +
		"  disk_map:\n    " + g.XenImageDir + ": " + filepath.Dir(g.Images[0]) + "\n" +
		"  to: '" + d.URI + "'\nguests:\n"
	for i, n := range names {
		// Three guests on the same (read-only) image, each with its own
		// name and UUID.
		cfg := regexp.MustCompile(`(?m)^name = .*$`).ReplaceAll(src, []byte(`name = "`+n+`"`))
		cfg = regexp.MustCompile(`(?m)^uuid = .*$`).ReplaceAll(cfg, []byte(`uuid = "00000000-0000-4000-8000-00000000000`+strconv.Itoa(i+1)+`"`))
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		yaml += "  - config: " + p + "\n"
	}
	manifest := filepath.Join(dir, "batch.yaml")
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := pipeline.LoadManifest(manifest)
	if err != nil {
		t.Fatal(err)
	}

	waits := make(chan string, len(names))
	var mu sync.Mutex
	uploading := map[string]bool{}
	var most int
	held := false
	progress := func(p pipeline.Progress) {
		mu.Lock()
		first := !uploading[p.Guest] && !held
		if !uploading[p.Guest] {
			uploading[p.Guest] = true
			n := 0
			for _, u := range uploading {
				if u {
					n++
				}
			}
			most = max(most, n)
			held = true
		}
		mu.Unlock()
		if first {
			// The first upload goes on once both other guests wait.
			for range len(names) - 1 {
				select {
				case <-waits:
				case <-time.After(5 * time.Minute):
					t.Error("the other guests never waited for an upload slot")
					return
				}
			}
		}
		if p.Finish {
			mu.Lock()
			uploading[p.Guest] = false
			mu.Unlock()
		}
	}
	opts := pipeline.BatchOptions{Jobs: len(names), RunOptions: pipeline.RunOptions{Progress: progress}}
	pipeline.SetUploadSlots(&opts, 1, func(string) { waits <- "" })
	res, err := pipeline.RunBatch(context.Background(), m, opts)
	if err != nil {
		t.Fatalf("batch: %v (%+v)", err, res)
	}
	if most != 1 {
		t.Errorf("%d guests uploaded to the host at once, want 1", most)
	}
	if len(uploading) != len(names) {
		t.Errorf("uploads seen: %v", uploading)
	}
	if l := strings.Fields(d.Virsh(t, "list", "--all", "--name")); !slices.Equal(l, names) {
		t.Errorf("domains on the host: %q, want %q", l, names)
	}
}

// TestE2EMigrateWindowsVirtioWinToLibvirt migrates a Windows 2008 guest
// with --virtio-win (an ISO) --to a private libvirt daemon: the guest's
// disk, the first-boot disk and the ISO are volumes of the pool (virsh
// vol-list), the defined domain names only volumes (virsh dumpxml), the
// first-boot volume holds the script (mtype), NAME-virtio.xml is written
// locally with the guest's volume on virtio and nothing else
// (virt-xml-validate), the destination's libvirt accepts it (virsh define
// of it replaces the domain, which then has vda on the volume), and the
// report lists it and says how to define it there. No image is left in
// OUTDIR.
func TestE2EMigrateWindowsVirtioWinToLibvirt(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts a libvirt daemon; skipped with -short")
	}
	t.Parallel()
	testutil.NeedTool(t, "mtype")
	testutil.NeedTool(t, "virt-xml-validate")
	g := wintest.Build(t, guestgen.WindowsSpec{Name: "w2k8to", Version: "2008", Arch: "x64", PV: "citrix"})
	sourcesUnchanged(t, g)
	iso := filepath.Join(t.TempDir(), "virtio-win.iso")
	testutil.Run(t, testutil.NeedTool(t, "genisoimage"), "-quiet", "-J", "-R", "-o", iso, wintest.VirtioWinTree(t))
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	cfg := noVif(t, g)
	out := filepath.Join(t.TempDir(), "report")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, "migrate", cfg, "--to", d.URI, "-o", out, "--disk-map", diskMap(g), "--virtio-win", iso, "--format", "raw", "--json")
	if rep.Status != report.StatusMigrated || rep.Destination == nil || !rep.Destination.Defined {
		t.Fatalf("report: status %s, destination %+v", rep.Status, rep.Destination)
	}
	name := g.Name
	hda, hdb, isoVol := name+"-hda.raw", name+"-hdb.raw", sharedISOName(t, iso)
	if vols, want := d.Volumes(t, "default"), []string{isoVol, hda, hdb}; !slices.Equal(vols, want) {
		t.Errorf("vol-list: %v, want %v", vols, want)
	}
	// The ISO is shared, not the guest's own.
	if !slices.Equal(rep.Destination.Volumes, []string{hda, hdb}) || !slices.Equal(rep.Destination.Shared, []report.SharedVolume{{Name: isoVol, Uploaded: true}}) {
		t.Errorf("report volumes %v, shared %v", rep.Destination.Volumes, rep.Destination.Shared)
	}
	// The ISO volume is the ISO; the first-boot volume holds the script.
	if testutil.HashFile(t, filepath.Join(poolDir, isoVol)) != testutil.HashFile(t, iso) {
		t.Error("the ISO volume differs from the ISO")
	}
	cmd := exec.Command("mtype", "-i", filepath.Join(poolDir, hdb)+"@@1048576", "::XEN2KVM/FIRSTBOOT.CMD")
	cmd.Env = append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	if script, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(script), "pnputil -i -a") {
		t.Errorf("mtype FIRSTBOOT.CMD on the volume: %v\n%s", err, script)
	}
	// The defined domain names volumes only, none of this host's files.
	xml := d.Virsh(t, "dumpxml", name)
	for _, w := range []string{
		`<source pool='default' volume='` + hda + `'/>`, `<target dev='hda' bus='ide'/>`,
		`<source pool='default' volume='` + hdb + `'/>`, `<target dev='hdb' bus='ide'/>`,
		`<source pool='default' volume='` + isoVol + `'/>`, `<disk type='volume' device='cdrom'>`,
	} {
		if !strings.Contains(xml, w) {
			t.Errorf("dumpxml lacks %s:\n%s", w, xml)
		}
	}
	for _, bad := range []string{out, iso, "<source file="} {
		if strings.Contains(xml, bad) {
			t.Errorf("dumpxml names %s:\n%s", bad, xml)
		}
	}
	// OUTDIR: the XMLs and the report, no image.
	var files []string
	ents, _ := os.ReadDir(out)
	for _, e := range ents {
		files = append(files, e.Name())
	}
	if want := []string{name + "-virtio.xml", name + ".report.json", name + ".xml"}; !slices.Equal(files, want) {
		t.Errorf("OUTDIR holds %v, want %v", files, want)
	}
	if !slices.Contains(rep.Files, name+"-virtio.xml") {
		t.Errorf("report files %v lack the virtio XML", rep.Files)
	}
	vxPath := filepath.Join(out, name+"-virtio.xml")
	vx, err := os.ReadFile(vxPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{`<source pool="default" volume="` + hda + `">`, `<target dev="vda" bus="virtio">`, `<domain type="qemu">`} {
		if !strings.Contains(string(vx), w) {
			t.Errorf("virtio XML lacks %s:\n%s", w, vx)
		}
	}
	// The Xen config's empty CD-ROM drive, which held the ISO, is empty
	// again.
	for _, bad := range []string{hdb, isoVol, iso, `<target dev="hda"`, `<target dev="hdb"`, "<source file="} {
		if strings.Contains(string(vx), bad) {
			t.Errorf("virtio XML has %s:\n%s", bad, vx)
		}
	}
	if n := strings.Count(string(vx), "<source "); n != 1 {
		t.Errorf("virtio XML has %d disk sources, want the guest's volume only:\n%s", n, vx)
	}
	if o, err := exec.Command("virt-xml-validate", vxPath, "domain").CombinedOutput(); err != nil {
		t.Errorf("virt-xml-validate: %v\n%s", err, o)
	}
	notes := strings.Join(rep.Notes, "\n")
	for _, want := range []string{
		"virsh -c " + d.URI + " define " + vxPath,
		"virsh -c " + d.URI + " define " + name + "-virtio.xml, then virsh -c " + d.URI + " start " + name,
		"virsh -c " + d.URI + " vol-delete --pool default " + hdb + ")",
		"the virtio-win ISO is the volume " + isoVol + " in pool default, shared by every Windows guest",
		"only once no guest uses it",
	} {
		if !strings.Contains(notes, want) {
			t.Errorf("notes lack %q:\n%s", want, notes)
		}
	}
	if regexp.MustCompile(`virsh (define|start|vol-delete)`).MatchString(notes) {
		t.Errorf("a note has a virsh command without -c %s:\n%s", d.URI, notes)
	}
	// The destination takes it: the same domain (its UUID), now on virtio.
	uuid := d.Virsh(t, "domuuid", name)
	d.Virsh(t, "define", vxPath)
	if d.Virsh(t, "domuuid", name) != uuid {
		t.Error("the virtio XML defined another domain")
	}
	var blk []string
	for _, l := range strings.Split(strings.TrimSpace(d.Virsh(t, "domblklist", "--details", name)), "\n") {
		blk = append(blk, strings.Join(strings.Fields(l), " "))
	}
	if want := []string{"volume disk vda " + hda, "file cdrom hdc -"}; !slices.Equal(blk, want) {
		t.Errorf("domblklist --details after defining the virtio XML: %q, want %q", blk, want)
	}
}

// sharedISOName is the shared volume's name of the ISO at p:
// virtio-win- and the first 12 hex digits of its SHA-256 (sha256sum as
// the oracle).
func sharedISOName(t *testing.T, p string) string {
	t.Helper()
	out, err := exec.Command("sha256sum", p).Output()
	if err != nil {
		t.Fatalf("sha256sum: %v", err)
	}
	return "virtio-win-" + string(out[:12]) + ".iso"
}

// TestE2EBatchWindowsVirtioWinSharedISO migrates two Windows guests of
// one batch (--jobs 2, so both deliver at once) with the same
// --virtio-win ISO into one pool: the pool holds one ISO volume, named
// by its SHA-256, which one guest uploaded and the other reused (the
// reports), both defined domains and NAME.xml name it, the XMLs pass
// virt-xml-validate. A third guest migrated with --start, which the
// test daemon cannot start (the bridge of its Xen vif is not there),
// reuses the ISO without writing it (its mtime) and its rollback deletes
// its own volumes and domain, not the ISO.
func TestE2EBatchWindowsVirtioWinSharedISO(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end: starts a libvirt daemon; skipped with -short")
	}
	t.Parallel()
	testutil.NeedTool(t, "virt-xml-validate")
	g := wintest.Build(t, guestgen.WindowsSpec{Name: "w2k8sh", Version: "2008", Arch: "x64", PV: "citrix"})
	sourcesUnchanged(t, g)
	dir := t.TempDir()
	iso := filepath.Join(dir, "virtio-win.iso")
	testutil.Run(t, testutil.NeedTool(t, "genisoimage"), "-quiet", "-J", "-R", "-o", iso, wintest.VirtioWinTree(t))
	isoVol := sharedISOName(t, iso)
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	src, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	// Guests on the same (read-only) image, each with its own name and
	// UUID; the batch's without their vif (the test daemon cannot attach
	// them to the config's bridge).
	config := func(n string, i int, vif bool) string {
		cfg := regexp.MustCompile(`(?m)^name = .*$`).ReplaceAll(src, []byte(`name = "`+n+`"`))
		cfg = regexp.MustCompile(`(?m)^uuid = .*$`).ReplaceAll(cfg, []byte(`uuid = "00000000-0000-4000-8000-00000000000`+strconv.Itoa(i)+`"`))
		if !vif {
			cfg = regexp.MustCompile(`(?m)^vif = .*$`).ReplaceAll(cfg, nil)
		}
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	names := []string{"wsha", "wshb"}
	out := filepath.Join(dir, "out")
	yaml := "defaults:\n  output: " + out + "\n  boot_check: false\n  format: raw\n" +
		"  disk_map:\n    " + g.XenImageDir + ": " + filepath.Dir(g.Images[0]) + "\n" +
		"  to: '" + d.URI + "'\n  virtio_win: " + iso + "\nguests:\n"
	for i, n := range names {
		yaml += "  - config: " + config(n, i+1, false) + "\n"
	}
	manifest := filepath.Join(dir, "batch.yaml")
	if err := os.WriteFile(manifest, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var res batchResult
	runJSON(t, nil, 0, &res, "batch", manifest, "--jobs", "2", "--json")
	uploads := 0
	for i, gr := range res.Guests {
		if gr.Report == nil || gr.Report.Destination == nil || !gr.Report.Destination.Defined {
			t.Fatalf("guest %d: %+v", i, gr)
		}
		sh := gr.Report.Destination.Shared
		if len(sh) != 1 || sh[0].Name != isoVol {
			t.Errorf("%s: shared volumes %+v, want %s", gr.Report.Name, sh, isoVol)
			continue
		}
		if sh[0].Uploaded {
			uploads++
		}
		if slices.Contains(gr.Report.Destination.Volumes, isoVol) {
			t.Errorf("%s counts the shared ISO as its own volume: %v", gr.Report.Name, gr.Report.Destination.Volumes)
		}
	}
	if uploads != 1 {
		t.Errorf("%d guests uploaded the ISO, want 1", uploads)
	}
	want := []string{isoVol, "wsha-hda.raw", "wsha-hdb.raw", "wshb-hda.raw", "wshb-hdb.raw"}
	if v := d.Volumes(t, "default"); !slices.Equal(v, want) {
		t.Errorf("vol-list: %v, want %v (one ISO volume)", v, want)
	}
	if testutil.HashFile(t, filepath.Join(poolDir, isoVol)) != testutil.HashFile(t, iso) {
		t.Error("the ISO volume differs from the ISO")
	}
	cd := `<source pool='default' volume='` + isoVol + `'/>`
	for _, n := range names {
		if xml := d.Virsh(t, "dumpxml", n); !strings.Contains(xml, cd) {
			t.Errorf("domain %s does not name the shared ISO:\n%s", n, xml)
		}
		x := filepath.Join(out, n, n+".xml")
		if b, _ := os.ReadFile(x); !strings.Contains(string(b), `<source pool="default" volume="`+isoVol+`">`) {
			t.Errorf("%s does not name the shared ISO:\n%s", x, b)
		}
		for _, f := range []string{x, filepath.Join(out, n, n+"-virtio.xml")} {
			if o, err := exec.Command("virt-xml-validate", f, "domain").CombinedOutput(); err != nil {
				t.Errorf("virt-xml-validate %s: %v\n%s", f, err, o)
			}
		}
	}
	fi, err := os.Stat(filepath.Join(poolDir, isoVol))
	if err != nil {
		t.Fatal(err)
	}

	// A third guest fails after its upload and is rolled back.
	code, _, stderr := run(t, "migrate", config("wshc", 3, true), "--to", d.URI, "-o", filepath.Join(dir, "out3"), "--disk-map", diskMap(g),
		"--virtio-win", iso, "--format", "raw", "--no-boot-check", "--start")
	if code != 1 || !strings.Contains(stderr, "starting domain wshc") {
		t.Fatalf("third guest: exit %d, want 1 and its start failing:\n%s", code, stderr)
	}
	if v := d.Volumes(t, "default"); !slices.Equal(v, want) {
		t.Errorf("after the third guest's rollback: %v, want %v", v, want)
	}
	if l := strings.Fields(d.Virsh(t, "list", "--all", "--name")); !slices.Equal(l, names) {
		t.Errorf("domains after the rollback: %q, want %q", l, names)
	}
	fi2, err := os.Stat(filepath.Join(poolDir, isoVol))
	if err != nil {
		t.Fatal(err)
	}
	if !fi2.ModTime().Equal(fi.ModTime()) {
		t.Errorf("the third guest wrote the ISO volume again (mtime %s, was %s)", fi2.ModTime(), fi.ModTime())
	}
}

// batchResult is what batch --json prints: a status and report a guest.
type batchResult struct {
	Guests []struct {
		Status string
		Report *report.Guest
	}
}
