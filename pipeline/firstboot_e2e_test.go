package pipeline_test

// End-to-end tests of the first-boot proof on guestgen guests that go
// wrong at their first boot on KVM. Skipped with -short.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/report"
)

// variant is CentOS5PV under another name with first-boot behaviours.
func variant(name string, change func(*guestgen.Spec)) guestgen.Spec {
	s := guestgen.CentOS5PV
	s.Name = name
	change(&s)
	return s
}

func driftFile(d *report.Drift, path string) *report.DriftFile {
	if d == nil {
		return nil
	}
	for i := range d.Files {
		if d.Files[i].Path == path {
			return &d.Files[i]
		}
	}
	return nil
}

// TestE2EFirstBootKudzu: the example guest converted without the kudzu
// rule, so its kudzu moves ifcfg-eth0 aside at its first boot on the new
// network card. migrate --allow-drift passes with a warning and the
// report shows the diff; xen2kvm boot of the result without
// --allow-drift fails with the same diff, and leaves the image as it was.
// (With the rule, TestE2EMigrateBoots sees no flagged drift.)
func TestE2EFirstBootKudzu(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	sourcesUnchanged(t, g)
	dir := t.TempDir()
	out := filepath.Join(dir, "kvm")
	page := filepath.Join(dir, "report.html")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, "migrate", g.Config, "-o", out, "--disk-map", diskMap(g), "--boot-check", "--skip-rule", "kudzu",
		"--accel", "tcg", "--boot-timeout", "6m", "--allow-drift", "--json", "--report", page)
	b := rep.Boot
	if b == nil || !b.OK || b.Drift == nil || !b.Drift.Allowed || b.Drift.Flagged != 2 {
		t.Fatalf("boot: %+v", b)
	}
	cfg := driftFile(b.Drift, "etc/sysconfig/network-scripts/ifcfg-eth0")
	bak := driftFile(b.Drift, "etc/sysconfig/network-scripts/ifcfg-eth0.bak")
	if cfg == nil || cfg.Change != "changed" || !strings.Contains(cfg.Flag, "rewritten") ||
		!strings.Contains(cfg.Diff, "-# Xen Virtual Ethernet\n") || !strings.Contains(cfg.Diff, "+# Virtio network device\n") {
		t.Errorf("ifcfg-eth0 drift: %+v", cfg)
	}
	if bak == nil || bak.Change != "created" || !strings.Contains(bak.Flag, "moved to ifcfg-eth0.bak") {
		t.Errorf("ifcfg-eth0.bak drift: %+v", bak)
	}
	if hw := driftFile(b.Drift, "etc/sysconfig/hwconf"); hw == nil || hw.Flag != "" || !strings.Contains(hw.Diff, "+driver: virtio_net") {
		t.Errorf("hwconf drift: %+v", hw)
	}
	warned := false
	for _, w := range rep.Warnings {
		warned = warned || strings.Contains(w, "first-boot drift (allowed): interface config ifcfg-eth0 rewritten")
	}
	if !warned {
		t.Errorf("no drift warning in %q", rep.Warnings)
	}
	if n := b.Network; n == nil || !n.OK {
		t.Errorf("network: %+v (kudzu's DHCP configuration still brings the NIC up)", n)
	}
	html, _ := os.ReadFile(page)
	if !strings.Contains(string(html), `class="add">&#43;# Virtio network device`) || !strings.Contains(string(html), "First-boot drift") {
		t.Errorf("the HTML report lacks the drift's diff")
	}

	img := filepath.Join(out, g.Name+"-vda.qcow2")
	before := testutil.HashFile(t, img)
	var res struct {
		OK    bool
		Error string
		Match string
		Boot  *report.Boot
	}
	runJSON(t, nil, 1, &res, "boot", out, "--accel", "tcg", "--timeout", "6m", "--json")
	if res.OK || !strings.Contains(res.Error, "the first boot changed the guest's configuration") || !strings.Contains(res.Match, "login:") ||
		res.Boot == nil || res.Boot.Drift == nil || res.Boot.Drift.Allowed {
		t.Fatalf("boot: %+v", res)
	}
	if cfg := driftFile(res.Boot.Drift, "etc/sysconfig/network-scripts/ifcfg-eth0"); cfg == nil || !strings.Contains(cfg.Diff, "+# Virtio network device\n") {
		t.Errorf("boot's ifcfg-eth0 drift: %+v", cfg)
	}
	if testutil.HashFile(t, img) != before {
		t.Error("xen2kvm boot wrote to the migrated image")
	}
}

// TestE2EFirstBootFailures: a guest whose converted network is wrong
// (its ifcfg-eth0 names another MAC than its vif's, so the network script
// ignores the NIC) reaches its login prompt but fails the network proof; a guest whose relabel cannot
// finish reboots in a loop and fails after the allowed reboots.
func TestE2EFirstBootFailures(t *testing.T) {
	needE2E(t)
	for _, tc := range []struct {
		spec  guestgen.Spec
		check func(t *testing.T, b *report.Boot, serial string)
	}{
		{variant("centos5-badnic", func(s *guestgen.Spec) { s.IfcfgMAC = "00:16:3e:00:00:01" }), func(t *testing.T, b *report.Boot, serial string) {
			if !strings.Contains(serial, "login:") {
				t.Errorf("no login prompt in the serial log")
			}
			if n := b.Network; n == nil || n.OK || !strings.Contains(n.Detail, "not one frame from") {
				t.Errorf("network: %+v", n)
			}
			if !strings.Contains(b.Detail, "the guest's network did not answer") {
				t.Errorf("detail %q", b.Detail)
			}
			failed := false
			for _, f := range b.Findings {
				failed = failed || (f.Kind == "failed" && strings.Contains(f.Text, "Bringing up interface eth0") && f.Line > 0 && f.Seconds > 0)
			}
			if !failed {
				t.Errorf("findings %+v: want the network script's [FAILED] line", b.Findings)
			}
			if b.Drift == nil || b.Drift.Flagged != 0 {
				t.Errorf("drift: %+v", b.Drift)
			}
		}},
		{variant("centos5-relabel-loop", func(s *guestgen.Spec) { s.RelabelLoop = true }), func(t *testing.T, b *report.Boot, serial string) {
			if b.Reboots != 4 || !strings.Contains(b.Detail, "guest reboot loop") {
				t.Errorf("reboots %d, detail %q: want 4 and a reboot loop", b.Reboots, b.Detail)
			}
			if strings.Count(serial, "Automatic reboot in progress.") < 4 {
				t.Errorf("the serial log shows %d relabel reboots", strings.Count(serial, "Automatic reboot in progress."))
			}
		}},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			t.Parallel()
			g := guest(t, tc.spec)
			sourcesUnchanged(t, g)
			out := filepath.Join(t.TempDir(), "kvm")
			var rep report.Guest
			runJSON(t, nil, 1, &rep, "migrate", g.Config, "-o", out, "--disk-map", diskMap(g), "--boot-check",
				"--accel", "tcg", "--boot-timeout", "6m", "--json")
			if rep.Status != report.StatusFailed || rep.Boot == nil || rep.Boot.OK {
				t.Fatalf("report: status %s, boot %+v", rep.Status, rep.Boot)
			}
			serial, _ := os.ReadFile(filepath.Join(out, g.Name+".boot-failed.log"))
			tc.check(t, rep.Boot, string(serial))
		})
	}
}
