package firstboot

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strings"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/report"
)

// DiffDirs are the folders whose files Diff compares by content and
// shows as unified diffs.
var DiffDirs = []string{"etc", "boot"}

// ListDirs are the folders (or single files) whose changes Diff only
// lists: logs and state a first boot writes, and the RPM database (which
// a first-boot registration of a kernel installed with --kernel-rpm
// writes).
var ListDirs = []string{"var/log", "var/lib/random-seed", "var/lib/rpm"}

// maxDiffBytes bounds the files Diff renders as unified diffs.
const maxDiffBytes = 1 << 20

// entry is what Diff knows of one file.
type entry struct {
	mode fs.FileMode
	size int64
	link string // symlink target
	info fs.FileInfo
}

// Diff compares the guest's files before its first boot (the converted
// image) with after it (the boot's overlay): every file of DiffDirs that
// was created, changed or removed, with a unified diff for text, and the
// files of ListDirs whose size or time changed. Changes that mean a
// broken conversion carry a Flag (see Flag). Both sides are only read.
func Diff(before, after fs.FS) ([]report.DriftFile, error) {
	var out []report.DriftFile
	var errs []error
	for _, dir := range append(append([]string{}, DiffDirs...), ListDirs...) {
		contents := contains(DiffDirs, dir)
		a, err := walk(before, dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading /%s before the boot: %w", dir, err))
			continue
		}
		b, err := walk(after, dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("reading /%s after the boot: %w", dir, err))
			continue
		}
		names := map[string]bool{}
		for n := range a {
			names[n] = true
		}
		for n := range b {
			names[n] = true
		}
		sorted := make([]string, 0, len(names))
		for n := range names {
			sorted = append(sorted, n)
		}
		sort.Strings(sorted)
		for _, n := range sorted {
			ea, inA := a[n]
			eb, inB := b[n]
			var d report.DriftFile
			switch {
			case inA && !inB:
				d = report.DriftFile{Path: n, Change: "removed"}
			case !inA && inB:
				d = report.DriftFile{Path: n, Change: "created"}
			default:
				same, err := sameFile(before, after, n, ea, eb, contents)
				if err != nil {
					errs = append(errs, err)
					continue
				}
				if same {
					continue
				}
				d = report.DriftFile{Path: n, Change: "changed"}
			}
			if ea.mode.IsDir() || eb.mode.IsDir() {
				if d.Change == "changed" {
					continue // a folder's own times change with its entries
				}
			}
			d.Diff = render(before, after, n, ea, eb, inA, inB, contents)
			out = append(out, d)
		}
	}
	// /.autorelabel asks for a relabel at the next boot; it is still
	// there after the first boot when the guest did not relabel.
	if _, err := fs.Stat(after, ".autorelabel"); err == nil {
		out = append(out, report.DriftFile{Path: ".autorelabel", Change: "present",
			Diff: "/.autorelabel is still there after the first boot"})
	}
	read := func(fsys fs.FS) func(string) []byte {
		return func(name string) []byte {
			b, _ := fs.ReadFile(fsys, name)
			return b
		}
	}
	for i := range out {
		out[i].Flag = Flag(out[i], read(before), read(after))
	}
	return out, errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// walk lists the files under dir (dir itself when it is a file); a
// missing dir is empty.
func walk(fsys fs.FS, dir string) (map[string]entry, error) {
	m := map[string]entry{}
	err := fs.WalkDir(fsys, dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		e := entry{mode: info.Mode(), size: info.Size(), info: info}
		if info.Mode()&fs.ModeSymlink != 0 {
			if rl, ok := fsys.(interface{ ReadLink(string) (string, error) }); ok {
				e.link, _ = rl.ReadLink(p)
			}
		}
		if p != dir || !info.IsDir() {
			m[p] = e
		}
		return nil
	})
	if errors.Is(err, fs.SkipAll) {
		err = nil
	}
	return m, err
}

func sameFile(before, after fs.FS, name string, a, b entry, contents bool) (bool, error) {
	if a.mode.Type() != b.mode.Type() || a.mode.Perm() != b.mode.Perm() || a.link != b.link {
		return false, nil
	}
	if !a.mode.IsRegular() {
		return true, nil
	}
	if a.size != b.size {
		return false, nil
	}
	if !contents {
		return a.info.ModTime().Equal(b.info.ModTime()), nil
	}
	da, err := fs.ReadFile(before, name)
	if err != nil {
		return false, fmt.Errorf("reading /%s before the boot: %w", name, err)
	}
	db, err := fs.ReadFile(after, name)
	if err != nil {
		return false, fmt.Errorf("reading /%s after the boot: %w", name, err)
	}
	return bytes.Equal(da, db), nil
}

