package extfs

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

var (
	treeOnce sync.Once
	treeDir  string
	treeErr  error
)

// sharedTree builds the populated tree once for all read tests.
func sharedTree(t *testing.T) string {
	t.Helper()
	treeOnce.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				treeErr = fmt.Errorf("building the test tree: %v", r)
			}
		}()
		d, err := os.MkdirTemp("", "extfs-tree-")
		if err != nil {
			treeErr = err
			return
		}
		entries := 5000 // the acceptance test's htree directory
		if testing.Short() {
			entries = 1000
		}
		treeDir = buildTreeAt(d, entries)
	})
	if treeErr != nil {
		t.Fatal(treeErr)
	}
	return treeDir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if treeDir != "" {
		os.RemoveAll(filepath.Dir(treeDir))
	}
	os.Exit(code)
}

// buildTreeAt is buildTree for use outside a test's lifetime.
func buildTreeAt(parent string, bigDir int) string {
	tb := &treeTB{dir: parent}
	return buildTree(tb, bigDir)
}

// indexDirs runs e2fsck -fyD so large directories get an htree index.
func indexDirs(t testing.TB, img string) {
	t.Helper()
	testutil.NeedTool(t, "e2fsck")
	cmd := exec.Command("e2fsck", "-fyD", img)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
}

func TestReadMatchesTree(t *testing.T) {
	tree := sharedTree(t)
	for _, k := range fsKinds {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, tree, 64)
			indexDirs(t, img)
			fsys, err := Open(openDev(t, img, false), ReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			if got := fsys.Type(); got != k.typ {
				t.Errorf("Type() = %q, want %q", got, k.typ)
			}
			if got := fsys.Label(); got != "testvol" {
				t.Errorf("Label() = %q", got)
			}
			if got := fsys.UUID(); got != "3a0fe6b1-2c3d-4e5f-8a9b-0c1d2e3f4a5b" {
				t.Errorf("UUID() = %q", got)
			}
			compareTree(t, fsys, tree)
			big, err := fsys.Stat("big")
			if err != nil {
				t.Fatal(err)
			}
			in, err := fsys.readInode(uint32(big.Sys().(*guestfs.Stat).Ino))
			if err != nil {
				t.Fatal(err)
			}
			if in.flags()&flagIndex == 0 {
				t.Errorf("big directory is not htree-indexed; the test does not cover htree reads")
			}
			isl, err := fsys.Stat("data/islands")
			if err != nil {
				t.Fatal(err)
			}
			in, err = fsys.readInode(uint32(isl.Sys().(*guestfs.Stat).Ino))
			if err != nil {
				t.Fatal(err)
			}
			if k.typ == "ext4" && (in.flags()&flagExtents == 0 || le16(in.iblock(), 6) == 0) {
				t.Errorf("data/islands has no extent tree below the inode; the test does not cover extent index nodes")
			}
		})
	}
}

// compareTree checks that every entry of the host tree reads back equal.
func compareTree(t *testing.T, fsys *FS, tree string) {
	t.Helper()
	inodes := map[uint64]string{}
	hostInodes := map[uint64]string{}
	n := 0
	err := filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tree, p)
		rel = filepath.ToSlash(rel)
		hi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := fsys.Lstat(rel)
		if err != nil {
			t.Errorf("Lstat(%q): %v", rel, err)
			return nil
		}
		n++
		if gi.Mode() != hi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), hi.Mode())
		}
		st := gi.Sys().(*guestfs.Stat)
		hst := hi.Sys().(*syscall.Stat_t)
		if prev, ok := hostInodes[hst.Ino]; ok && !d.IsDir() {
			if inodes[st.Ino] != prev {
				t.Errorf("%s: hard link to %s not preserved (inode %d)", rel, prev, st.Ino)
			}
		} else if !d.IsDir() {
			hostInodes[hst.Ino] = rel
			inodes[st.Ino] = rel
		}
		if rel != "." && !gi.ModTime().Equal(hi.ModTime().Truncate(1e9)) && !gi.ModTime().Equal(hi.ModTime()) {
			t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), hi.ModTime())
		}
		switch {
		case hi.Mode().IsRegular():
			if gi.Size() != hi.Size() {
				t.Errorf("%s: size %d, want %d", rel, gi.Size(), hi.Size())
			}
			want, _ := os.ReadFile(p)
			got, err := fsys.ReadFile(rel)
			if err != nil {
				t.Errorf("ReadFile(%q): %v", rel, err)
			} else if !bytes.Equal(got, want) {
				t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(got), len(want))
			}
		case hi.Mode()&fs.ModeSymlink != 0:
			want, _ := os.Readlink(p)
			got, err := fsys.ReadLink(rel)
			if err != nil || got != want {
				t.Errorf("ReadLink(%q) = %q, %v; want %q", rel, got, err, want)
			}
		case hi.IsDir():
			want, _ := os.ReadDir(p)
			got, err := fsys.ReadDir(rel)
			if err != nil {
				t.Errorf("ReadDir(%q): %v", rel, err)
				return nil
			}
			if rel == "." { // mke2fs adds lost+found
				got = slices.DeleteFunc(got, func(e fs.DirEntry) bool { return e.Name() == "lost+found" })
			}
			if len(got) != len(want) {
				t.Errorf("ReadDir(%q): %d entries, want %d", rel, len(got), len(want))
				return nil
			}
			for i := range want {
				if got[i].Name() != want[i].Name() || got[i].Type() != want[i].Type() {
					t.Errorf("ReadDir(%q)[%d] = %s %v, want %s %v", rel, i, got[i].Name(), got[i].Type(), want[i].Name(), want[i].Type())
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 1000 {
		t.Fatalf("compared only %d entries", n)
	}
}

func TestReadFollowsSymlinks(t *testing.T) {
	img := mkfs(t, fsKinds[0], buildTree(t, 0), 64)
	fsys, err := Open(openDev(t, img, false), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		want string
		err  error
	}{
		{"etc/fstab.link", "/dev/xvda1 / ext3 defaults 1 1\n/dev/xvda2 swap swap defaults 0 0\n", nil},
		{"abs-hosts", "127.0.0.1 localhost\n", nil},
		{"dangling", "", fs.ErrNotExist},
		{"etc/fstab/x", "", syscall.ENOTDIR},
		{"nope", "", fs.ErrNotExist},
		{"/etc/fstab", "", fs.ErrInvalid},
		{"etc", "", syscall.EISDIR},
	} {
		got, err := fsys.ReadFile(tc.name)
		if !errors.Is(err, tc.err) || (err == nil && string(got) != tc.want) {
			t.Errorf("ReadFile(%q) = %q, %v; want %q, %v", tc.name, got, err, tc.want, tc.err)
		}
	}
}

func TestFSConformance(t *testing.T) {
	dir := buildTreeOpts(t, 0, false)
	img := mkfs(t, fsKinds[3], dir, 64)
	fsys, err := Open(openDev(t, img, false), ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	if err := fstest.TestFS(fsys, "etc/fstab", "data/indirect", "etc/hosts.hardlink", "var/empty/dir"); err != nil {
		t.Fatal(err)
	}
}
