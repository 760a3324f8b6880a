package extfs

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// fileDev adapts an image file to diskimg.Device.
type fileDev struct {
	*os.File
	size int64
}

func (d *fileDev) Size() int64 { return d.size }

func openDev(t testing.TB, path string, write bool) *fileDev {
	t.Helper()
	flag := os.O_RDONLY
	if write {
		flag = os.O_RDWR
	}
	fh, err := os.OpenFile(path, flag, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fh.Close() })
	st, err := fh.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return &fileDev{File: fh, size: st.Size()}
}

// fsKind is one filesystem flavour the tests build with mke2fs.
type fsKind struct {
	name string
	args []string // mke2fs arguments before the image and size
	typ  string   // what Type must report
}

var fsKinds = []fsKind{
	{"ext2", []string{"-t", "ext2", "-b", "1024"}, "ext2"},
	{"ext3-128", []string{"-t", "ext3", "-I", "128", "-b", "1024", "-O", "dir_index"}, "ext3"},
	{"ext3-256", []string{"-t", "ext3", "-I", "256", "-b", "4096", "-O", "dir_index"}, "ext3"},
	// ext4 as RHEL 6 makes it: no metadata_csum, no 64bit, gdt checksums.
	{"ext4-rhel6", []string{"-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit,uninit_bg"}, "ext4"},
	// 64-bit group descriptors with gdt checksums, 4 KiB blocks.
	{"ext4-64bit", []string{"-t", "ext4", "-b", "4096", "-O", "^metadata_csum,64bit,uninit_bg"}, "ext4"},
}

// mkfs builds an image of sizeMiB from tree (may be "") and returns its path.
func mkfs(t testing.TB, k fsKind, tree string, sizeMiB int) string {
	t.Helper()
	testutil.NeedTool(t, "mke2fs")
	img := filepath.Join(t.TempDir(), k.name+".img")
	args := append([]string{"-q", "-F", "-L", "testvol", "-U", "3a0fe6b1-2c3d-4e5f-8a9b-0c1d2e3f4a5b", "-E", "lazy_itable_init=1"}, k.args...)
	if tree != "" {
		args = append(args, "-d", tree)
	}
	args = append(args, img, fmt.Sprintf("%dM", sizeMiB))
	cmd := exec.Command("mke2fs", args...)
	cmd.Env = append(os.Environ(), "MKE2FS_CONFIG=/etc/mke2fs.conf", "E2FSPROGS_FAKE_TIME=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return img
}

// e2fsck runs e2fsck -fn and fails the test on any reported problem.
func e2fsck(t testing.TB, img string) {
	t.Helper()
	testutil.NeedTool(t, "e2fsck")
	cmd := exec.Command("e2fsck", "-fn", img)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
}

// debugfsCat returns what debugfs reads for path.
func debugfsCat(t testing.TB, img, path string) []byte {
	t.Helper()
	testutil.NeedTool(t, "debugfs")
	cmd := exec.Command("debugfs", "-R", "cat /"+path, img)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, stderr.String())
	}
	if s := stderr.String(); strings.Contains(s, "not found") || strings.Contains(s, "File not found") {
		t.Fatalf("debugfs cat %s: %s", path, s)
	}
	return stdout.Bytes()
}

