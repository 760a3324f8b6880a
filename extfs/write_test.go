package extfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var _ guestfs.FS = (*FS)(nil)

// TestScriptedWrites is the acceptance test of issue 4: after a series of
// edits on every flavour, e2fsck finds nothing and debugfs reads back
// exactly what was written.
func TestScriptedWrites(t *testing.T) {
	if testing.Short() {
		t.Skip("builds several images; skipped with -short")
	}
	tree := sharedTree(t)
	_, xerr := xattrGet(filepath.Join(tree, "etc/fstab"))
	xattrsOnHost := xerr == nil
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, tree, 64)
			indexDirs(t, img)
			e2fsck(t, img)
			if xattrsOnHost && debugfsXattr(t, img, "etc/fstab", "user.xen2kvm") != "fstab-attr" {
				t.Fatalf("mke2fs did not copy the extended attribute: %q", debugfsXattr(t, img, "etc/fstab", "user.xen2kvm"))
			}
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			want := map[string][]byte{} // path -> content expected by debugfs
			gone := []string{}
			must := func(what string, err error) {
				t.Helper()
				if err != nil {
					t.Fatalf("%s: %v", what, err)
				}
			}
			fstab := []byte(strings.Repeat("/dev/vda1 / ext3 defaults 1 1\n", 40))
			must("replace fstab", fsys.WriteFile("etc/fstab", fstab, 0o644))
			want["etc/fstab"] = fstab
			big := pattern(20<<20, 99)
			must("replace big file", fsys.WriteFile("data/big20m", big, 0o644))
			want["data/big20m"] = big
			shrunk := pattern(3000, 98)
			must("shrink file", fsys.WriteFile("data/double", shrunk, 0o644))
			want["data/double"] = shrunk
			for i := range 400 {
				name := fmt.Sprintf("big/added-file-with-a-longer-name-%04d", i)
				data := []byte(fmt.Sprintf("added %d\n", i))
				must("add to htree dir", fsys.WriteFile(name, data, 0o600))
				if i%37 == 0 {
					want[name] = data
				}
			}
			want["big/entry-04321"] = []byte("4321\n")
			must("symlink", fsys.Symlink("fstab", "etc/fstab.new-link"))
			long := "/" + strings.Repeat("a-long-symlink-target/", 5) + "x"
			must("slow symlink", fsys.Symlink(long, "etc/slow-new"))
			must("rename", fsys.Rename("etc/hosts", "etc/hosts.orig"))
			want["etc/hosts.orig"] = []byte("127.0.0.1 localhost\n")
			want["etc/hosts.hardlink"] = []byte("127.0.0.1 localhost\n")
			gone = append(gone, "etc/hosts")
			for _, p := range []string{"data/odd", "big/entry-00010", "var/empty/dir", "data/sparse", "etc/slowlink"} {
				must("remove "+p, fsys.Remove(p))
				gone = append(gone, p)
			}
			must("mkdir", fsys.Mkdir("newdir", 0o750))
			must("write in new dir", fsys.WriteFile("newdir/x", []byte("new\n"), 0o644))
			must("chmod", fsys.Chmod("newdir/x", 0o755|fs.ModeSetuid))
			must("chown", fsys.Chown("newdir/x", 500, 501))
			mt := time.Date(2009, 3, 31, 12, 0, 0, 0, time.UTC)
			must("chtimes", fsys.Chtimes("newdir/x", mt, mt))
			must("move dir", fsys.Rename("newdir", "var/newdir"))
			want["var/newdir/x"] = []byte("new\n")

			// Reading back through our own reader.
			for p, data := range want {
				got, err := fsys.ReadFile(p)
				if err != nil || !bytes.Equal(got, data) {
					t.Errorf("ReadFile(%s) after writes: %d bytes, %v", p, len(got), err)
				}
			}
			if tgt, err := fsys.ReadLink("etc/slow-new"); err != nil || tgt != long {
				t.Errorf("ReadLink(etc/slow-new) = %q, %v", tgt, err)
			}
			fi, err := fsys.Stat("var/newdir/x")
			must("stat", err)
			st := fi.Sys().(*guestfs.Stat)
			if fi.Mode() != 0o755|fs.ModeSetuid || st.UID != 500 || st.GID != 501 || !fi.ModTime().Equal(mt) {
				t.Errorf("var/newdir/x: mode %v uid %d gid %d mtime %v", fi.Mode(), st.UID, st.GID, fi.ModTime())
			}

			// Fill the filesystem until it is full.
			must("mkdir fill", fsys.Mkdir("fill", 0o755))
			var fillErr error
			for i := 0; i < 1000; i++ {
				data := pattern(1<<20, byte(i))
				name := fmt.Sprintf("fill/f%03d", i)
				if fillErr = fsys.WriteFile(name, data, 0o644); fillErr != nil {
					break
				}
				if i%5 == 0 {
					want[name] = data
				}
			}
			if !errors.Is(fillErr, syscall.ENOSPC) {
				t.Fatalf("filling the filesystem: got %v, want ENOSPC", fillErr)
			}
			// Small files still fit in what is left, until that runs out too.
			for i := 0; ; i++ {
				err := fsys.WriteFile(fmt.Sprintf("fill/small%05d", i), pattern(700, byte(i)), 0o644)
				if err != nil {
					if !errors.Is(err, syscall.ENOSPC) {
						t.Fatalf("small fill: %v", err)
					}
					break
				}
				if i > 100000 {
					t.Fatal("filesystem never filled up")
				}
			}
			must("close", fsys.Close())

			e2fsck(t, img)
			for p, v := range map[string]string{"etc/hosts.orig": "kept", "etc/fstab": "fstab-attr"} {
				if xattrsOnHost && debugfsXattr(t, img, p, "user.xen2kvm") != v {
					t.Errorf("%s: extended attribute user.xen2kvm = %q, want %q", p, debugfsXattr(t, img, p, "user.xen2kvm"), v)
				}
			}
			for p, data := range want {
				if got := debugfsCat(t, img, p); !bytes.Equal(got, data) {
					t.Errorf("debugfs cat %s: %d bytes differ from the %d written", p, len(got), len(data))
				}
			}
			re, err := Open(openDev(t, img, false), ReadOnly())
			must("reopen", err)
			for _, p := range gone {
				if _, err := re.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Lstat(%s) after remove: %v", p, err)
				}
			}
			if t.Failed() {
				t.Logf("image kept at %s", img)
			}
		})
	}
}

