package pipeline

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// guestView is a migrated guest's output re-opened read-only: its
// filesystems mounted as its fstab mounts them, and the names under which
// the KVM guest will see its block devices.
type guestView struct {
	root guestfs.FS
	// filesystems by a name for people ("vda1", "VolGroup00/LogVol00").
	filesystems map[string]fs.FS
	// broken are filesystems that could not be opened, and why.
	broken map[string]error
	// devices are the device paths the guest will have: /dev/vda,
	// /dev/vda1, /dev/VolGroup00/LogVol00, /dev/mapper/VolGroup00-LogVol00.
	devices map[string]bool
	// labels and uuids of the filesystems and swap areas.
	labels, uuids map[string]bool
	// warnings are what the assembly found wrong but went on past.
	warnings []string
}

// validateView runs the checks over a re-opened output: every filesystem
// walks cleanly, the default grub entry's kernel and initrd are there and
// the initrd carries the drivers for the new disk bus, and every device
// /etc/fstab and root= name exists on the KVM side.
//
// edited are the guest paths the conversion wrote ("etc/fstab"); damage a
// filesystem walk finds elsewhere is a warning on the check, not a
// failure. scratch is a folder for the boot entry's files: the staging
// folder, so that a killed run leaves nothing outside OUTDIR.
func validateView(v *guestView, k *config.KVMDomain, virtio bool, edited []string, scratch string) []report.Check {
	var checks []report.Check
	names := make([]string, 0, len(v.filesystems))
	for n := range v.filesystems {
		names = append(names, n)
	}
	for n := range v.broken {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err := v.broken[n]; err != nil {
			checks = append(checks, report.Check{Name: "filesystem " + n + " readable", Detail: err.Error()})
			continue
		}
		entries, problems := walkFS(v.filesystems[n])
		c := report.Check{Name: "filesystem " + n + " readable", OK: true, Detail: fmt.Sprintf("%d entries", entries)}
		var fatal, damage []string
		for _, p := range problems {
			if p.touched(edited) {
				fatal = append(fatal, p.String())
			} else {
				damage = append(damage, p.String())
			}
		}
		if len(fatal) > 0 {
			c.OK = false
			c.Detail = strings.Join(fatal, "; ")
		}
		if len(damage) > 0 {
			// The conversion neither read nor wrote there: the blocks were
			// copied as they are, so the damage is the source's.
			c.Warning = fmt.Sprintf("the source filesystem %s is damaged where the conversion does not read or write (%s): the copy carries the same damage; run e2fsck -fn on a copy of the source image to see it, and e2fsck -fy on the migrated image to repair it", n, strings.Join(damage, "; "))
		}
		checks = append(checks, c)
	}
	if k.OS == "windows" {
		return checks
	}

	dir, err := os.MkdirTemp(scratch, ".validate-")
	if err != nil {
		return append(checks, report.Check{Name: "default boot entry", Detail: err.Error()})
	}
	defer os.RemoveAll(dir)
	db, err := kvmrun.PyGrub(v.root, dir)
	if err != nil {
		checks = append(checks, report.Check{Name: "default boot entry has its kernel and initrd", Detail: err.Error()})
	} else {
		ok := db.InitrdPath != ""
		detail := fmt.Sprintf("%q: /%s, /%s", db.Title, db.KernelPath, db.InitrdPath)
		if !ok {
			detail = fmt.Sprintf("%q: /%s has no initrd", db.Title, db.KernelPath)
		}
		checks = append(checks, report.Check{Name: "default boot entry has its kernel and initrd", OK: ok, Detail: detail})
		if ok && virtio {
			checks = append(checks, checkInitrd(db.Initrd))
		}
		checks = append(checks, checkRootArg(db.Append, v))
	}
	checks = append(checks, checkFstab(v))
	return checks
}

// Bounds of walkFS: no real guest has paths this deep or this many
// entries in one filesystem; a damaged one must not make the walk run
// (or grow) without end.
const (
	maxWalkDepth    = 512
	maxWalkEntries  = 1 << 26
	maxWalkProblems = 10
)

// errDirCycle is a directory reached twice: a hard link to a directory,
// which only a damaged filesystem has.
var errDirCycle = errors.New("directory cycle (a hard link to a directory)")

// walkProblem is a place a filesystem walk could not read.
type walkProblem struct {
	path string // relative to the filesystem's root
	err  error
}

func (p walkProblem) String() string {
	return "/" + strings.TrimPrefix(p.path, "./") + ": " + p.err.Error()
}

