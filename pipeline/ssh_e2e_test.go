package pipeline_test

// End-to-end tests of ssh:// sources: guestgen's CentOS 5 guest on a
// stand-in Xen host (Debian's sshd with OpenSSH 4.3's algorithms and a
// stand-in xm, internal/testsshd), discovered, migrated over SSH and
// booted; a connection dropped mid-copy and a host that goes away.

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
	"github.com/xen2kvm/xen2kvm/xenhost"
)

// xenHost starts a stand-in Xen host with guest g (its config naming the
// images where they are) as a config file, and a running guest "busy".
func xenHost(t *testing.T, g *guestgen.Guest) *testsshd.Server {
	t.Helper()
	data, err := os.ReadFile(g.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(strings.ReplaceAll(string(data), g.XenImageDir, filepath.Dir(g.Images[0])))
	return testsshd.Start(t, testsshd.Options{Guests: []testsshd.Guest{
		{Name: g.Name, Config: cfg},
		{Name: "busy", Config: cfg, Running: true, NoFile: true},
	}})
}

// TestE2ESSHDiscoverMigrateBoot discovers the stand-in host's guests,
// writes a manifest, migrates the example guest over SSH and boots it,
// refuses the running guest, and runs the manifest as a batch twice (the
// second run resumes: the guest done is skipped).
func TestE2ESSHDiscoverMigrateBoot(t *testing.T) {
	needE2E(t)
	testutil.NeedTool(t, "/usr/sbin/sshd")
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	srv := xenHost(t, g)
	dir := t.TempDir()

	// Discovery: both guests, their state, where the config came from,
	// the disk's size and the OS inside; a manifest for them.
	manifest := filepath.Join(dir, "xen.yaml")
	var found []report.Inspection
	stderr := runJSON(t, nil, 0, &found, append([]string{"inspect", srv.URL(""), "--json", "--manifest", manifest}, srv.Flags()...)...)
	byName := map[string]report.Inspection{}
	for _, r := range found {
		if r.Domain != nil {
			byName[r.Name] = r
		}
	}
	web, busy := byName[g.Name], byName["busy"]
	if web.Host == nil || busy.Host == nil {
		t.Fatalf("inspect found %d guests: %+v", len(found), found)
	}
	if web.Host.Running || !busy.Host.Running || web.Host.ConfigFrom != "xm create --dryrun "+filepath.Join(srv.ConfigDir, g.Name) || busy.Host.ConfigFrom != "xm list -l busy" {
		t.Errorf("host views: %+v / %+v", web.Host, busy.Host)
	}
	fi, _ := os.Stat(g.Images[0])
	if len(web.Host.Disks) != 1 || web.Host.Disks[0].Size != fi.Size() {
		t.Errorf("disk sizes: %+v, want %d", web.Host.Disks, fi.Size())
	}
	if web.Guest == nil || web.Guest.OS == nil || web.Guest.OS.Distro == "" {
		t.Errorf("the OS inside %s was not read: %+v", g.Name, web.Guest)
	}
	if !strings.Contains(stderr, "legacy SSH algorithms") || !strings.Contains(stderr, "diffie-hellman-group14-sha1") {
		t.Errorf("no warning about the legacy algorithms:\n%s", stderr)
	}
	m, err := pipeline.LoadManifest(manifest)
	if err != nil {
		t.Fatalf("the written manifest: %v", err)
	}
	var configs []string
	for _, mg := range m.Guests {
		configs = append(configs, mg.Config)
	}
	if len(configs) != 2 || configs[0] != srv.URL("busy") || configs[1] != srv.URL(g.Name) {
		t.Errorf("manifest guests %q", configs)
	}

	// Migrate over SSH and boot.
	out := filepath.Join(dir, "one")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, append([]string{"migrate", srv.URL(g.Name), "-o", out, "--boot-check", "--accel", "tcg", "--boot-timeout", "4m", "--json"}, srv.Flags()...)...)
	if rep.Status != report.StatusMigrated || rep.Boot == nil || !rep.Boot.OK {
		t.Fatalf("report: status %s, boot %+v", rep.Status, rep.Boot)
	}
	if rep.Host == nil || rep.Host.URL != srv.URL(g.Name) || rep.Host.BytesRead <= 0 || rep.Disks[0].BytesRead <= 0 {
		t.Errorf("report host %+v, disk bytes read %d", rep.Host, rep.Disks[0].BytesRead)
	}
	legacy := false
	for _, w := range rep.Warnings {
		legacy = legacy || strings.Contains(w, "legacy SSH algorithms")
	}
	if !legacy {
		t.Errorf("the report does not warn about the legacy algorithms: %q", rep.Warnings)
	}
	img := filepath.Join(out, g.Name+"-vda.qcow2")
	if b, err := exec.Command(testutil.NeedTool(t, "qemu-img"), "check", img).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check %s: %v\n%s", img, err, b)
	}

	// The running guest is refused, naming the guest and the host.
	code, _, stderr := run(t, append([]string{"migrate", srv.URL("busy"), "-o", filepath.Join(dir, "busy"), "--no-boot-check"}, srv.Flags()...)...)
	if code != 1 || !strings.Contains(stderr, "guest busy is running on "+srv.Addr) || !strings.Contains(stderr, "--force-running") {
		t.Errorf("running guest: exit %d\n%s", code, stderr)
	}

	// The manifest as a batch (no boot check: the guest booted above):
	// busy fails, the example guest migrates; a re-run skips it.
	data, _ := os.ReadFile(manifest)
	os.WriteFile(manifest, []byte(strings.Replace(string(data), "boot_check: true", "boot_check: false", 1)), 0o644)
	for i, want := range []string{"migrated", "skipped"} {
		code, stdout, stderr := run(t, append([]string{"batch", manifest, "--json"}, srv.Flags()...)...)
		var br pipeline.BatchResult
		if err := json.Unmarshal([]byte(stdout), &br); err != nil {
			t.Fatalf("batch %d: %v\n%s\n%s", i, err, stdout, stderr)
		}
		if code != 1 || len(br.Guests) != 2 || br.Guests[0].Status != pipeline.GuestFailed || string(br.Guests[1].Status) != want {
			t.Fatalf("batch run %d: exit %d, %+v\n%s", i, code, br.Guests, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "kvm", g.Name, g.Name+".report.json")); err != nil {
		t.Errorf("batch output: %v", err)
	}
	// Nothing but read-only xm queries ran on the host.
	log, _ := os.ReadFile(srv.XMLog)
	for _, line := range strings.Split(strings.TrimSpace(string(log)), "\n") {
		if line != "list" && !strings.HasPrefix(line, "list -l ") && !strings.HasPrefix(line, "create --dryrun ") {
			t.Errorf("xm %s ran on the host", line)
		}
	}
}