func TestWriteErrors(t *testing.T) {
	img := mkfs(t, fsKinds[3], buildTreeOpts(t, 0, false), 16)
	fsys, err := Open(openDev(t, img, true))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		err  error
		do   func() error
	}{
		{"mkdir existing", fs.ErrExist, func() error { return fsys.Mkdir("etc", 0o755) }},
		{"remove non-empty", syscall.ENOTEMPTY, func() error { return fsys.Remove("etc") }},
		{"remove missing", fs.ErrNotExist, func() error { return fsys.Remove("nope") }},
		{"write over dir", syscall.EISDIR, func() error { return fsys.WriteFile("etc", nil, 0o644) }},
		{"write below file", syscall.ENOTDIR, func() error { return fsys.WriteFile("etc/fstab/x", nil, 0o644) }},
		{"rename into itself", fs.ErrInvalid, func() error { return fsys.Rename("var", "var/empty/var") }},
		{"invalid path", fs.ErrInvalid, func() error { return fsys.WriteFile("/etc/x", nil, 0o644) }},
		{"symlink exists", fs.ErrExist, func() error { return fsys.Symlink("x", "etc/fstab") }},
	} {
		if err := tc.do(); !errors.Is(err, tc.err) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.err)
		}
	}
	fsys.Close()
	e2fsck(t, img)

	ro, err := Open(openDev(t, img, false), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.WriteFile("etc/fstab", nil, 0); !errors.Is(err, fs.ErrPermission) {
		t.Errorf("write on read-only FS: %v", err)
	}
}

