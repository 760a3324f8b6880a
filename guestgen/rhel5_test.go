package guestgen

import (
	"context"
	"debug/elf"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sassoftware/go-rpmutils"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestRHEL5Pieces: the LVM guest's rc.local insmods kmod-xenpv's drivers,
// which are the test kernel's Xen front ends; its kdump dumps to
// /dev/xvda1 and starts at boot; its debug kernel's initrd announces the
// lock dependency validator, the plain kernel's does not.
func TestRHEL5Pieces(t *testing.T) {
	g := buildForTest(t, CentOS5LVM)
	p, err := plan(CentOS5LVM.withDefaults(), ids{CentOS5LVM.Name})
	if err != nil {
		t.Fatal(err)
	}
	img, root := g.Images[0], p.Root.Offset
	rc := readGuestFile(t, img, root, "/etc/rc.d/rc.local")
	for _, m := range []string{"xen-vbd", "xen-vnif"} {
		path := "/lib/modules/2.6.18-164.el5/extra/xenpv/" + m + ".ko"
		if !strings.Contains(rc, "\ninsmod "+path+"\n") {
			t.Errorf("rc.local does not insmod %s:\n%s", path, rc)
		}
		mod, err := readModinfo(dumpGuestFile(t, img, root, path))
		if err != nil || !slices.Contains([]string{"xen_blkfront", "xen_netfront"}, mod.Name) {
			t.Errorf("%s: %+v %v, want the test kernel's Xen front end", path, mod, err)
		}
	}
	if ls := run(t, "debugfs", "-R", "stat /etc/rc.d/rc3.d/S99local", fsAt(img, root)); !strings.Contains(ls, `Fast link dest: "../rc.local"`) {
		t.Errorf("S99local:\n%s", ls)
	}
	if conf := readGuestFile(t, img, root, "/etc/kdump.conf"); !strings.Contains(conf, "\next3 /dev/xvda1\n") {
		t.Errorf("kdump.conf:\n%s", conf)
	}
	if ls := run(t, "debugfs", "-R", "stat /etc/rc.d/rc3.d/S20kdump", fsAt(img, root)); !strings.Contains(ls, `Fast link dest: "../init.d/kdump"`) {
		t.Errorf("S20kdump:\n%s", ls)
	}
	var is []string
	for _, rel := range []string{"2.6.18-164.el5debug", "2.6.18-164.el5"} {
		is = append(is, nashScript(initrdSpec{Release: rel, RootDev: "/dev/VolGroup00/LogVol00"}))
	}
	if !strings.Contains(is[0], "Lock dependency validator: Copyright") || strings.Contains(is[1], "Lock dependency") {
		t.Errorf("the debug initrd's banner:\n%s\nthe plain one's:\n%s", is[0], is[1])
	}
}

// TestKernelRPM reads the package back with go-rpmutils, and the guest's
// rpm stand-in (run by busybox on a database of its own) records it with
// -i --justdb and answers -q and -qp as rpm does.
func TestKernelRPM(t *testing.T) {
	testutil.NeedTool(t, "busybox")
	p, err := KernelRPM(context.Background(), t.TempDir(), "2.6.18-164.el5")
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := rpmutils.ReadRpm(f)
	if err != nil {
		t.Fatal(err)
	}
	nevra, err := r.Header.GetNEVRA()
	if err != nil || nevra.Name != "kernel" || nevra.Version != "2.6.18" || nevra.Release != "164.el5" || nevra.Arch != "x86_64" {
		t.Errorf("NEVRA %+v %v", nevra, err)
	}
	pr, err := r.PayloadReader()
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for {
		h, err := pr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(pr)
		files[strings.TrimPrefix(h.Filename(), "./")] = data
	}
	for _, want := range []string{"boot/vmlinuz-2.6.18-164.el5", "boot/config-2.6.18-164.el5",
		"lib/modules/2.6.18-164.el5/kernel/drivers/block/virtio_blk.ko", "lib/modules/2.6.18-164.el5/kernel/fs/ext4/ext4.ko"} {
		if len(files[want]) == 0 {
			t.Errorf("the payload has no %s", want)
		}
	}
	if _, err := elf.NewFile(strings.NewReader(string(files["lib/modules/2.6.18-164.el5/kernel/drivers/net/virtio_net.ko"]))); err != nil {
		t.Errorf("virtio_net.ko: %v", err)
	}
	if strings.Contains(string(files["boot/config-2.6.18-164.el5"]), "CONFIG_X86_XEN") {
		t.Error("the package's config is a Xen kernel's")
	}

	dir := t.TempDir()
	db := filepath.Join(dir, "Packages")
	os.WriteFile(db, []byte(rpmPackages(XenOnly)), 0o644)
	script := filepath.Join(dir, "rpm")
	os.WriteFile(script, []byte(strings.Replace(skel("rpm"), "db=/var/lib/rpm/Packages", "db="+db, 1)), 0o755)
	rpm := func(args ...string) (string, int) {
		out, err := exec.Command("busybox", append([]string{"sh", script}, args...)...).CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(out)), code
	}
	for _, step := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"-q", "kernel"}, "package kernel is not installed", 1},
		{[]string{"-q", "kernel-xen"}, "kernel-xen-2.6.18-164.el5\nkernel-xen-2.6.18-128.el5", 0},
		{[]string{"-qp", "--qf", "%{NAME}-%{VERSION}-%{RELEASE}", p}, "kernel-2.6.18-164.el5", 0},
		{[]string{"-i", p}, "error: this guest's rpm records packages only (--justdb)", 1},
		{[]string{"-i", "--justdb", "--nodeps", "--noscripts", "--replacefiles", p}, "", 0},
		{[]string{"-q", "--quiet", "kernel"}, "", 0},
		{[]string{"-q", "kernel"}, "kernel-2.6.18-164.el5", 0},
		{[]string{"-i", "--justdb", p}, "package kernel-2.6.18-164.el5 is already installed", 1},
		{[]string{"-i", "--justdb", script}, "error: " + script + ": not an rpm package", 1},
	} {
		if out, code := rpm(step.args...); out != step.out || code != step.code {
			t.Errorf("rpm %s: %q exit %d, want %q exit %d", strings.Join(step.args, " "), out, code, step.out, step.code)
		}
	}
}

