package initrd_test

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

const nashInit = `#!/bin/nash

mount -t proc /proc /proc
setquiet
echo Creating initial device nodes
mknod /dev/null c 1 3
echo Setting up hotplug.
hotplug
echo Creating block device nodes.
mkblkdevs
echo "Loading ext3.ko module"
insmod /lib/ext3.ko 
echo "Loading xenblk.ko module"
insmod /lib/xenblk.ko 
echo Waiting for driver initialization.
stabilized --hash --interval 250 /proc/scsi/scsi
mkblkdevs
resume /dev/xvda3
echo Creating root device.
mkrootdev -t ext3 -o defaults,ro /dev/xvda2
echo Mounting root filesystem.
mount /sysroot
setuproot
switchroot
`

// hostCpio builds a gzip'ed newc archive of dir with GNU cpio, the way
// mkinitrd does, so that the reader is tested against another writer.
func hostCpio(t *testing.T, dir string) []byte {
	t.Helper()
	testutil.NeedTool(t, "cpio")
	cmd := exec.Command("sh", "-c", "find . | LC_ALL=C sort | cpio --quiet -o -H newc")
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	raw, err := cmd.Output()
	if err != nil {
		t.Fatalf("cpio: %v: %s", err, stderr.Bytes())
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw)
	zw.Close()
	return gz.Bytes()
}

// unpack extracts a gzip'ed cpio archive with GNU cpio.
func unpack(t *testing.T, data []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command("cpio", "--quiet", "-idm", "--no-absolute-filenames")
	cmd.Dir = dir
	cmd.Stdin = zr
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("cpio -i: %v: %s", err, stderr.Bytes())
	}
	return dir
}

// nashTree writes a RHEL 5 style initrd tree with device nodes, symlinks
// and a hard link.
func nashTree(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("making device nodes needs root")
	}
	dir := t.TempDir()
	files := map[string]string{
		"init":          nashInit,
		"bin/nash":      "nash binary",
		"lib/ext3.ko":   "ext3 module",
		"lib/xenblk.ko": "xenblk module",
		"etc/ld.so.c":   "",
	}
	for n, c := range files {
		p := filepath.Join(dir, n)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.MkdirAll(filepath.Join(dir, "dev"), 0o755)
	for _, n := range []struct {
		name         string
		mode         uint32
		major, minor int
	}{{"dev/console", syscall.S_IFCHR | 0o600, 5, 1}, {"dev/null", syscall.S_IFCHR | 0o666, 1, 3},
		{"dev/xvda", syscall.S_IFBLK | 0o660, 202, 0}} {
		if err := syscall.Mknod(filepath.Join(dir, n.name), n.mode, n.major<<8|n.minor); err != nil {
			t.Fatal(err)
		}
	}
	os.Symlink("bin", filepath.Join(dir, "sbin"))
	os.Symlink("/bin/nash", filepath.Join(dir, "bin/modprobe"))
	if err := os.Link(filepath.Join(dir, "bin/nash"), filepath.Join(dir, "bin/hardnash")); err != nil {
		t.Fatal(err)
	}
	return dir
}

var virtioModules = []initrd.Module{
	{Path: "kernel/drivers/virtio/virtio.ko", Data: []byte("virtio module")},
	{Path: "kernel/drivers/virtio/virtio_ring.ko", Data: []byte("virtio_ring module")},
	{Path: "kernel/drivers/virtio/virtio_pci.ko", Data: []byte("virtio_pci module")},
	{Path: "kernel/drivers/block/virtio_blk.ko", Data: []byte("virtio_blk module")},
}

func remap(dev string) (string, bool) {
	if strings.HasPrefix(dev, "/dev/xvd") {
		return "/dev/vd" + strings.TrimPrefix(dev, "/dev/xvd"), true
	}
	return dev, false
}