// A filesystem with metadata_csum reads, but opening it for writing fails
// before anything is written.
func TestMetadataCsumRefusedForWrite(t *testing.T) {
	k := fsKind{"ext4-csum", []string{"-t", "ext4", "-O", "metadata_csum,64bit"}, "ext4"}
	img := mkfs(t, k, buildTreeOpts(t, 0, false), 16)
	before := testutil.HashFile(t, img)
	_, err := Open(openDev(t, img, true))
	var fe *FeatureError
	if !errors.Is(err, ErrUnsupported) || !errors.As(err, &fe) || !fe.Write {
		t.Fatalf("Open for writing: %v, want a write FeatureError", err)
	}
	if !strings.Contains(err.Error(), "metadata_csum") {
		t.Errorf("error does not name the feature: %v", err)
	}
	if after := testutil.HashFile(t, img); after != before {
		t.Fatal("image changed")
	}
	ro, err := Open(openDev(t, img, false), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := ro.ReadFile("etc/hosts"); err != nil || string(got) != "127.0.0.1 localhost\n" {
		t.Errorf("ReadFile on metadata_csum: %q, %v", got, err)
	}
}

// Creating files until the inodes run out walks every group, including
// those whose inode tables are still uninitialised (uninit_bg).
func TestInodeExhaustion(t *testing.T) {
	for _, k := range []fsKind{fsKinds[0], fsKinds[3]} {
		t.Run(k.name, func(t *testing.T) {
			k.args = append(append([]string{}, k.args...), "-N", "600", "-g", "1024")
			img := mkfs(t, k, buildTreeOpts(t, 0, false), 16)
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			uninit := 0
			for g := range fsys.ngroups {
				if fsys.desc(g).flags()&bgInodeUninit != 0 {
					uninit++
				}
			}
			if k.typ == "ext4" && uninit == 0 {
				t.Fatal("no group with an uninitialised inode table; the test covers nothing")
			}
			var last error
			n := 0
			for ; n < 2000; n++ {
				dir := fmt.Sprintf("d%d", n%7)
				if n < 7 {
					if last = fsys.Mkdir(dir, 0o755); last != nil {
						break
					}
				}
				if last = fsys.WriteFile(fmt.Sprintf("%s/f%04d", dir, n), []byte{byte(n)}, 0o644); last != nil {
					break
				}
			}
			if !errors.Is(last, syscall.ENOSPC) {
				t.Fatalf("after %d files: %v, want ENOSPC", n, last)
			}
			fsys.Close()
			e2fsck(t, img)
			if got := debugfsCat(t, img, fmt.Sprintf("d%d/f%04d", (n-1)%7, n-1)); !bytes.Equal(got, []byte{byte(n - 1)}) {
				t.Errorf("last file reads %q", got)
			}
		})
	}
}

func xattrGet(path string) ([]byte, error) {
	buf := make([]byte, 256)
	n, err := syscall.Getxattr(path, "user.xen2kvm", buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// Less common layouts: meta_bg, no sparse_super, 2 KiB blocks, 512-byte
// inodes. Filling each until ENOSPC allocates from every group, including
// groups whose block bitmaps are computed (uninit_bg) from the layout.
func TestOtherLayouts(t *testing.T) {
	for _, k := range []fsKind{
		{"meta_bg", []string{"-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit,uninit_bg,meta_bg,^resize_inode"}, "ext4"},
		{"no-sparse-super", []string{"-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit,uninit_bg,^sparse_super,^resize_inode"}, "ext4"},
		{"2k-512-inodes", []string{"-t", "ext3", "-b", "2048", "-I", "512"}, "ext3"},
		{"no-flex_bg", []string{"-t", "ext4", "-b", "1024", "-O", "^metadata_csum,^64bit,uninit_bg,^flex_bg"}, "ext4"},
	} {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, buildTreeOpts(t, 0, false), 24)
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			if fsys.Type() != k.typ {
				t.Errorf("Type() = %s", fsys.Type())
			}
			if err := fsys.WriteFile("etc/fstab", []byte("replaced\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			var last error
			i := 0
			for ; i < 200 && last == nil; i++ {
				last = fsys.WriteFile(fmt.Sprintf("fill-%03d", i), pattern(512<<10, byte(i)), 0o644)
			}
			if !errors.Is(last, syscall.ENOSPC) {
				t.Fatalf("after %d files: %v, want ENOSPC", i, last)
			}
			fsys.Close()
			e2fsck(t, img)
			if got := debugfsCat(t, img, "fill-000"); !bytes.Equal(got, pattern(512<<10, 0)) {
				t.Error("fill-000 differs")
			}
			if got := debugfsCat(t, img, "etc/fstab"); string(got) != "replaced\n" {
				t.Errorf("etc/fstab = %q", got)
			}
		})
	}
}