// touched tells whether the problem is on the way to, or at, a path the
// conversion wrote. Paths are compared by their trailing components, as
// a filesystem may be mounted anywhere in the guest (/boot holds
// grub/grub.conf).
func (p walkProblem) touched(edited []string) bool {
	if p.path == "." {
		return true
	}
	dp := "/" + p.path
	for _, e := range edited {
		ep := "/" + strings.TrimPrefix(e, "/")
		if strings.HasSuffix(ep, dp) || strings.Contains(ep, dp+"/") {
			return true
		}
	}
	return false
}

// walkFS reads every directory of fsys and stats every entry. It goes
// on past a damaged place, returning up to maxWalkProblems of them; it
// never enters a directory twice (by inode number, where the filesystem
// tells it) and stops at maxWalkDepth levels and maxWalkEntries entries.
func walkFS(fsys fs.FS) (int, []walkProblem) {
	var problems []walkProblem
	add := func(p string, err error) bool {
		problems = append(problems, walkProblem{p, err})
		return len(problems) < maxWalkProblems
	}
	seen := map[uint64]string{}
	n := 0
	var walk func(dir string, depth int) bool
	walk = func(dir string, depth int) bool {
		if depth > maxWalkDepth {
			return add(dir, fmt.Errorf("more than %d directory levels", maxWalkDepth))
		}
		es, err := fs.ReadDir(fsys, dir)
		if err != nil {
			if !add(dir, err) {
				return false
			}
		}
		for _, e := range es {
			p := path.Join(dir, e.Name())
			if n++; n > maxWalkEntries {
				add(p, fmt.Errorf("more than %d entries", maxWalkEntries))
				return false
			}
			fi, err := e.Info()
			if err != nil {
				if !add(p, err) {
					return false
				}
				continue
			}
			if !fi.IsDir() {
				continue
			}
			if ino, ok := inodeOf(fi); ok {
				if first, dup := seen[ino]; dup {
					if !add(p, fmt.Errorf("%w: the same directory as /%s", errDirCycle, first)) {
						return false
					}
					continue
				}
				seen[ino] = p
			}
			if !walk(p, depth+1) {
				return false
			}
		}
		return true
	}
	if fi, err := fs.Stat(fsys, "."); err == nil {
		if ino, ok := inodeOf(fi); ok {
			seen[ino] = "."
		}
	}
	walk(".", 0)
	return n, problems
}

// inodeOf is fi's inode number, when its filesystem tells it.
func inodeOf(fi fs.FileInfo) (uint64, bool) {
	switch st := fi.Sys().(type) {
	case *guestfs.Stat:
		return st.Ino, st != nil && st.Ino != 0
	case guestfs.Stat:
		return st.Ino, st.Ino != 0
	}
	return 0, false
}

// virtioModules are the initrd files a nash or dracut initrd needs to find
// its root filesystem on virtio-blk.
var virtioModules = []string{"virtio_blk.ko", "virtio_pci.ko"}

// moduleTreeRe finds the kernel releases whose module trees (with a
// modules.dep) an initramfs holds.
var moduleTreeRe = regexp.MustCompile(`^(?:usr/)?lib/modules/([^/]+)/modules\.dep$`)

func checkInitrd(file string) report.Check {
	c := report.Check{Name: "initrd loads the virtio drivers"}
	data, err := os.ReadFile(file)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	files, err := initrdFiles(data)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	var missing []string
	for _, m := range virtioModules {
		found := false
		for name := range files {
			// RHEL's modules are plain .ko; newer kernels compress them.
			if b := path.Base(name); b == m || b == m+".xz" || b == m+".gz" || b == m+".zst" {
				found = true
			}
		}
		if !found {
			missing = append(missing, m)
		}
	}
	// A dracut initramfs loads them with modprobe, which finds only what
	// its module index lists.
	if img, err := initrd.Read(data); err == nil && initrd.Detect(img) == initrd.Dracut {
		rels := map[string]bool{}
		for _, n := range img.Names() {
			if m := moduleTreeRe.FindStringSubmatch(n); m != nil {
				rels[m[1]] = true
			}
		}
		for rel := range rels {
			for _, m := range virtioModules {
				if _, err := initrd.FindModule(img, rel, strings.TrimSuffix(m, ".ko")); err != nil {
					missing = append(missing, err.Error())
				}
			}
		}
	}
	// A nash initrd must also insmod them from its init script.
	if init, ok := files["init"]; ok && bytes.HasPrefix(init, []byte("#!/bin/nash")) {
		for _, m := range virtioModules {
			if !bytes.Contains(init, []byte("insmod /lib/"+m)) && !bytes.Contains(init, []byte("/"+m)) {
				missing = append(missing, "insmod "+m+" in init")
			}
		}
	}
	if len(missing) > 0 {
		c.Detail = "missing " + strings.Join(missing, ", ")
		return c
	}
	c.OK, c.Detail = true, fmt.Sprintf("%d files, %s present", len(files), strings.Join(virtioModules, ", "))
	return c
}

