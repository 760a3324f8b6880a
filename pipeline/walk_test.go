package pipeline

import (
	"errors"
	"io/fs"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestWalkFSDirectoryCycleExt3: a directory hard link inside a real ext3
// (made with debugfs, as a damaged filesystem has one) is reported once
// and the walk ends; damage away from the edited paths is a warning,
// damage on the way to one a failure.
func TestWalkFSDirectoryCycleExt3(t *testing.T) {
	testutil.NeedTool(t, "mkfs.ext3")
	testutil.NeedTool(t, "debugfs")
	img := filepath.Join(t.TempDir(), "fs.img")
	testutil.Run(t, "mkfs.ext3", "-q", "-F", img, "8M")
	cmd := exec.Command("debugfs", "-w", "-f", "-", img)
	cmd.Stdin = strings.NewReader("mkdir etc\nwrite /dev/null etc/fstab\nmkdir var\nmkdir var/spool\nmkdir var/spool/mail\nlink /var /var/spool/mail/loop\nlink /etc /etc/self\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	dev, err := diskimg.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	fsys, err := extfs.Open(dev, extfs.ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var n int
	var problems []walkProblem
	go func() { n, problems = walkFS(fsys); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the walk does not end on a directory cycle")
	}
	if len(problems) != 2 || n == 0 {
		t.Fatalf("%d entries, problems %v", n, problems)
	}
	for _, p := range problems {
		if !errors.Is(p.err, errDirCycle) {
			t.Errorf("%v, want a directory cycle", p)
		}
	}
	edited := []string{"etc/fstab"}
	byPath := map[string]bool{}
	for _, p := range problems {
		byPath[p.path] = p.touched(edited)
	}
	if touched, ok := byPath["var/spool/mail/loop"]; !ok || touched {
		t.Errorf("the cycle under /var: %v", byPath)
	}
	if touched, ok := byPath["etc/self"]; !ok || touched {
		// etc/self is beside etc/fstab, not on the way to it.
		t.Errorf("the cycle under /etc: %v", byPath)
	}
	if !(walkProblem{path: "etc"}).touched(edited) || !(walkProblem{path: "."}).touched(edited) || (walkProblem{path: "et"}).touched(edited) {
		t.Error("touched: a directory on the way to an edited file")
	}
	// On a separate /boot, grub/grub.conf is the edited boot/grub/grub.conf.
	if !(walkProblem{path: "grub"}).touched([]string{"boot/grub/grub.conf"}) {
		t.Error("touched: a /boot filesystem's grub folder")
	}
}

// TestWalkFSBounded: a walk without inode numbers still ends, at
// maxWalkDepth, and one that finds many problems stops collecting them.
func TestWalkFSBounded(t *testing.T) {
	inf := infiniteFS{}
	n, problems := walkFS(inf)
	if n != maxWalkDepth+1 || len(problems) != 1 || !strings.Contains(problems[0].err.Error(), "directory levels") {
		t.Errorf("%d entries, %v", n, problems)
	}
	// Many unreadable entries: at most maxWalkProblems are kept.
	m := fstest.MapFS{}
	for i := 0; i < 3*maxWalkProblems; i++ {
		m[string(rune('a'+i%26))+strings.Repeat("x", i)] = &fstest.MapFile{Mode: fs.ModeDir}
	}
	_, problems = walkFS(brokenDirs{m})
	if len(problems) != maxWalkProblems {
		t.Errorf("%d problems kept", len(problems))
	}
	// The same directory twice by inode number is a cycle even where
	// the tree given is finite.
	m = fstest.MapFS{
		"a":   {Mode: fs.ModeDir, Sys: &guestfs.Stat{Ino: 12}},
		"a/b": {Mode: fs.ModeDir, Sys: &guestfs.Stat{Ino: 13}},
		"c":   {Mode: fs.ModeDir, Sys: guestfs.Stat{Ino: 13}},
	}
	if _, problems = walkFS(m); len(problems) != 1 || !errors.Is(problems[0].err, errDirCycle) {
		t.Errorf("problems %v", problems)
	}
}

// infiniteFS has a directory "d" in every directory, without inodes.
type infiniteFS struct{}

func (infiniteFS) Open(name string) (fs.File, error) {
	return fstest.MapFS{".": {Mode: fs.ModeDir}}.Open(".")
}

func (infiniteFS) ReadDir(name string) ([]fs.DirEntry, error) {
	fi, err := fstest.MapFS{"d": {Mode: fs.ModeDir}}.Stat("d")
	if err != nil {
		return nil, err
	}
	return []fs.DirEntry{fs.FileInfoToDirEntry(fi)}, nil
}

// brokenDirs fails to read every directory but the root.
type brokenDirs struct{ fstest.MapFS }

func (b brokenDirs) ReadDir(name string) ([]fs.DirEntry, error) {
	if name != "." {
		return nil, errors.New("bad block")
	}
	return b.MapFS.ReadDir(name)
}
