// Package scratch makes temporary folders in $TMPDIR that the next run
// removes when the process that made them was killed (SIGKILL, a crash)
// before it could remove them itself.
//
//	d, err := scratch.New("xen2kvm-boot-web01-")
//	if err != nil { ... }
//	defer d.Remove()       // or d.Keep() to leave it for the user
//	... use d.Path ...
//
// Each folder holds a marker file its process keeps locked (flock) while
// it lives. New first sweeps the folders of the same prefix whose marker
// nobody holds: their process is gone. A folder left on purpose (Keep)
// has no marker and is never swept.
package scratch

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// marker is the lock file inside a folder in use.
const marker = ".xen2kvm-in-use"

// Dir is a temporary folder held by this process.
type Dir struct {
	Path string
	lock *os.File
}

// New removes stale folders $TMPDIR/prefix* (see Sweep) and creates a new
// one, held until Remove or Keep.
func New(prefix string) (*Dir, error) {
	if strings.ContainsRune(prefix, '/') {
		return nil, fmt.Errorf("scratch folder prefix %q holds a /", prefix)
	}
	Sweep(prefix)
	p, err := os.MkdirTemp("", prefix+"*")
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(p, marker), os.O_CREATE|os.O_RDWR|syscall.O_NOFOLLOW, 0o600)
	if err == nil {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		os.RemoveAll(p)
		return nil, fmt.Errorf("making %s: %w", p, err)
	}
	return &Dir{Path: p, lock: f}, nil
}

// Remove removes the folder and everything in it.
func (d *Dir) Remove() error {
	d.lock.Close()
	return os.RemoveAll(d.Path)
}

// Keep leaves the folder for the user (to rerun a logged command line):
// its marker goes, so no later sweep removes it.
func (d *Dir) Keep() {
	os.Remove(d.lock.Name())
	d.lock.Close()
}

// Sweep removes the folders $TMPDIR/prefix* of this user whose marker
// is there but not locked: their process died without cleaning up.
func Sweep(prefix string) {
	tmp := os.TempDir()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		return
	}
	for _, e := range ents {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		dir := filepath.Join(tmp, e.Name())
		if stale(dir) {
			os.RemoveAll(dir)
		}
	}
}

// stale tells whether dir is ours, was in use, and is no longer.
func stale(dir string) bool {
	var st syscall.Stat_t
	if syscall.Lstat(dir, &st) != nil || int(st.Uid) != os.Geteuid() {
		return false
	}
	f, err := os.OpenFile(filepath.Join(dir, marker), os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return false // no marker: kept on purpose, or not ours
	}
	defer f.Close()
	// The lock taken here goes with f: a sweep never holds a folder.
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil
}