func TestRebuildNash(t *testing.T) {
	orig := hostCpio(t, nashTree(t))
	spec := initrd.Spec{Release: "2.6.18-164.el5", Modules: virtioModules, Drop: []string{"xenblk"}, Remap: remap}
	out, res, err := initrd.Rebuild(orig, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res.Flavour != initrd.Nash {
		t.Fatalf("flavour %s", res.Flavour)
	}
	wantAdded := []string{"lib/virtio.ko", "lib/virtio_ring.ko", "lib/virtio_pci.ko", "lib/virtio_blk.ko"}
	if !slices.Equal(res.Added, wantAdded) || !slices.Equal(res.Removed, []string{"lib/xenblk.ko"}) {
		t.Errorf("added %v removed %v", res.Added, res.Removed)
	}

	dir := unpack(t, out)
	for _, m := range virtioModules {
		b, err := os.ReadFile(filepath.Join(dir, "lib", filepath.Base(m.Path)))
		if err != nil || !bytes.Equal(b, m.Data) {
			t.Errorf("%s: %q, %v", m.Path, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "lib/xenblk.ko")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("xenblk.ko still there: %v", err)
	}
	script, err := os.ReadFile(filepath.Join(dir, "init"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(script)
	if strings.Contains(s, "xenblk") {
		t.Errorf("script still loads xenblk:\n%s", s)
	}
	if !strings.Contains(s, "mkrootdev -t ext3 -o defaults,ro /dev/vda2\n") || !strings.Contains(s, "resume /dev/vda3\n") {
		t.Errorf("root/resume not remapped:\n%s", s)
	}
	// Insmod order: each module after the ones before it in the spec, all
	// after ext3 and before stabilized.
	pos := func(sub string) int {
		i := strings.Index(s, sub)
		if i < 0 {
			t.Fatalf("script lacks %q:\n%s", sub, s)
		}
		return i
	}
	prev := pos("insmod /lib/ext3.ko")
	for _, m := range virtioModules {
		p := pos("insmod /lib/" + filepath.Base(m.Path) + "\n")
		if p < prev {
			t.Errorf("%s loaded out of order", m.Path)
		}
		prev = p
	}
	if prev > pos("stabilized") {
		t.Error("virtio modules loaded after stabilized")
	}

	// Device nodes, symlinks and the hard link survive.
	for _, n := range []struct {
		name         string
		char         bool
		major, minor uint32
	}{{"dev/console", true, 5, 1}, {"dev/null", true, 1, 3}, {"dev/xvda", false, 202, 0}} {
		var st syscall.Stat_t
		if err := syscall.Lstat(filepath.Join(dir, n.name), &st); err != nil {
			t.Errorf("%s: %v", n.name, err)
			continue
		}
		kind := uint32(syscall.S_IFBLK)
		if n.char {
			kind = syscall.S_IFCHR
		}
		if st.Mode&syscall.S_IFMT != kind || uint32(st.Rdev>>8) != n.major || uint32(st.Rdev&0xff) != n.minor {
			t.Errorf("%s: mode %o rdev %x", n.name, st.Mode, st.Rdev)
		}
	}
	for link, target := range map[string]string{"sbin": "bin", "bin/modprobe": "/bin/nash"} {
		if got, err := os.Readlink(filepath.Join(dir, link)); err != nil || got != target {
			t.Errorf("symlink %s -> %q, %v; want %q", link, got, err, target)
		}
	}
	a, _ := os.Stat(filepath.Join(dir, "bin/nash"))
	b, _ := os.Stat(filepath.Join(dir, "bin/hardnash"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Error("hard link bin/nash = bin/hardnash lost")
	}
	if c, _ := os.ReadFile(filepath.Join(dir, "bin/hardnash")); string(c) != "nash binary" {
		t.Errorf("hard-linked content %q", c)
	}

	// A second rebuild changes nothing.
	again, res2, err := initrd.Rebuild(out, spec)
	if err != nil {
		t.Fatal(err)
	}
	if res2.Changed() || !bytes.Equal(again, out) {
		t.Errorf("second rebuild changed: added %v removed %v", res2.Added, res2.Removed)
	}
}

func TestRebuildDracut(t *testing.T) {
	dir := t.TempDir()
	rel := "2.6.32-71.el6.x86_64"
	files := map[string]string{
		"init":                                       "#!/bin/sh\n# dracut init\n",
		"lib/dracut/modules.txt":                     "",
		"lib/modules/" + rel + "/modules.dep":        "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko\nkernel/fs/jbd2/jbd2.ko:\n",
		"lib/modules/" + rel + "/modules.dep.bin":    "binary",
		"lib/modules/" + rel + "/kernel/fs/jbd2.ko":  "jbd2",
		"lib/modules/" + rel + "/kernel/fs/ext4.ko":  "ext4",
		"lib/modules/" + rel + "/modules.alias":      "# Aliases\n",
		"lib/modules/" + rel + "/modules.symbols":    "",
		"lib/modules/" + rel + "/modules.dep.unused": "",
	}
	testutil.WriteTree(t, dir, files)
	mods := []initrd.Module{
		{Path: "kernel/drivers/virtio/virtio.ko", Data: []byte("v")},
		{Path: "kernel/drivers/block/virtio_blk.ko", Data: []byte("vb"), Deps: []string{"kernel/drivers/virtio/virtio.ko"}},
	}
	out, res, err := initrd.Rebuild(hostCpio(t, dir), initrd.Spec{Release: rel, Modules: mods})
	if err != nil {
		t.Fatal(err)
	}
	if res.Flavour != initrd.Dracut {
		t.Fatalf("flavour %s", res.Flavour)
	}
	x := unpack(t, out)
	dep, _ := os.ReadFile(filepath.Join(x, "lib/modules", rel, "modules.dep"))
	if !strings.HasSuffix(string(dep), "kernel/drivers/virtio/virtio.ko:\nkernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko\n") {
		t.Errorf("modules.dep:\n%s", dep)
	}
	// The binary index lists the added modules: kmod's modprobe (which
	// reads nothing else) resolves virtio_blk and its dependency.
	if b, _ := os.ReadFile(filepath.Join(x, "lib/modules", rel, "modules.dep.bin")); string(b) == "binary" {
		t.Error("stale modules.dep.bin kept")
	}
	if !slices.Equal(res.Indexes, []string{"lib/modules/" + rel + "/modules.dep.bin"}) {
		t.Errorf("indexes rewritten: %v", res.Indexes)
	}
	if mp, err := exec.LookPath("modprobe"); err == nil {
		out, err := exec.Command(mp, "-d", x, "-S", rel, "--show-depends", "virtio_blk").CombinedOutput()
		want := "insmod " + x + "/lib/modules/" + rel + "/kernel/drivers/virtio/virtio.ko \ninsmod " + x + "/lib/modules/" + rel + "/kernel/drivers/block/virtio_blk.ko \n"
		if err != nil || string(out) != want {
			t.Errorf("modprobe --show-depends virtio_blk: %v\n%s\nwant\n%s", err, out, want)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(x, "lib/modules", rel, "kernel/drivers/block/virtio_blk.ko")); string(b) != "vb" {
		t.Errorf("virtio_blk.ko = %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(x, "etc/cmdline")); string(b) != "rdloaddriver=virtio rdloaddriver=virtio_blk\n" {
		t.Errorf("etc/cmdline = %q", b)
	}
	again, res2, err := initrd.Rebuild(out, initrd.Spec{Release: rel, Modules: mods})
	if err != nil || res2.Changed() || !bytes.Equal(again, out) {
		t.Errorf("second rebuild: err %v changed %v", err, res2.Changed())
	}
}

func TestReadErrors(t *testing.T) {
	if _, err := initrd.Read([]byte("not an archive")); !errors.Is(err, initrd.ErrFormat) {
		t.Errorf("err = %v", err)
	}
	if _, _, err := initrd.Rebuild(hostCpio(t, t.TempDir()), initrd.Spec{}); !errors.Is(err, initrd.ErrUnsupported) {
		t.Errorf("empty initrd: err = %v", err)
	}
}

func TestModulesDep(t *testing.T) {
	// RHEL 5 style: absolute paths, dependencies in reverse load order.
	old := `/lib/modules/2.6.18-164.el5/kernel/drivers/block/virtio_blk.ko: /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_ring.ko /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio.ko
/lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio.ko:
/lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_ring.ko: /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio.ko
/lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_pci.ko: \
  /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_pci_legacy_dev.ko /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_pci_modern_dev.ko /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_ring.ko /lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio.ko
/lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
/lib/modules/2.6.18-164.el5/kernel/drivers/virtio/virtio_pci_modern_dev.ko:
`
	m, err := initrd.ParseModulesDep([]byte(old))
	if err != nil {
		t.Fatal(err)
	}
	order, err := m.LoadOrder("virtio_pci", "virtio-blk")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"kernel/drivers/virtio/virtio_pci_legacy_dev.ko", "kernel/drivers/virtio/virtio_pci_modern_dev.ko",
		"kernel/drivers/virtio/virtio.ko", "kernel/drivers/virtio/virtio_ring.ko",
		"kernel/drivers/virtio/virtio_pci.ko", "kernel/drivers/block/virtio_blk.ko"}
	if !slices.Equal(order, want) {
		t.Errorf("LoadOrder =\n%v\nwant\n%v", order, want)
	}
	if _, err := m.LoadOrder("virtio_net"); err == nil {
		t.Error("missing module: no error")
	}
	if _, err := initrd.ParseModulesDep([]byte("no colon here\n")); err == nil {
		t.Error("bad line: no error")
	}
	cyc, _ := initrd.ParseModulesDep([]byte("a.ko: b.ko\nb.ko: a.ko\n"))
	if _, err := cyc.LoadOrder("a"); err == nil {
		t.Error("cycle: no error")
	}
}

func FuzzModulesDep(f *testing.F) {
	f.Add([]byte("kernel/a.ko: kernel/b.ko\nkernel/b.ko:\n"))
	f.Add([]byte("/lib/modules/2.6.18/kernel/a.ko: \\\n /lib/modules/2.6.18/kernel/b.ko\n# c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := initrd.ParseModulesDep(data)
		if err != nil {
			return
		}
		for _, p := range m.Paths() {
			order, err := m.LoadOrder(initrd.ModuleName(p))
			if err != nil {
				continue
			}
			seen := map[string]bool{}
			for _, o := range order {
				for _, d := range m.Deps(o) {
					if !seen[d] {
						t.Fatalf("%s loaded before its dependency %s", o, d)
					}
				}
				seen[o] = true
			}
		}
	})
}

func FuzzRead(f *testing.F) {
	f.Add([]byte("070701"))
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	cpio.WriteRecordsAndDirs(w, []cpio.Record{cpio.StaticFile("init", nashInit, 0o755), cpio.Symlink("sbin", "bin"),
		cpio.CharDev("dev/console", 0o600, 5, 1), cpio.StaticFile("lib/xenblk.ko", "x", 0o644)})
	cpio.WriteTrailer(w)
	f.Add(raw.Bytes())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(raw.Bytes())
	zw.Close()
	f.Add(gz.Bytes())
	// The other compressions' headers, an lzma one asking for a 2 GiB
	// dictionary, an early cpio before gzip data.
	f.Add([]byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0})
	f.Add([]byte{0xfd, '7', 'z', 'X', 'Z', 0, 0, 1, 0x69, 0x22, 0xde, 0x36, 2, 0, 0x21, 1, 16, 0, 0, 0})
	f.Add([]byte{0x5d, 0, 0, 0, 0x80, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0})
	f.Add([]byte("BZh91AY&SY"))
	f.Add(append(raw.Bytes(), gz.Bytes()...))
	f.Fuzz(func(t *testing.T, data []byte) {
		img, err := initrd.Read(data)
		if err != nil {
			return
		}
		out, err := img.Bytes()
		if err != nil {
			return
		}
		img2, err := initrd.Read(out)
		if err != nil {
			t.Fatalf("re-read of written archive: %v", err)
		}
		if !slices.Equal(img.Names(), img2.Names()) {
			t.Fatalf("names %v -> %v", img.Names(), img2.Names())
		}
	})
}

// FuzzRebuildNash rebuilds initrds whose nash script is arbitrary: a
// rebuild either fails or loads every module after those it depends on
// and before the root is mounted, and rebuilding again changes nothing.
func FuzzRebuildNash(f *testing.F) {
	f.Add(nashInit)
	f.Add("#!/bin/nash\nmkrootdev /dev/root\n")
	f.Add("#!/bin/nash\ninsmod /lib/virtio.ko\nresume /dev/xvda3\nmount /sysroot\n")
	f.Add("mkrootdev /dev/root\ninsmod /lib/virtio.ko\n")
	spec := initrd.Spec{Modules: virtioModules, Drop: []string{"xenblk"}, Remap: remap}
	f.Fuzz(func(t *testing.T, script string) {
		var raw bytes.Buffer
		w := cpio.Newc.Writer(&raw)
		cpio.WriteRecordsAndDirs(w, []cpio.Record{cpio.StaticFile("init", "#!/bin/nash\n"+script, 0o755),
			cpio.StaticFile("lib/xenblk.ko", "x", 0o644), cpio.CharDev("dev/console", 0o600, 5, 1)})
		cpio.WriteTrailer(w)
		out, res, err := initrd.Rebuild(raw.Bytes(), spec)
		if err != nil {
			return
		}
		img, err := initrd.Read(out)
		if err != nil {
			t.Fatalf("rebuilt initrd does not read back: %v", err)
		}
		after, err := img.ReadFile("init")
		if err != nil || !bytes.Equal(after, res.ScriptAfter) {
			t.Fatalf("init %q, %v; result says %q", after, err, res.ScriptAfter)
		}
		seen := map[string]bool{}
		rootSeen := false
		for _, l := range strings.Split(string(after), "\n") {
			f := strings.Fields(l)
			if len(f) == 0 {
				continue
			}
			switch f[0] {
			case "mkrootdev", "resume":
				rootSeen = true
			case "insmod":
				if len(f) < 2 {
					continue
				}
				name := initrd.ModuleName(f[1])
				for i, m := range virtioModules {
					if initrd.ModuleName(m.Path) != name || seen[name] {
						continue
					}
					if rootSeen {
						t.Fatalf("%s first loaded after the root is needed:\n%s", name, after)
					}
					for _, prev := range virtioModules[:i] {
						if !seen[initrd.ModuleName(prev.Path)] {
							t.Fatalf("%s loaded before %s:\n%s", name, prev.Path, after)
						}
					}
				}
				seen[name] = true
			}
		}
		for _, m := range virtioModules {
			if !seen[initrd.ModuleName(m.Path)] {
				t.Fatalf("%s never loaded:\n%s", m.Path, after)
			}
		}
		again, res2, err := initrd.Rebuild(out, spec)
		if err != nil || res2.Changed() || !bytes.Equal(again, out) {
			t.Fatalf("second rebuild: err %v, changed %v", err, res2 != nil && res2.Changed())
		}
	})
}

func TestRebuildEditsFiles(t *testing.T) {
	var raw bytes.Buffer
	w := cpio.Newc.Writer(&raw)
	recs := []cpio.Record{
		cpio.StaticFile("init", "#!/bin/nash\nmount -t proc /proc /proc\nmkrootdev -t ext3 -o defaults,ro /dev/vda2\nmount /sysroot\nswitchroot\n", 0o755),
		cpio.Directory("etc", 0o755), cpio.Directory("etc/lvm", 0o755),
		cpio.StaticFile("etc/lvm/lvm.conf", "filter = [ \"a/xvd/\" ]\n", 0o644),
	}
	if err := cpio.WriteRecordsAndDirs(w, recs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.WriteTrailer(w); err != nil {
		t.Fatal(err)
	}
	edit := map[string]func([]byte) []byte{
		"etc/lvm/lvm.conf": func(b []byte) []byte { return bytes.ReplaceAll(b, []byte("xvd"), []byte("vd")) },
		"etc/missing":      func(b []byte) []byte { return []byte("never") },
	}
	out, res, err := initrd.Rebuild(raw.Bytes(), initrd.Spec{Edit: edit})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Edited, []string{"etc/lvm/lvm.conf"}) || !res.Changed() {
		t.Fatalf("Edited = %v", res.Edited)
	}
	img, err := initrd.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := img.ReadFile("etc/lvm/lvm.conf"); string(b) != "filter = [ \"a/vd/\" ]\n" {
		t.Errorf("edited member: %q", b)
	}
	if _, err := img.ReadFile("etc/missing"); err == nil {
		t.Error("an edit created a member the initrd lacked")
	}
	// Again: nothing left to change.
	if _, res, err := initrd.Rebuild(out, initrd.Spec{Edit: edit}); err != nil || res.Changed() {
		t.Errorf("second rebuild changed %v, %v", res, err)
	}
}
