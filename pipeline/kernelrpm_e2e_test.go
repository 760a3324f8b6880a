package pipeline_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/firstboot"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// TestE2EKernelRPM migrates the Xen-only guest (only kernel-xen
// installed, as the installer leaves a PV guest) with --kernel-rpm: the
// converted guest boots the package's kernel, and its first boot
// registers the package in the guest's RPM database (the one-shot init
// script's rpm -i --justdb --nodeps, run by the guest's own rpm) and
// removes the script, its start links and the package file. What the
// boot wrote is read back from its overlay.
func TestE2EKernelRPM(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.XenOnly)
	sourcesUnchanged(t, g)
	const release = "2.6.18-164.el5"
	rpm, err := guestgen.KernelRPM(context.Background(), t.TempDir(), release)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "kvm")
	var rep report.Guest
	runJSON(t, nil, 0, &rep, "migrate", g.Config, "-o", out, "--disk-map", diskMap(g), "--kernel-rpm", rpm,
		"--no-boot-check", "--json")
	if rep.OS == nil || rep.OS.Kernel != release {
		t.Fatalf("boots %+v, want kernel %s", rep.OS, release)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "rpm -i --justdb --nodeps") {
		t.Errorf("the report does not say the RPM database learns of the kernel at the first boot: %q", rep.Notes)
	}

	// The first boot, as migrate --boot-check runs it, with its
	// overlay kept to read back.
	xml, err := os.ReadFile(filepath.Join(out, g.Name+".xml"))
	if err != nil {
		t.Fatal(err)
	}
	dom, err := config.ParseKVMXML(xml)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	res, err := firstboot.Check(ctx, dom, firstboot.Options{
		Boot: []kvmrun.Option{kvmrun.WithAccel(kvmrun.AccelTCG), kvmrun.WithTimeout(6 * time.Minute),
			kvmrun.WithSerialLog(filepath.Join(dir, "serial.log")), kvmrun.WithShutdownGrace(60 * time.Second)},
		Dir: dir, KeepOverlays: true,
	})
	if err != nil {
		serial, _ := os.ReadFile(filepath.Join(dir, "serial.log"))
		t.Fatalf("first boot: %v\n%s", err, serial)
	}
	firstBootProven(t, res.Report, guestgen.XenOnly, relabelsPlanned(&rep))
	for p, want := range map[string]string{
		"etc/rc.d/init.d/xen2kvm-rpmdb":            "removed",
		"etc/rc.d/rc3.d/S99xen2kvm-rpmdb":          "removed",
		"var/log/xen2kvm-rpmdb.log":                "created",
		"var/lib/rpm/Packages":                     "changed",
		"boot/grub/grub.conf":                      "", // the new kernel stays the default
		"etc/sysconfig/network-scripts/ifcfg-eth0": "",
	} {
		d := driftFile(res.Report.Drift, p)
		switch {
		case want == "" && d != nil:
			t.Errorf("the first boot changed /%s: %+v", p, d)
		case want != "" && (d == nil || d.Change != want):
			t.Errorf("drift of /%s: %+v, want %s", p, d, want)
		}
	}

	// The boot's own disk state.
	if len(res.Overlays) != 1 {
		t.Fatalf("overlays %q", res.Overlays)
	}
	root := readOnlyGuest(t, res.Overlays[0], "vda")
	db, err := root.ReadFile("var/lib/rpm/Packages")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(db), "\n")
	registered := false
	for _, l := range lines {
		registered = registered || l == "kernel-"+release
	}
	if !registered {
		t.Errorf("the RPM database does not know kernel-%s after the first boot:\n%s", release, db)
	}
	if log, err := root.ReadFile("var/log/xen2kvm-rpmdb.log"); err != nil || !strings.Contains(string(log), "registered /var/lib/xen2kvm/"+filepath.Base(rpm)) {
		t.Errorf("the one-shot script's log: %q, %v", log, err)
	}
	for _, p := range []string{"etc/rc.d/init.d/xen2kvm-rpmdb", "etc/rc.d/rc3.d/S99xen2kvm-rpmdb", "etc/rc.d/rc5.d/S99xen2kvm-rpmdb",
		"var/lib/xen2kvm/" + filepath.Base(rpm), "var/lib/xen2kvm"} {
		if _, err := root.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("/%s is still there after the first boot (%v)", p, err)
		}
	}
}