// pattern returns n deterministic bytes that differ per seed.
func pattern(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// buildTree makes the populated tree every flavour is built from.
func buildTree(t testing.TB, bigDirEntries int) string { return buildTreeOpts(t, bigDirEntries, true) }

// buildTreeOpts is buildTree; full=false leaves out the large files and the
// dangling symlinks (for fstest.TestFS, which opens everything).
func buildTreeOpts(t testing.TB, bigDirEntries int, full bool) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	write := func(name string, data []byte, perm os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, name)
		must(os.MkdirAll(filepath.Dir(p), 0o755))
		must(os.WriteFile(p, data, perm))
		must(os.Chmod(p, perm))
	}
	write("etc/fstab", []byte("/dev/xvda1 / ext3 defaults 1 1\n/dev/xvda2 swap swap defaults 0 0\n"), 0o644)
	write("etc/hosts", []byte("127.0.0.1 localhost\n"), 0o644)
	write("etc/shadow", []byte("root:!:19000::::::\n"), 0o400)
	write("empty", nil, 0o644)
	write("one", []byte("x"), 0o600)
	write("bin/tool", pattern(1023, 1), 0o755)
	write("data/block", pattern(1024, 2), 0o644)
	write("data/odd", pattern(4097, 3), 0o644)
	write("data/indirect", pattern(200*1024+17, 4), 0o644) // single indirect at 1 KiB blocks
	if full {
		write("data/double", pattern(3*1024*1024+5, 5), 0o644) // double indirect at 1 KiB blocks
		if !testing.Short() {
			write("data/big20m", pattern(20*1024*1024, 6), 0o644) // replaced by the write test
		}
		write("boot/initrd-2.6.18.img", pattern(777777, 7), 0o600)
	}
	// Many small data islands: an extent tree deeper than the inode (ext4),
	// holes in indirect blocks (ext2/3).
	isl, err := os.Create(filepath.Join(dir, "data/islands"))
	must(err)
	for i := range 40 {
		_, err = isl.WriteAt(pattern(100, byte(i)), int64(i)*64<<10)
		must(err)
	}
	must(isl.Close())
	if full {
		// Sparse file reaching the triple indirect range of 1 KiB blocks.
		sp := filepath.Join(dir, "data/sparse")
		fh, err := os.Create(sp)
		must(err)
		_, err = fh.WriteAt([]byte("start"), 0)
		must(err)
		_, err = fh.WriteAt(pattern(5000, 8), 80<<20)
		must(err)
		must(fh.Close())
	}
	must(os.Symlink("fstab", filepath.Join(dir, "etc/fstab.link")))
	must(os.Symlink("/etc/hosts", filepath.Join(dir, "abs-hosts")))
	long := "../" + strings.Repeat("long-target-component/", 5) + "end"
	if full {
		must(os.Symlink(long, filepath.Join(dir, "etc/slowlink")))
		must(os.Symlink("dangling-nowhere", filepath.Join(dir, "dangling")))
	} else {
		must(os.MkdirAll(filepath.Join(dir, long[3:]), 0o755))
		must(os.Symlink(long, filepath.Join(dir, "etc/slowlink")))
	}
	must(os.Link(filepath.Join(dir, "etc/hosts"), filepath.Join(dir, "etc/hosts.hardlink")))
	must(os.MkdirAll(filepath.Join(dir, "var/empty/dir"), 0o711))
	must(syscall.Mkfifo(filepath.Join(dir, "var/fifo"), 0o644))
	// An extended attribute, which writes must leave alone.
	_ = syscall.Setxattr(filepath.Join(dir, "etc/hosts"), "user.xen2kvm", []byte("kept"), 0)
	_ = syscall.Setxattr(filepath.Join(dir, "etc/fstab"), "user.xen2kvm", []byte("fstab-attr"), 0)
	if bigDirEntries > 0 {
		must(os.MkdirAll(filepath.Join(dir, "big"), 0o755))
		for i := range bigDirEntries {
			must(os.WriteFile(filepath.Join(dir, "big", fmt.Sprintf("entry-%05d", i)), []byte(fmt.Sprintf("%d\n", i)), 0o644))
		}
	}
	return dir
}

// treeTB lets buildTree run outside a test (for the shared tree).
type treeTB struct {
	testing.TB
	dir string
}

func (t *treeTB) Helper()                   {}
func (t *treeTB) TempDir() string           { return t.dir }
func (t *treeTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (t *treeTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

// debugfsXattr returns the value of a user.* extended attribute, or "" when
// debugfs finds none.
func debugfsXattr(t testing.TB, img, path, name string) string {
	t.Helper()
	out, _ := exec.Command("debugfs", "-R", "ea_get /"+path+" "+name, img).CombinedOutput()
	// debugfs prints: user.xen2kvm (4) = "kept"
	s := string(out)
	i := strings.Index(s, `= "`)
	if i < 0 {
		return ""
	}
	s = s[i+3:]
	if j := strings.Index(s, `"`); j >= 0 {
		s = s[:j]
	}
	return s
}