// initrdFiles returns the regular files of a gzip-compressed or plain
// newc cpio archive, with the contents of the small ones (init scripts).
func initrdFiles(data []byte) (map[string][]byte, error) {
	// Any compression and several archives (an early cpio first), as the
	// initrd package reads them.
	if img, err := initrd.Read(data); err == nil {
		files := map[string][]byte{}
		for _, n := range img.Names() {
			if m, err := img.Stat(n); err == nil && m.Mode.IsRegular() {
				b, _ := img.ReadFile(n)
				files[n] = b
			}
		}
		return files, nil
	}
	var r io.Reader = bytes.NewReader(data)
	if bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("initrd: %w", err)
		}
		r = zr
	}
	raw, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil {
		return nil, fmt.Errorf("initrd: %w", err)
	}
	return cpioFiles(raw)
}

// cpioFiles lists a newc ("070701"/"070702") cpio archive.
func cpioFiles(b []byte) (map[string][]byte, error) {
	files := map[string][]byte{}
	off := 0
	for {
		if off+110 > len(b) {
			return nil, fmt.Errorf("initrd: cpio archive truncated at byte %d", off)
		}
		h := b[off : off+110]
		if string(h[:6]) != "070701" && string(h[:6]) != "070702" {
			return nil, fmt.Errorf("initrd: not a newc cpio archive at byte %d", off)
		}
		field := func(i int) (int, error) {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			return int(v), err
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		nameLen, err3 := field(11)
		if err1 != nil || err2 != nil || err3 != nil || nameLen < 1 {
			return nil, fmt.Errorf("initrd: bad cpio header at byte %d", off)
		}
		nameEnd := off + 110 + nameLen
		if nameEnd > len(b) || size > len(b) {
			return nil, fmt.Errorf("initrd: cpio archive truncated at byte %d", off)
		}
		name := strings.TrimPrefix(string(b[off+110:nameEnd-1]), "./")
		data := (nameEnd + 3) &^ 3
		end := data + size
		if end > len(b) {
			return nil, fmt.Errorf("initrd: cpio archive truncated in %s", name)
		}
		if name == "TRAILER!!!" {
			return files, nil
		}
		if mode&0o170000 == 0o100000 {
			if size <= 64<<10 {
				files[name] = b[data:end]
			} else {
				files[name] = nil
			}
		}
		off = (end + 3) &^ 3
	}
}

// resolvable tells whether the KVM guest will find spec, a device as
// fstab or root= name it.
func (v *guestView) resolvable(spec string) bool {
	switch {
	case strings.HasPrefix(spec, "LABEL="):
		return v.labels[strings.TrimPrefix(spec, "LABEL=")]
	case strings.HasPrefix(spec, "UUID="):
		return v.uuids[strings.ToLower(strings.TrimPrefix(spec, "UUID="))]
	case strings.HasPrefix(spec, "/dev/"):
		return v.devices[spec]
	}
	return true // not a device (proc, sysfs, tmpfs, nfs "host:/path")
}

func checkRootArg(cmdline string, v *guestView) report.Check {
	c := report.Check{Name: "root= of the default boot entry resolvable"}
	for _, f := range strings.Fields(cmdline) {
		if r, ok := strings.CutPrefix(f, "root="); ok {
			c.OK = v.resolvable(r)
			c.Detail = r
			if !c.OK {
				c.Detail = r + " does not exist on the KVM guest"
			}
			return c
		}
	}
	// No root=: a nash initrd mounts the device it was built for.
	c.OK, c.Detail = true, "no root= (the initrd names the root device)"
	return c
}

// fsNoDevice are fstab filesystem types whose first field is not a device.
var fsNoDevice = map[string]bool{"proc": true, "sysfs": true, "devpts": true, "tmpfs": true, "nfs": true,
	"nfs4": true, "cifs": true, "usbfs": true, "binfmt_misc": true, "rpc_pipefs": true, "none": true, "bind": true}

func checkFstab(v *guestView) report.Check {
	c := report.Check{Name: "/etc/fstab devices resolvable"}
	data, err := v.root.ReadFile("etc/fstab")
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	var bad, good []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 3 || strings.HasPrefix(f[0], "#") || fsNoDevice[f[2]] || strings.Contains(opts(f), "noauto") {
			continue
		}
		if v.resolvable(f[0]) {
			good = append(good, f[0])
		} else {
			bad = append(bad, f[0]+" ("+f[1]+")")
		}
	}
	if len(bad) > 0 {
		c.Detail = "not on the KVM guest: " + strings.Join(bad, ", ")
		return c
	}
	c.OK, c.Detail = true, strings.Join(good, ", ")
	return c
}

func opts(f []string) string {
	if len(f) > 3 {
		return f[3]
	}
	return ""
}