// TestKdumpStandIn runs the kdump stand-in with busybox on files of its
// own: without crashkernel= on the command line it fails before it looks
// at the dump targets, as RHEL's service does; with it, a missing target
// fails it, and without one it starts. The LVM guest's grub entries
// reserve the memory.
func TestKdumpStandIn(t *testing.T) {
	testutil.NeedTool(t, "busybox")
	dir := t.TempDir()
	cmdline, conf, lock := filepath.Join(dir, "cmdline"), filepath.Join(dir, "kdump.conf"), filepath.Join(dir, "kdump.lock")
	script := strings.NewReplacer("/proc/cmdline", cmdline, "conf=/etc/kdump.conf", "conf="+conf, "/var/lock/subsys/kdump", lock).Replace(skel("kdump"))
	if script == skel("kdump") {
		t.Fatal("the stand-in names none of the files the test replaces")
	}
	path := filepath.Join(dir, "kdump")
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, cmdline, conf string
		want                string
		started             bool
	}{
		{"no crashkernel", "ro root=/dev/VolGroup00/LogVol00", "ext3 /dev/xvda1\n",
			"No crashkernel parameter specified for running kernel\nStarting kdump:  [FAILED]", false},
		{"crashkernel, target missing", "ro root=/dev/VolGroup00/LogVol00 crashkernel=128M@16M", "# comment\next3 /dev/xen2kvm-no-such-disk\n",
			"mkdumprd: dump target /dev/xen2kvm-no-such-disk (ext3) is not a block device\nStarting kdump:  [FAILED]", false},
		{"crashkernel first, no target", "crashkernel=128M@16M ro", "path /var/crash\n", "Starting kdump:  [  OK  ]", true},
		{"a longer name is not crashkernel", "ro xcrashkernel=128M", "", "No crashkernel parameter specified for running kernel\nStarting kdump:  [FAILED]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(lock)
			if err := os.WriteFile(cmdline, []byte(tc.cmdline+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("busybox", "sh", path, "start").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != tc.want {
				t.Errorf("kdump start: %v\n%s\nwant\n%s", err, out, tc.want)
			}
			if _, err := os.Stat(lock); (err == nil) != tc.started {
				t.Errorf("lock file there: %v, want %v", err == nil, tc.started)
			}
		})
	}
	g := buildForTest(t, CentOS5LVM)
	p, err := plan(CentOS5LVM.withDefaults(), ids{CentOS5LVM.Name})
	if err != nil {
		t.Fatal(err)
	}
	grub := readGuestFile(t, g.Images[0], p.Boot.Offset(), "/grub/grub.conf")
	for _, l := range strings.Split(grub, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "kernel ") && !strings.HasSuffix(l, " crashkernel=128M@16M") {
			t.Errorf("a grub entry reserves no crash kernel memory: %s", l)
		}
	}
}
