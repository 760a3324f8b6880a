package pipeline

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
)

// ErrExists is returned when OutDir already holds the guest and Force is
// not set.
var ErrExists = errors.New("output already exists")

// ExistsError says which files of the guest are already in OutDir.
type ExistsError struct {
	OutDir   string
	Name     string
	Files    []string
	Complete bool // NAME.report.json is there: a finished migration
}

func (e *ExistsError) Error() string {
	what := "an incomplete earlier migration"
	if e.Complete {
		what = "a finished migration"
	}
	return fmt.Sprintf("%s holds %s of %s (%s)", e.OutDir, what, e.Name, strings.Join(e.Files, ", "))
}

func (e *ExistsError) Unwrap() error { return ErrExists }

// Hint tells the CLI user how to go on.
func (e *ExistsError) Hint() string {
	return "use --force to replace it, or choose another output folder with -o"
}

// ErrBusy is returned when another xen2kvm is migrating the same guest
// into the same OutDir.
var ErrBusy = errors.New("another xen2kvm is migrating this guest into this folder")

// lockGuest takes the lock of guest name in outDir (created if needed),
// so two runs never write the same guest at once. A killed run's lock is
// released by the kernel.
func lockGuest(outDir, name string) (unlock func(), err error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output folder: %w", err)
	}
	path := filepath.Join(outDir, "."+name+".xen2kvm-lock")
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
		if err != nil {
			return nil, err
		}
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%s: %w", outDir, ErrBusy)
			}
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		// The holder before us may have removed the file after we opened
		// it: then our lock is on a file nobody else will see.
		var held, now syscall.Stat_t
		if syscall.Fstat(int(f.Fd()), &held) == nil && syscall.Stat(path, &now) == nil && held.Ino == now.Ino {
			return func() {
				os.Remove(path)
				f.Close()
			}, nil
		}
		f.Close()
	}
}

// reportName is the completion marker of a migrated guest.
func reportName(name string) string { return name + ".report.json" }

// stagingName is the folder inside OutDir a migration writes into.
func stagingName(name string) string { return "." + name + ".xen2kvm-partial" }

// guestFiles lists the files in outDir that belong to the guest name:
// NAME.report.json, NAME.xml, NAME.sh, NAME.boot.log, NAME-vmlinuz,
// NAME-initrd.img and NAME-TARGET images.
func guestFiles(outDir, name string) ([]string, error) {
	ents, err := os.ReadDir(outDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	img := regexp.MustCompile(`^` + regexp.QuoteMeta(name) + `-[a-z]+\.(qcow2|raw)$`)
	var out []string
	for _, e := range ents {
		n := e.Name()
		switch n {
		case reportName(name), name + ".xml", name + ".sh", name + ".boot.log", name + "-vmlinuz", name + "-initrd.img":
			out = append(out, n)
		default:
			if img.MatchString(n) {
				out = append(out, n)
			}
		}
	}
	return out, nil
}

// staging is the folder a migration writes its files into; commit moves
// them into OutDir, the report last.
type staging struct {
	outDir string
	dir    string
	name   string
	files  []string // base names, in the order they were added
}

// newStaging creates the staging folder of guest name in outDir, removing
// one left by an earlier run that was killed.
func newStaging(outDir, name string) (*staging, error) {
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output folder: %w", err)
	}
	dir := filepath.Join(outDir, stagingName(name))
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("removing stale %s: %w", dir, err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating staging folder: %w", err)
	}
	return &staging{outDir: outDir, dir: dir, name: name}, nil
}

func (s *staging) path(base string) string { return filepath.Join(s.dir, base) }

// add records a file that another writer created in the staging folder.
func (s *staging) add(base string) { s.files = append(s.files, base) }

// writeFile writes a file into the staging folder through a temporary
// name, fsynced before the rename.
func (s *staging) writeFile(base string, data []byte, perm os.FileMode) error {
	if err := atomicfile.WriteFile(s.path(base), data, perm); err != nil {
		return err
	}
	s.add(base)
	return nil
}

// commit moves the staged files into OutDir and writes the report last.
// Files of an earlier migration of the guest (old) are removed first,
// their report before anything else, so that at no point does OutDir hold
// a report beside files it does not describe.
func (s *staging) commit(old []string, reportJSON []byte) error {
	sort := func(list []string) []string { // the old report goes first
		var out []string
		for _, f := range list {
			if f == reportName(s.name) {
				out = append([]string{f}, out...)
			} else {
				out = append(out, f)
			}
		}
		return out
	}
	for _, f := range sort(old) {
		if err := os.Remove(filepath.Join(s.outDir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("replacing %s: %w", f, err)
		}
	}
	for _, f := range s.files {
		if err := syncFile(s.path(f)); err != nil {
			return err
		}
	}
	var moved []string
	for _, f := range s.files {
		if err := os.Rename(s.path(f), filepath.Join(s.outDir, f)); err != nil {
			s.unmove(moved)
			return fmt.Errorf("moving %s into %s: %w", f, s.outDir, err)
		}
		moved = append(moved, f)
	}
	if err := atomicfile.SyncDir(s.outDir); err != nil {
		s.unmove(moved)
		return err
	}
	if err := atomicfile.WriteFile(filepath.Join(s.outDir, reportName(s.name)), reportJSON, 0o644); err != nil {
		s.unmove(moved)
		return err
	}
	return os.RemoveAll(s.dir)
}

// unmove removes files a failed commit had already moved into OutDir.
func (s *staging) unmove(moved []string) {
	for _, f := range moved {
		os.Remove(filepath.Join(s.outDir, f))
	}
}

// discard removes the staging folder and everything in it.
func (s *staging) discard() { os.RemoveAll(s.dir) }

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		// A read-only file (a script without write permission) still syncs
		// through a read-only descriptor on Linux.
		if f, err = os.Open(path); err != nil {
			return err
		}
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("syncing %s: %w", path, err)
	}
	return nil
}
