package convert_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// writeRPM writes a minimal RPM (guestgen.RPM: v3 lead, empty signature
// header, a header with the tags a reader needs, gzip'ed newc payload)
// holding files.
func writeRPM(t *testing.T, name, version, release string, files map[string]string) string {
	t.Helper()
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var recs []cpio.Record
	for _, n := range names {
		recs = append(recs, cpio.StaticFile("./"+n, files[n], 0o644))
	}
	recs = append(recs, cpio.Symlink("./lib/modules/"+version+"-"+release+"/build", "../../../usr/src/kernels/x"))
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	var payload bytes.Buffer
	zw := gzip.NewWriter(&payload)
	zw.Write(raw.Bytes())
	zw.Close()
	p := filepath.Join(t.TempDir(), name+"-"+version+"-"+release+".i686.rpm")
	if err := os.WriteFile(p, guestgen.RPM(name, version, release, "i686", payload.Bytes()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func kernelRPM(t *testing.T, name string) string {
	rel := "2.6.18-164.el5"
	m := "lib/modules/" + rel + "/kernel/"
	abs := "/lib/modules/" + rel + "/kernel/"
	files := map[string]string{
		"boot/vmlinuz-" + rel:               "new kernel " + rel,
		"boot/config-" + rel:                "CONFIG_X86_32=y\nCONFIG_VIRTIO=m\nCONFIG_VIRTIO_BLK=m\nCONFIG_VIRTIO_NET=m\n",
		"boot/System.map-" + rel:            "c0100000 T _text\n",
		m + "fs/jbd/jbd.ko":                 "jbd for " + rel,
		m + "fs/ext3/ext3.ko":               "ext3 for " + rel,
		m + "drivers/virtio/virtio.ko":      "virtio for " + rel,
		m + "drivers/virtio/virtio_ring.ko": "virtio_ring for " + rel,
		m + "drivers/virtio/virtio_pci.ko":  "virtio_pci for " + rel,
		m + "drivers/block/virtio_blk.ko":   "virtio_blk for " + rel,
		m + "drivers/net/virtio_net.ko":     "virtio_net for " + rel,
		"lib/modules/" + rel + "/modules.dep": abs + "fs/jbd/jbd.ko:\n" +
			abs + "fs/ext3/ext3.ko: " + abs + "fs/jbd/jbd.ko\n" +
			abs + "drivers/virtio/virtio.ko:\n" +
			abs + "drivers/virtio/virtio_ring.ko: " + abs + "drivers/virtio/virtio.ko\n" +
			abs + "drivers/virtio/virtio_pci.ko: " + abs + "drivers/virtio/virtio_ring.ko " + abs + "drivers/virtio/virtio.ko\n" +
			abs + "drivers/block/virtio_blk.ko: " + abs + "drivers/virtio/virtio_ring.ko " + abs + "drivers/virtio/virtio.ko\n" +
			abs + "drivers/net/virtio_net.ko: " + abs + "drivers/virtio/virtio_ring.ko " + abs + "drivers/virtio/virtio.ko\n",
	}
	return writeRPM(t, name, "2.6.18", "164.el5", files)
}

func TestKernelRPM(t *testing.T) {
	root, rootDir, bootDir := guestTree(t, "xenonly")
	d := &trees[treeIndex(t, "xenonly")].dom
	g, err := convert.Inspect(root)
	if err != nil {
		t.Fatal(err)
	}
	rpm := kernelRPM(t, "kernel-PAE")
	p, err := convert.MakePlan(g, root, d, convert.Options{KernelRPM: rpm})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Blockers) > 0 || p.Kernel == nil || p.Kernel.Release != "2.6.18-164.el5" || !p.Virtio {
		t.Fatalf("plan: blockers %q kernel %+v virtio %v", p.Blockers, p.Kernel, p.Virtio)
	}
	golden(t, "xenonly-kernel-rpm", render(g, p))
	if err := p.Apply(root); err != nil {
		t.Fatal(err)
	}

	// The package is left in the guest for the one-shot script that
	// registers it in the RPM database, started at the end of runlevels
	// 2-5.
	left, err := os.ReadFile(filepath.Join(rootDir, "var/lib/xen2kvm", filepath.Base(rpm)))
	if want, _ := os.ReadFile(rpm); err != nil || !bytes.Equal(left, want) {
		t.Errorf("package not left in the guest: %v", err)
	}
	fi, err := os.Stat(filepath.Join(rootDir, "etc/rc.d/init.d/xen2kvm-rpmdb"))
	if err != nil || fi.Mode().Perm() != 0o755 {
		t.Errorf("one-shot script: %v %v", fi, err)
	}
	script, _ := os.ReadFile(filepath.Join(rootDir, "etc/rc.d/init.d/xen2kvm-rpmdb"))
	if !strings.Contains(string(script), `rpm -i --justdb --nodeps`) || !strings.Contains(string(script), "PKG=/var/lib/xen2kvm/"+filepath.Base(rpm)) {
		t.Errorf("script:\n%s", script)
	}
	for _, l := range []string{"2", "3", "4", "5"} {
		if target, err := os.Readlink(filepath.Join(rootDir, "etc/rc.d/rc"+l+".d/S99xen2kvm-rpmdb")); err != nil || target != "../init.d/xen2kvm-rpmdb" {
			t.Errorf("rc%s.d start link: %q %v", l, target, err)
		}
	}
	if !strings.Contains(strings.Join(p.Notes, "\n"), "rpm -i --justdb --nodeps") {
		t.Errorf("notes do not say how the RPM database learns of the kernel: %q", p.Notes)
	}

	// The new initrd: the old one's modules swapped for the new kernel's,
	// the Xen driver gone, virtio added, the root renamed.
	data, err := os.ReadFile(filepath.Join(bootDir, "initrd-2.6.18-164.el5.img"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := initrd.Read(data)
	if err != nil {
		t.Fatal(err)
	}
	for mod, want := range map[string]string{"jbd.ko": "jbd for ", "ext3.ko": "ext3 for ", "virtio_blk.ko": "virtio_blk for "} {
		b, err := img.ReadFile("lib/" + mod)
		if err != nil || string(b) != want+"2.6.18-164.el5" {
			t.Errorf("initrd lib/%s = %q, %v", mod, b, err)
		}
	}
	if slices.Contains(img.Names(), "lib/xenblk.ko") {
		t.Error("new initrd keeps xenblk.ko")
	}
	script, _ = img.ReadFile("init")
	if !strings.Contains(string(script), "mkrootdev -t ext3 -o defaults,ro /dev/vda2\n") {
		t.Errorf("init:\n%s", script)
	}
	if m, err := img.Stat("dev/console"); err != nil || m.Rmajor != 5 || m.Rminor != 1 {
		t.Errorf("dev/console: %+v, %v", m, err)
	}

	// The guest now has a kernel for KVM: a plan without the RPM finds
	// nothing left to do.
	g2, err := convert.Inspect(root)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := convert.MakePlan(g2, root, d, convert.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(p2.Edits) > 0 || len(p2.Blockers) > 0 || p2.Kernel == nil || p2.Kernel.Release != "2.6.18-164.el5" {
		t.Errorf("second plan:\n%s", render(g2, p2))
	}
}

func TestKernelRPMRefused(t *testing.T) {
	root, _, _ := guestTree(t, "xenonly")
	d := &trees[treeIndex(t, "xenonly")].dom
	g, err := convert.Inspect(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"kernel-xen", "bash"} {
		rpm := kernelRPM(t, name)
		if _, err := convert.MakePlan(g, root, d, convert.Options{KernelRPM: rpm}); !errors.Is(err, convert.ErrNotKernelRPM) {
			t.Errorf("%s: err = %v, want ErrNotKernelRPM", name, err)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.rpm")
	os.WriteFile(bad, []byte("not an rpm"), 0o644)
	if _, err := convert.MakePlan(g, root, d, convert.Options{KernelRPM: bad}); err == nil {
		t.Error("a file that is not an RPM: no error")
	}
}

// TestRPMDBScriptRuns runs the one-shot script the kernel-rpm rule leaves
// in the guest, in a chroot with busybox and a stand-in rpm that records
// its arguments: it registers the package with --justdb --nodeps, then
// removes the package, its start links and itself. A failing rpm leaves
// everything for the next boot.
func TestRPMDBScriptRuns(t *testing.T) {
	testutil.NeedRoot(t, "chroot needs root")
	bb := testutil.NeedTool(t, "busybox")
	for _, tc := range []struct {
		name   string
		rpmOK  bool
		remove bool
	}{{"registered", true, true}, {"rpm fails", false, false}} {
		t.Run(tc.name, func(t *testing.T) {
			root, rootDir, _ := guestTree(t, "xenonly")
			rpm := kernelRPM(t, "kernel-PAE")
			p := makePlan(t, root, "xenonly", convert.Options{KernelRPM: rpm})
			if err := p.Apply(root); err != nil {
				t.Fatal(err)
			}
			must := func(err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
			}
			must(os.MkdirAll(filepath.Join(rootDir, "bin"), 0o755))
			must(os.MkdirAll(filepath.Join(rootDir, "var/log"), 0o755))
			data, err := os.ReadFile(bb)
			must(err)
			must(os.WriteFile(filepath.Join(rootDir, "bin/busybox"), data, 0o755))
			for _, a := range []string{"sh", "rm", "rmdir", "echo", "cat"} {
				must(os.Symlink("busybox", filepath.Join(rootDir, "bin", a)))
			}
			status := "0"
			if !tc.rpmOK {
				status = "1"
			}
			// The stand-in rpm: -i records its arguments; -q and -qp
			// answer as a database without the package would.
			must(os.WriteFile(filepath.Join(rootDir, "bin/rpm"), []byte("#!/bin/sh\ncase \"$1\" in -i) echo \"$@\" >>/var/log/rpm-args; exit "+status+" ;; esac\nexit 1\n"), 0o755))
			out, err := exec.Command("chroot", rootDir, "/bin/sh", "/etc/rc.d/init.d/xen2kvm-rpmdb", "start").CombinedOutput()
			if err != nil {
				t.Fatalf("script: %v\n%s", err, out)
			}
			args, _ := os.ReadFile(filepath.Join(rootDir, "var/log/rpm-args"))
			if want := "-i --justdb --nodeps --noscripts --replacefiles /var/lib/xen2kvm/" + filepath.Base(rpm); strings.TrimSpace(string(args)) != want {
				t.Errorf("rpm ran with %q, want %q", args, want)
			}
			left := []string{"var/lib/xen2kvm/" + filepath.Base(rpm), "etc/rc.d/init.d/xen2kvm-rpmdb", "etc/rc.d/rc3.d/S99xen2kvm-rpmdb"}
			for _, f := range left {
				_, err := os.Lstat(filepath.Join(rootDir, f))
				if tc.remove && err == nil {
					t.Errorf("/%s left after the registration", f)
				}
				if !tc.remove && err != nil {
					t.Errorf("/%s removed although rpm failed: %v", f, err)
				}
			}
			if _, err := os.Lstat(filepath.Join(rootDir, "etc/rc.d/rc3.d/S10network")); err != nil {
				t.Errorf("another service's link went: %v", err)
			}
			log, _ := os.ReadFile(filepath.Join(rootDir, "var/log/xen2kvm-rpmdb.log"))
			if tc.remove != strings.Contains(string(log), "registered") {
				t.Errorf("log: %s", log)
			}
		})
	}
}
