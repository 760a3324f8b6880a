package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/xen2kvm/xen2kvm/config"
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
	if e.Complete {
		return fmt.Sprintf("%s holds a finished migration of %s (%s)", e.OutDir, e.Name, strings.Join(e.Files, ", "))
	}
	return fmt.Sprintf("%s holds files named like the output of %s that no xen2kvm run recorded as its own (%s)", e.OutDir, e.Name, strings.Join(e.Files, ", "))
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
	if err := config.CheckName(name); err != nil {
		return nil, err
	}
	path, err := outPath(outDir, "."+name+".xen2kvm-lock")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output folder: %w", err)
	}
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

// ownedName is the record of the files migrations of guest name put
// into OutDir: written before a commit moves anything, so that whatever
// a killed commit left is known to be xen2kvm's own, and
// removed once the report (which lists the same files) is written.
// --force and a re-run remove only what it or the report lists.
func ownedName(name string) string { return "." + name + ".xen2kvm-files" }

// ErrOutsideOutDir is a path xen2kvm was about to write that is not a
// plain file name inside the output folder. Names are checked before
// any path is built (config.CheckName); this is the second line.
var ErrOutsideOutDir = errors.New("path outside the output folder")

// outPath joins dir and base, refusing a base that is not one plain file
// name (so that the result is always directly inside dir).
func outPath(dir, base string) (string, error) {
	if base == "" || base == "." || base == ".." || strings.ContainsAny(base, "/\x00") {
		return "", fmt.Errorf("%w: %q in %s", ErrOutsideOutDir, base, dir)
	}
	p := filepath.Join(dir, base)
	if filepath.Dir(p) != filepath.Clean(dir) {
		return "", fmt.Errorf("%w: %q in %s", ErrOutsideOutDir, base, dir)
	}
	return p, nil
}

// belongs tells whether base is a file name a migration of guest name
// may write: the guest's name followed by "." or "-" and no separator.
// A record (report or owned list) naming anything else is not trusted.
func belongs(name, base string) bool {
	if _, err := outPath(".", base); err != nil {
		return false
	}
	return strings.HasPrefix(base, name+".") || strings.HasPrefix(base, name+"-")
}

// outputState is what OutDir holds of guest name before a migration.
type outputState struct {
	// Owned are the existing files an earlier migration recorded as its
	// own output (in its report or its owned list).
	Owned []string
	// Foreign are existing files with names this migration writes that
	// no migration recorded: they are only replaced with --force.
	Foreign []string
	// Complete: NAME.report.json is there.
	Complete bool
	// Interrupted: an owned list without a report, what a commit killed
	// half way leaves; a re-run removes the owned files and starts afresh.
	Interrupted bool
}