// render is the diff or summary of one drifted file.
func render(before, after fs.FS, name string, a, b entry, inA, inB, contents bool) string {
	kind := func(e entry) string {
		switch {
		case e.mode.IsDir():
			return "folder"
		case e.mode&fs.ModeSymlink != 0:
			return "symlink to " + e.link
		case e.mode.IsRegular():
			return fmt.Sprintf("%d bytes", e.size)
		}
		return e.mode.Type().String()
	}
	switch {
	case !inA:
		if !contents || !b.mode.IsRegular() || b.size > maxDiffBytes {
			return "created: " + kind(b)
		}
	case !inB:
		if !contents || !a.mode.IsRegular() || a.size > maxDiffBytes {
			return "removed: " + kind(a)
		}
	default:
		if !contents || !a.mode.IsRegular() || !b.mode.IsRegular() || a.size > maxDiffBytes || b.size > maxDiffBytes {
			s := kind(a) + " -> " + kind(b)
			if a.mode.Perm() != b.mode.Perm() {
				s += fmt.Sprintf(" (mode %v -> %v)", a.mode.Perm(), b.mode.Perm())
			}
			return "changed: " + s
		}
	}
	var da, db []byte
	if inA {
		da, _ = fs.ReadFile(before, name)
	}
	if inB {
		db, _ = fs.ReadFile(after, name)
	}
	if !convert.IsText(da) || !convert.IsText(db) {
		return fmt.Sprintf("Binary file /%s: %s -> %s", name, sizeOr(inA, len(da)), sizeOr(inB, len(db)))
	}
	from, to := "a/"+name, "b/"+name
	if !inA {
		from = "/dev/null"
	}
	if !inB {
		to = "/dev/null"
	}
	d := convert.UnifiedDiff(from, to, da, db)
	if inA && inB && bytes.Equal(da, db) {
		d += fmt.Sprintf("(content unchanged; mode %v -> %v)\n", a.mode.Perm(), b.mode.Perm())
	}
	return d
}

func sizeOr(present bool, n int) string {
	if !present {
		return "none"
	}
	return fmt.Sprintf("%d bytes", n)
}

var (
	ifcfgRe     = regexp.MustCompile(`^etc/sysconfig/(network-scripts|networking/devices|networking/profiles/[^/]+)/ifcfg-([^/]+)$`)
	persistNet  = "etc/udev/rules.d/70-persistent-net.rules"
	udevNameRe  = regexp.MustCompile(`NAME="?([^",\s]+)`)
	bootConfigs = map[string]string{
		"etc/fstab":           "the filesystems the guest mounts",
		"boot/grub/grub.conf": "the boot loader's configuration",
		"boot/grub/menu.lst":  "the boot loader's configuration",
		"etc/grub.conf":       "the boot loader's configuration",
		"etc/modprobe.conf":   "the drivers the guest loads",
		"etc/modules.conf":    "the drivers the guest loads",
	}
)

// Flag tells why a file's change during the first boot means a broken
// conversion, or "" when it does not: an interface config rewritten,
// removed or moved to .bak (kudzu found "new" hardware), a new interface
// in 70-persistent-net.rules (udev renamed the NIC), fstab, the grub
// config or modprobe.conf changed, /.autorelabel still present. before
// and after read a file's content on each side (nil when absent).
func Flag(d report.DriftFile, before, after func(string) []byte) string {
	if d.Path == ".autorelabel" && d.Change == "present" {
		return "/.autorelabel is still present: the guest did not relabel its files at the first boot"
	}
	if m := ifcfgRe.FindStringSubmatch(d.Path); m != nil {
		name := m[2]
		switch {
		case name == "lo" || strings.HasPrefix(name, "lo."):
			return ""
		case strings.HasSuffix(name, ".bak") && d.Change == "created":
			return "interface config moved to " + path.Base(d.Path) + ": the guest's first boot (kudzu) replaced the interface's configuration"
		case strings.HasSuffix(name, ".bak"):
			return ""
		case d.Change == "changed":
			return "interface config " + path.Base(d.Path) + " rewritten during the first boot"
		case d.Change == "removed":
			return "interface config " + path.Base(d.Path) + " removed during the first boot"
		case d.Change == "created":
			return "interface config " + path.Base(d.Path) + " created during the first boot: the NIC may have come up under a new name"
		}
	}
	if d.Path == persistNet && d.Change != "removed" {
		old := map[string]bool{}
		for _, m := range udevNameRe.FindAllStringSubmatch(string(before(d.Path)), -1) {
			old[m[1]] = true
		}
		var added []string
		for _, m := range udevNameRe.FindAllStringSubmatch(string(after(d.Path)), -1) {
			if !old[m[1]] {
				added = append(added, m[1])
			}
		}
		if len(added) > 0 {
			return "udev recorded a new interface " + strings.Join(added, ", ") + ": the NIC was renamed"
		}
	}
	if what, ok := bootConfigs[d.Path]; ok && d.Change != "created" {
		return "/" + d.Path + " (" + what + ") " + d.Change + " during the first boot"
	}
	return ""
}
