package firstboot

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/report"
)

func file(s string) *fstest.MapFile { return &fstest.MapFile{Data: []byte(s), Mode: 0o644} }

const ifcfgStatic = "DEVICE=eth0\nBOOTPROTO=static\nHWADDR=00:16:3E:12:34:56\nIPADDR=192.168.122.50\nNETMASK=255.255.255.0\nONBOOT=yes\n"

// TestDiffFlags: the first boot's changes are listed with diffs, and the
// ones that mean a broken conversion are flagged.
func TestDiffFlags(t *testing.T) {
	before := fstest.MapFS{
		"etc/fstab": file("/dev/vda2 / ext3 defaults 1 1\n"),
		"etc/sysconfig/network-scripts/ifcfg-eth0": file(ifcfgStatic),
		"etc/sysconfig/network-scripts/ifcfg-lo":   file("DEVICE=lo\n"),
		"etc/modprobe.conf":                        file("alias eth0 virtio_net\n"),
		"etc/udev/rules.d/70-persistent-net.rules": file("SUBSYSTEM==\"net\", ATTR{address}==\"00:16:3e:12:34:56\", NAME=\"eth0\"\n"),
		"etc/hosts":           file("127.0.0.1 localhost\n"),
		"etc/old":             file("gone\n"),
		"boot/grub/grub.conf": file("default=0\n"),
		"var/log/messages":    file("one\n"),
	}
	after := fstest.MapFS{
		"etc/fstab": file("/dev/vda2 / ext3 defaults 1 1\n"),
		"etc/sysconfig/network-scripts/ifcfg-eth0":     file("DEVICE=eth0\nBOOTPROTO=dhcp\nHWADDR=00:16:3E:12:34:56\nONBOOT=yes\n"),
		"etc/sysconfig/network-scripts/ifcfg-eth0.bak": file(ifcfgStatic),
		"etc/sysconfig/network-scripts/ifcfg-lo":       file("DEVICE=lo\nONBOOT=yes\n"),
		"etc/modprobe.conf":                            file("alias eth0 virtio_net\n"),
		"etc/udev/rules.d/70-persistent-net.rules":     file("SUBSYSTEM==\"net\", ATTR{address}==\"00:16:3e:12:34:56\", NAME=\"eth0\"\nSUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:00:00:01\", NAME=\"eth1\"\n"),
		"etc/hosts":           file("127.0.0.1 localhost\n"),
		"etc/mtab":            file("/dev/vda2 / ext3 rw 0 0\n"),
		"boot/grub/grub.conf": {Data: []byte("default=0\n"), Mode: 0o600},
		"var/log/messages":    file("one\ntwo\n"),
		".autorelabel":        file(""),
	}
	files, err := Diff(before, after)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]report.DriftFile{}
	for _, f := range files {
		got[f.Path] = f
	}
	want := map[string]struct{ change, flag string }{
		"boot/grub/grub.conf": {"changed", "/boot/grub/grub.conf (the boot loader's configuration) changed during the first boot"},
		"etc/mtab":            {"created", ""},
		"etc/old":             {"removed", ""},
		"etc/sysconfig/network-scripts/ifcfg-eth0":     {"changed", "interface config ifcfg-eth0 rewritten during the first boot"},
		"etc/sysconfig/network-scripts/ifcfg-eth0.bak": {"created", "interface config moved to ifcfg-eth0.bak: the guest's first boot (kudzu) replaced the interface's configuration"},
		"etc/sysconfig/network-scripts/ifcfg-lo":       {"changed", ""},
		"etc/udev/rules.d/70-persistent-net.rules":     {"changed", "udev recorded a new interface eth1: the NIC was renamed"},
		"var/log/messages":                             {"changed", ""},
	}
	for p, w := range want {
		f, ok := got[p]
		if !ok {
			t.Errorf("%s: not in the drift", p)
			continue
		}
		if f.Change != w.change || f.Flag != w.flag {
			t.Errorf("%s: %s %q, want %s %q", p, f.Change, f.Flag, w.change, w.flag)
		}
	}
	if f := got[".autorelabel"]; f.Change != "present" || !strings.Contains(f.Flag, "did not relabel") {
		t.Errorf(".autorelabel: %+v", f)
	}
	if len(files) != len(want)+1 {
		t.Errorf("%d drifted files, want %d: %+v", len(files), len(want)+1, files)
	}
	if d := got["etc/sysconfig/network-scripts/ifcfg-eth0"].Diff; !strings.Contains(d, "-BOOTPROTO=static\n") || !strings.Contains(d, "+BOOTPROTO=dhcp\n") || !strings.HasPrefix(d, "--- a/etc/sysconfig/network-scripts/ifcfg-eth0\n+++ b/") {
		t.Errorf("ifcfg-eth0 diff:\n%s", d)
	}
	if d := got["etc/mtab"].Diff; !strings.HasPrefix(d, "--- /dev/null\n+++ b/etc/mtab\n") {
		t.Errorf("mtab diff:\n%s", d)
	}
	if d := got["var/log/messages"].Diff; d != "changed: 4 bytes -> 8 bytes" {
		t.Errorf("a log is listed, not diffed: %q", d)
	}
	if d := got["boot/grub/grub.conf"].Diff; !strings.Contains(d, "mode -rw-r--r-- -> -rw-------") {
		t.Errorf("a mode change: %q", d)
	}
}

func TestReadNetConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		mac  string
		want string
	}{
		{"static by HWADDR", fstest.MapFS{
			"etc/sysconfig/network-scripts/ifcfg-eth0": file("DEVICE=eth0\nBOOTPROTO=dhcp\n"),
			"etc/sysconfig/network-scripts/ifcfg-eth1": file(strings.ReplaceAll(ifcfgStatic, "eth0", "eth1") + "GATEWAY=192.168.122.1\n"),
		}, "00:16:3e:12:34:56", "static 192.168.122.50/24 gateway 192.168.122.1 from /etc/sysconfig/network-scripts/ifcfg-eth1"},
		{"eth0 without HWADDR, PREFIX and quotes, gateway from network", fstest.MapFS{
			"etc/sysconfig/network-scripts/ifcfg-eth0":     file("DEVICE='eth0'\nBOOTPROTO=none\nIPADDR=\"10.1.2.3\" # the address\nPREFIX=16\n"),
			"etc/sysconfig/network-scripts/ifcfg-eth0.bak": file("BOOTPROTO=dhcp\n"),
			"etc/sysconfig/network":                        file("NETWORKING=yes\nGATEWAY=10.1.0.1\n"),
		}, "00:16:3e:00:00:01", "static 10.1.2.3/16 gateway 10.1.0.1 from /etc/sysconfig/network-scripts/ifcfg-eth0"},
		{"dhcp", fstest.MapFS{"etc/sysconfig/network-scripts/ifcfg-eth0": file("DEVICE=eth0\nBOOTPROTO=dhcp\nIPADDR=10.0.0.5\n")}, "", "dhcp from /etc/sysconfig/network-scripts/ifcfg-eth0"},
		{"none", fstest.MapFS{"etc/hosts": file("")}, "", "dhcp (no ifcfg file for the NIC)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := ReadNetConfig(tc.fs, tc.mac).String(); got != tc.want {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

func FuzzParseShellVars(f *testing.F) {
	f.Add([]byte(ifcfgStatic))
	f.Add([]byte("A='x' # c\nexport B=\"y z\"\n#C=1\n=bad\nD\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for k := range ParseShellVars(data) {
			if k == "" || strings.ContainsAny(k, " \t\n") {
				t.Errorf("bad key %q", k)
			}
		}
	})
}

// TestDriftReaderOnRealOverlay reads a real qcow2 overlay (made by
// qemu-img from a filesystem changed with debugfs) over a raw ext3 image
// with the readers Check uses, and proves that neither file is written.
func TestDriftReaderOnRealOverlay(t *testing.T) {
	mke2fs := testutil.NeedTool(t, "mke2fs")
	debugfs := testutil.NeedTool(t, "debugfs")
	qemuImg := testutil.NeedTool(t, "qemu-img")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	for p, c := range map[string]string{
		"etc/fstab": "/dev/vda / ext3 defaults 1 1\n",
		"etc/sysconfig/network-scripts/ifcfg-eth0": ifcfgStatic,
		"boot/grub/grub.conf":                      "default=0\n",
		"var/log/messages":                         "boot 1\n",
	} {
		os.MkdirAll(filepath.Join(tree, filepath.Dir(p)), 0o755)
		os.WriteFile(filepath.Join(tree, p), []byte(c), 0o644)
	}
	base := filepath.Join(dir, "base.raw")
	testutil.Run(t, mke2fs, "-q", "-F", "-t", "ext3", "-d", tree, base, "16M")
	changed := filepath.Join(dir, "changed.raw")
	testutil.Run(t, "cp", "--sparse=always", base, changed)
	stub := filepath.Join(dir, "stub")
	os.WriteFile(stub, []byte("DEVICE=eth0\nBOOTPROTO=dhcp\n"), 0o644)
	old := filepath.Join(tree, "etc/sysconfig/network-scripts/ifcfg-eth0")
	cmds := filepath.Join(dir, "cmds")
	os.WriteFile(cmds, []byte("cd /etc/sysconfig/network-scripts\nwrite "+old+" ifcfg-eth0.bak\nrm ifcfg-eth0\nwrite "+stub+" ifcfg-eth0\ncd /etc\nwrite "+stub+" mtab\n"), 0o644)
	testutil.Run(t, debugfs, "-w", "-f", cmds, changed)
	overlay := filepath.Join(dir, "overlay.qcow2")
	testutil.Run(t, qemuImg, "convert", "-O", "qcow2", "-B", base, "-F", "raw", changed, overlay)

	hashes := func() [2]string { return [2]string{testutil.HashFile(t, base), testutil.HashFile(t, overlay)} }
	start := hashes()
	ctx := context.Background()
	b, err := openGuest(ctx, []config.KVMDisk{{Path: base, Format: "raw", Target: "vda", Device: "disk"}}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.close()
	a, err := openGuest(ctx, []config.KVMDisk{{Path: overlay, Format: "qcow2", Target: "vda", Device: "disk"}}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if a.imgs[0].Backing() == nil || a.imgs[0].Format() != diskimg.FormatQCOW2 {
		t.Fatalf("the overlay was not read through its backing file")
	}
	files, err := Diff(b.g.Root, a.g.Root)
	if err != nil {
		t.Fatal(err)
	}
	var summary []string
	for _, f := range files {
		summary = append(summary, f.Change+" "+f.Path+" "+f.Flag)
	}
	want := []string{
		"changed etc/sysconfig/network-scripts/ifcfg-eth0 interface config ifcfg-eth0 rewritten during the first boot",
		"created etc/sysconfig/network-scripts/ifcfg-eth0.bak interface config moved to ifcfg-eth0.bak: the guest's first boot (kudzu) replaced the interface's configuration",
		"created etc/mtab ",
	}
	for _, w := range want {
		found := false
		for _, s := range summary {
			found = found || s == w
		}
		if !found {
			t.Errorf("drift lacks %q:\n%s", w, strings.Join(summary, "\n"))
		}
	}
	if len(files) != len(want) {
		t.Errorf("drift:\n%s", strings.Join(summary, "\n"))
	}
	if hashes() != start {
		t.Error("reading the drift wrote to the image or its overlay")
	}
}

// TestLeftovers: console lines naming Xen's drivers or disks, and a debug
// kernel booted while a production one is installed, are named; a
// production kernel, or a debug one that is all there is, is not.
func TestLeftovers(t *testing.T) {
	root := fstest.MapFS{
		"boot/vmlinuz-2.6.18-164.el5":      file("k"),
		"boot/vmlinuz-2.6.18-164.el5debug": file("k"),
		"boot/vmlinuz-2.6.18-164.el5xen":   file("k"),
	}
	onlyDebug := fstest.MapFS{
		"boot/vmlinuz-2.6.18-164.el5debug": file("k"),
		"boot/vmlinuz-2.6.18-164.el5xen":   file("k"),
	}
	findings := []report.Finding{
		{Kind: "failed", Line: 40, Text: "Starting kdump:  [FAILED]"},
		{Kind: "xen", Line: 39, Text: "mkdumprd: dump target /dev/xvda1 (ext3) is not a block device"},
	}
	lockdep := []report.Finding{{Kind: "debug-kernel", Line: 12, Text: "Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar"}}
	for _, tc := range []struct {
		name     string
		findings []report.Finding
		booted   string
		root     fs.FS
		want     []string
	}{
		{"clean", findings[:1], "vmlinuz-2.6.18-164.el5", root, nil},
		{"xen on the console", findings, "vmlinuz-2.6.18-164.el5", root, []string{"console line 39 names a Xen PV driver or disk, which KVM has not: \"mkdumprd: dump target /dev/xvda1 (ext3) is not a block device\""}},
		{"debug kernel", nil, "vmlinuz-2.6.18-164.el5debug", root, []string{"the guest booted kernel 2.6.18-164.el5debug (kernel-debug), a debug flavour, which runs slowly and is meant for diagnosing, while 2.6.18-164.el5 is installed: grub's default entry should boot that"}},
		{"debug kernel on the console", lockdep, "", root, []string{"the guest booted a debug kernel (console line 12: \"Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar\"), which runs slowly and is meant for diagnosing, while 2.6.18-164.el5 is installed: grub's default entry should boot that"}},
		{"debug kernel alone", lockdep, "vmlinuz-2.6.18-164.el5debug", onlyDebug, nil},
		{"root unknown", lockdep, "vmlinuz-2.6.18-164.el5debug", nil, nil},
		{"boot loader unknown", nil, "", root, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Leftovers(tc.findings, tc.booted, tc.root)
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}

// TestConsoleSays: a failed network proof quotes the guest's own failure
// lines, at most max of them.
func TestConsoleSays(t *testing.T) {
	found := []report.Finding{
		{Kind: "failed", Line: 401, Text: "xennet device eth0 does not seem to be present, delaying initialization."},
		{Kind: "fsck", Line: 300, Text: "fsck.ext3: No such file or directory while trying to open /dev/xvdb1"},
		{Kind: "failed", Line: 402, Text: "Bringing up interface eth0:  [FAILED]"},
		{Kind: "failed", Line: 500, Text: "Starting kdump:  [FAILED]"},
	}
	want := `; the console says: line 401: "xennet device eth0 does not seem to be present, delaying initialization.", line 402: "Bringing up interface eth0:  [FAILED]"`
	if got := consoleSays(found, "failed", 2); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := consoleSays(found[1:2], "failed", 2); got != "" {
		t.Errorf("no failed lines: %q", got)
	}
}