func sshOptions(srv *testsshd.Server) *xenhost.Options {
	o := srv.ClientOptions()
	o.RetryDelay, o.Retries, o.Warn = 100*time.Millisecond, 3, func(string) {}
	return &o
}

// TestE2ESSHFaults drops the connection mid-copy (the migration
// reconnects and completes, and its output validates) and then takes
// the host away mid-copy (a clear error, nothing that looks complete).
func TestE2ESSHFaults(t *testing.T) {
	needE2E(t)
	testutil.NeedTool(t, "/usr/sbin/sshd")
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	srv := xenHost(t, g)
	ctx := context.Background()

	out := filepath.Join(t.TempDir(), "kvm")
	var once sync.Once
	killed := 0
	opts := pipeline.Options{OutDir: out, Boot: pipeline.BootNever}
	opts.SSH = sshOptions(srv)
	opts.Workers = 2
	opts.Progress = func(p pipeline.Progress) {
		if p.Done > 0 && !p.Finish {
			once.Do(func() { killed = srv.KillSessions() })
		}
	}
	res, err := pipeline.Migrate(ctx, srv.URL(g.Name), opts)
	if err != nil {
		t.Fatalf("migrate across a dropped connection: %v", err)
	}
	if killed == 0 || res.Report.Host == nil || res.Report.Host.Reconnects == 0 {
		t.Fatalf("killed %d sessions; report host %+v: the fault did not happen", killed, res.Report.Host)
	}
	for _, c := range res.Report.Validation {
		if !c.OK {
			t.Errorf("validation %s: %s", c.Name, c.Detail)
		}
	}
	if b, err := exec.Command(testutil.NeedTool(t, "qemu-img"), "check", filepath.Join(out, g.Name+"-vda.qcow2")).CombinedOutput(); err != nil {
		t.Errorf("qemu-img check: %v\n%s", err, b)
	}

	// The host goes away for good.
	out2 := filepath.Join(t.TempDir(), "kvm")
	opts.OutDir = out2
	var stop sync.Once
	opts.Progress = func(p pipeline.Progress) {
		if p.Done > 0 && !p.Finish {
			stop.Do(srv.Stop)
		}
	}
	_, err = pipeline.Migrate(ctx, srv.URL(g.Name), opts)
	if !errors.Is(err, xenhost.ErrUnreachable) || !strings.Contains(err.Error(), srv.Addr) {
		t.Fatalf("host gone: %v, want ErrUnreachable naming %s", err, srv.Addr)
	}
	ents, _ := os.ReadDir(out2)
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), ".") {
			t.Errorf("the failed run left %s in OUTDIR", e.Name())
		}
	}
}

// TestE2ESSHMigrateToLibvirt: a cold migration from the stand-in Xen host
// (ssh://) delivered to a private libvirt daemon: the upload reads the
// disk over SSH, and its progress says how much came over the network,
// as a migration into OUTDIR does; the volume is sound qcow2.
func TestE2ESSHMigrateToLibvirt(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	d := testlibvirtd.Start(t)
	poolDir := d.DirPool(t, "default")
	srv := xenHost(t, g)
	var rep report.Guest
	stderr := runJSON(t, nil, 0, &rep, append([]string{"migrate", srv.URL(g.Name), "--to", d.URI, "-o", filepath.Join(t.TempDir(), "report"),
		"--no-boot-check", "--json"}, srv.Flags()...)...)
	if rep.Status != report.StatusMigrated || rep.Destination == nil || !rep.Destination.Defined {
		t.Fatalf("report: status %s, destination %+v", rep.Status, rep.Destination)
	}
	var progress []string
	for _, l := range strings.Split(stderr, "\n") {
		if strings.Contains(l, g.Name+"/vda") && strings.Contains(l, "%") {
			progress = append(progress, l)
		}
	}
	if len(progress) == 0 || !strings.Contains(progress[len(progress)-1], "; network ") {
		t.Errorf("the upload's progress does not say what came over the network:\n%s", strings.Join(progress, "\n"))
	}
	testutil.Run(t, testutil.NeedTool(t, "qemu-img"), "check", "-f", "qcow2", filepath.Join(poolDir, g.Name+"-vda.qcow2"))
}