// readOutput looks at what OutDir holds of guest name.
func readOutput(outDir, name string) (*outputState, error) {
	st := &outputState{}
	recorded := map[string]bool{}
	exists := func(base string) bool {
		_, err := os.Lstat(filepath.Join(outDir, base))
		return err == nil
	}
	var list struct {
		Files []string `json:"files"`
	}
	haveList := false
	if data, err := os.ReadFile(filepath.Join(outDir, ownedName(name))); err == nil {
		if json.Unmarshal(data, &list) == nil {
			haveList = true
			for _, f := range list.Files {
				recorded[f] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if data, err := os.ReadFile(filepath.Join(outDir, reportName(name))); err == nil {
		st.Complete = true
		recorded[reportName(name)] = true
		var rep struct {
			Files []string `json:"files"`
		}
		if json.Unmarshal(data, &rep) == nil {
			for _, f := range rep.Files {
				recorded[f] = true
			}
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	st.Interrupted = haveList && !st.Complete
	for f := range recorded {
		if belongs(name, f) && exists(f) {
			st.Owned = append(st.Owned, f)
		}
	}
	sort.Strings(st.Owned)
	ents, err := os.ReadDir(outDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		n := e.Name()
		if !recorded[n] && writes(name, n) {
			st.Foreign = append(st.Foreign, n)
		}
	}
	return st, nil
}

// writes tells whether a migration of guest name may write the file
// base: NAME.report.json, NAME.xml, NAME-virtio.xml, NAME.sh, NAME.boot.log,
// NAME-vmlinuz, NAME-initrd.img and NAME-TARGET images, TARGET a KVM
// disk name (vda, hdb, vdaa).
func writes(name, base string) bool {
	switch base {
	case reportName(name), name + ".xml", virtioXMLName(name), name + ".sh", name + ".boot.log", name + "-vmlinuz", name + "-initrd.img":
		return true
	}
	rest, ok := strings.CutPrefix(base, name+"-")
	if !ok {
		return false
	}
	stem, ext, _ := strings.Cut(rest, ".")
	if ext != "qcow2" && ext != "raw" {
		return false
	}
	for _, p := range []string{"vd", "hd"} {
		if l, ok := strings.CutPrefix(stem, p); ok && l != "" && strings.Trim(l, "abcdefghijklmnopqrstuvwxyz") == "" {
			return true
		}
	}
	return false
}

// missingOutputs lists the files a finished migration of guest name
// recorded in its report that are no longer in outDir (the report itself
// when it is gone or unreadable).
func missingOutputs(outDir, name string) ([]string, error) {
	data, err := os.ReadFile(filepath.Join(outDir, reportName(name)))
	if err != nil {
		return []string{reportName(name)}, err
	}
	var rep struct {
		Files []string `json:"files"`
	}
	if err := json.Unmarshal(data, &rep); err != nil || len(rep.Files) == 0 {
		return []string{reportName(name)}, fmt.Errorf("%s: no list of files: %v", reportName(name), err)
	}
	var missing []string
	for _, f := range rep.Files {
		if _, err := outPath(outDir, f); err != nil {
			missing = append(missing, f)
			continue
		}
		if _, err := os.Stat(filepath.Join(outDir, f)); err != nil {
			missing = append(missing, f)
		}
	}
	return missing, nil
}

// guestFiles lists the files in outDir a migration of guest name would
// replace: those recorded as its output and those it writes.
func guestFiles(outDir, name string) ([]string, error) {
	st, err := readOutput(outDir, name)
	if err != nil {
		return nil, err
	}
	return append(append([]string{}, st.Owned...), st.Foreign...), nil
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
	if err := config.CheckName(name); err != nil {
		return nil, err
	}
	dir, err := outPath(outDir, stagingName(name))
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating output folder: %w", err)
	}
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
// a report beside files it does not describe. Before anything moves, the
// owned list records every file involved, so that a commit killed half
// way leaves only files the next run knows to be xen2kvm's (and removes).
func (s *staging) commit(old []string, reportJSON []byte) error {
	rep := reportName(s.name)
	for _, f := range append(append([]string{rep}, old...), s.files...) {
		if !belongs(s.name, f) {
			return fmt.Errorf("%w: %q is not a file of guest %s", ErrOutsideOutDir, f, s.name)
		}
	}
	sort := func(list []string) []string { // the old report goes first
		var out []string
		for _, f := range list {
			if f == rep {
				out = append([]string{f}, out...)
			} else {
				out = append(out, f)
			}
		}
		return out
	}
	if err := s.writeOwned(append(append(append([]string{}, old...), s.files...), rep)); err != nil {
		return err
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
	if err := atomicfile.WriteFile(filepath.Join(s.outDir, rep), reportJSON, 0o644); err != nil {
		s.unmove(moved)
		return err
	}
	// The report now records the guest's files; the list has done its job.
	if err := os.Remove(filepath.Join(s.outDir, ownedName(s.name))); err != nil {
		return err
	}
	if err := atomicfile.SyncDir(s.outDir); err != nil {
		return err
	}
	return os.RemoveAll(s.dir)
}

// writeOwned records files (base names in OutDir) as the guest's own.
func (s *staging) writeOwned(files []string) error {
	seen := map[string]bool{}
	list := struct {
		Files []string `json:"files"`
	}{Files: []string{}}
	for _, f := range files {
		if !seen[f] {
			seen[f] = true
			list.Files = append(list.Files, f)
		}
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(s.outDir, ownedName(s.name)), append(data, '\n'), 0o644)
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
