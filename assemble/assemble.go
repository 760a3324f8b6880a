// Package assemble puts a guest's disks back together the way the guest
// sees them: it finds the partitions, LVM volumes and filesystems on the
// disks, names each device as the guest names it (/dev/xvda1,
// /dev/VolGroup00/LogVol00, /dev/mapper/VolGroup00-LogVol00), finds the
// root filesystem and mounts the others where its /etc/fstab says, into
// one guestfs.FS.
//
//	g, err := assemble.Open(ctx, []assemble.Disk{
//		{Target: "xvda", Dev: overlayA},
//		{Target: "xvdb", Dev: overlayB},
//	})
//	if err != nil {
//		return err
//	}
//	defer g.Close()
//	grub, err := g.Root.ReadFile("boot/grub/grub.conf") // /boot is mounted
//	for _, f := range g.Filesystems {
//		fmt.Println(f.Devices[0], f.Type, f.Label, f.UUID, f.MountPoint)
//	}
//
// Writes through Root go to the disks' devices, so pass overlays unless
// the disks are meant to change; ReadOnly opens every filesystem
// read-only.
package assemble

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xen2kvm/xen2kvm/diskimg"
	"github.com/xen2kvm/xen2kvm/diskimg/lvm"
	"github.com/xen2kvm/xen2kvm/diskimg/part"
	"github.com/xen2kvm/xen2kvm/diskimg/probe"
	"github.com/xen2kvm/xen2kvm/extfs"
	"github.com/xen2kvm/xen2kvm/guestfs"
)

// Disk is one of the guest's disks under the name the guest gives it.
type Disk struct {
	// Target is the guest's device name, "xvda" or "/dev/xvda". A
	// partition name ("xvda1", as Xen configs may attach a volume
	// directly as a partition) is taken as that partition, without a
	// partition table.
	Target string
	Dev    diskimg.Device
}

// Filesystem is a filesystem (or swap area) found on the guest's disks.
type Filesystem struct {
	// Type is "ext2", "ext3", "ext4", "swap", "xfs", "ntfs" or "vfat", as
	// blkid names them (from diskimg/probe).
	Type  string
	Label string
	UUID  string
	// Devices are the names the guest knows the device by, the canonical
	// one first: /dev/xvda1, or /dev/VolGroup00/LogVol00 followed by
	// /dev/mapper/VolGroup00-LogVol00.
	Devices []string
	// Dev is the block device that holds it.
	Dev diskimg.Device
	// FS is the opened ext2/3/4 filesystem; nil for other types and when
	// Err is set.
	FS *extfs.FS
	// Err tells why an ext2/3/4 filesystem could not be opened.
	Err error
	// MountPoint is where the guest mounts it ("/", "/boot"), or "".
	MountPoint string
}

// Mount is an fstab entry that was mounted into Guest.Root.
type Mount struct {
	Dir  string // "/boot"
	Spec string // the fstab device field: "LABEL=/boot", "/dev/xvda1"
	FS   *Filesystem
}

// Guest is the assembled view of a guest's disks.
type Guest struct {
	// Filesystems in disk order, partitions before LVM volumes.
	Filesystems []*Filesystem
	// Root is the root filesystem with the others mounted where fstab
	// says. It is nil when no filesystem holds etc/fstab (a Windows
	// guest, or a data disk alone).
	Root guestfs.FS
	// RootFS is the root filesystem itself.
	RootFS *Filesystem
	// Mounts lists the mounted filesystems, "/" first, sorted by Dir.
	Mounts []Mount
	// VGs are the LVM volume groups found.
	VGs []*lvm.VG
	// Devices lists every block device the guest has (disks,
	// partitions, PVs, LVs under both names), sorted.
	Devices []string
	// Warnings are problems that did not stop the assembly: an fstab
	// entry naming no device found, a filesystem that could not be
	// opened, an LVM volume group with a missing PV.
	Warnings []string
}

// Option configures Open.
type Option func(*options)

type options struct {
	readOnly bool
	now      func() time.Time
}

// ReadOnly opens every filesystem read-only; writes through Root fail.
func ReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithClock sets the clock for the timestamps written into the guest's
// filesystems (default time.Now), for output that is the same on every run.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// Open assembles the guest from its disks, given in the guest's order.
// Partition tables and LVM metadata that are corrupt are errors; a disk
// with nothing recognisable on it is not.
func Open(ctx context.Context, disks []Disk, opts ...Option) (*Guest, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	a := &assembler{o: o, g: &Guest{}, devices: map[string]bool{}}
	g, err := a.run(ctx, disks)
	if err != nil {
		a.g.Close()
		return nil, err
	}
	return g, nil
}

type assembler struct {
	o       options
	g       *Guest
	devices map[string]bool
	pvs     []diskimg.Device
}

// partitionName is a Linux partition device name: xvda1, but nvme0n1p1.
func partitionName(disk string, n int) string {
	if c := disk[len(disk)-1]; c >= '0' && c <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}

// partitionTarget matches Xen targets that name a partition.
var partitionTarget = regexp.MustCompile(`^(xvd|sd|hd|vd)[a-z]+[0-9]+$`)

func (a *assembler) run(ctx context.Context, disks []Disk) (*Guest, error) {
	for _, d := range disks {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name := strings.TrimPrefix(d.Target, "/dev/")
		if name == "" || d.Dev == nil {
			return nil, fmt.Errorf("disk %q: no target name or device", d.Target)
		}
		a.devices["/dev/"+name] = true
		if partitionTarget.MatchString(name) {
			a.probe(d.Dev, []string{"/dev/" + name})
			continue
		}
		tab, err := part.Read(d.Dev)
		if errors.Is(err, part.ErrNoTable) {
			// A whole-disk filesystem or PV.
			a.probe(d.Dev, []string{"/dev/" + name})
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("disk %s: %w", name, err)
		}
		for _, p := range tab.Partitions {
			pname := "/dev/" + partitionName(name, p.Number)
			a.devices[pname] = true
			if p.Cut > 0 && !p.Extended {
				a.warnf("%s: the image is %d bytes shorter than its partition table says (was it copied completely?): the missing end of the partition reads as zeros", pname, p.Cut)
			}
			if p.Extended {
				continue
			}
			a.probe(p.Device(), []string{pname})
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(a.pvs) > 0 {
		vgs, err := lvm.Scan(a.pvs...)
		if err != nil {
			return nil, fmt.Errorf("reading LVM volumes: %w", err)
		}
		a.g.VGs = vgs
		for _, vg := range vgs {
			for _, pv := range vg.Missing() {
				a.warnf("volume group %s: physical volume %s (%s) is not on the given disks", vg.Name, pv.Name, pv.UUID)
			}
			for _, lv := range vg.LVs {
				if !lv.Visible {
					continue
				}
				names := []string{"/dev/" + vg.Name + "/" + lv.Name, "/dev/mapper/" + mapperName(vg.Name, lv.Name)}
				for _, n := range names {
					a.devices[n] = true
				}
				if lv.Type == "snapshot" {
					continue
				}
				a.probe(lv.Device(), names)
			}
		}
	}
	for d := range a.devices {
		a.g.Devices = append(a.g.Devices, d)
	}
	slices.Sort(a.g.Devices)
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a.mount()
	return a.g, nil
}

// mapperName is the device-mapper name of an LV: dashes in either name
// are doubled.
func mapperName(vg, lv string) string {
	return strings.ReplaceAll(vg, "-", "--") + "-" + strings.ReplaceAll(lv, "-", "--")
}

func (a *assembler) warnf(format string, args ...any) {
	a.g.Warnings = append(a.g.Warnings, fmt.Sprintf(format, args...))
}

// probe identifies what dev holds and records it.
func (a *assembler) probe(dev diskimg.Device, names []string) {
	if lvm.HasLabel(dev) {
		a.pvs = append(a.pvs, dev)
		return
	}
	c := probe.Probe(dev)
	if c.Type == "" {
		return
	}
	f := &Filesystem{Type: c.Type, Label: c.Label, UUID: c.UUID, Devices: names, Dev: dev}
	if strings.HasPrefix(c.Type, "ext") {
		var opts []extfs.Option
		if a.o.readOnly {
			opts = append(opts, extfs.ReadOnly())
		}
		if a.o.now != nil {
			opts = append(opts, extfs.WithClock(a.o.now))
		}
		fsys, err := extfs.Open(dev, opts...)
		var fe *extfs.FeatureError
		if errors.As(err, &fe) && fe.Write {
			// Features extfs reads but cannot write: the guest can still
			// be inspected.
			a.warnf("%s: %v; opened read-only", names[0], err)
			fsys, err = extfs.Open(dev, append(opts, extfs.ReadOnly())...)
		}
		if err != nil {
			f.Err = err
			a.warnf("%s: %v", names[0], err)
		} else {
			f.FS = fsys
			if fsys.HasErrors() {
				a.warnf("%s: the filesystem's superblock records errors the kernel found that e2fsck has not repaired: run e2fsck -fn on a copy of the source image to see them", names[0])
			}
		}
	}
	a.g.Filesystems = append(a.g.Filesystems, f)
}

// Lookup finds the filesystem an fstab device field names: a device path
// under any of its names, LABEL=, or UUID= (case-insensitive). It returns
// nil when none matches.
func (g *Guest) Lookup(spec string) *Filesystem {
	switch {
	case strings.HasPrefix(spec, "LABEL="):
		l := strings.TrimPrefix(spec, "LABEL=")
		for _, f := range g.Filesystems {
			if f.Label == l && l != "" {
				return f
			}
		}
	case strings.HasPrefix(spec, "UUID="):
		u := strings.TrimPrefix(spec, "UUID=")
		for _, f := range g.Filesystems {
			if strings.EqualFold(f.UUID, u) && u != "" {
				return f
			}
		}
	default:
		spec = path.Clean(spec)
		for _, f := range g.Filesystems {
			if slices.Contains(f.Devices, spec) {
				return f
			}
		}
	}
	return nil
}

// Close closes the opened filesystems. The disks are not closed.
func (g *Guest) Close() error {
	var errs []error
	for _, f := range g.Filesystems {
		if f.FS != nil {
			if err := f.FS.Close(); err != nil {
				errs = append(errs, fmt.Errorf("closing %s: %w", f.Devices[0], err))
			}
		}
	}
	return errors.Join(errs...)
}

// fstabEntry is one line of /etc/fstab.
type fstabEntry struct {
	spec, dir, typ string
}

// parseFstab reads the device, mount point and type fields of each entry.
func parseFstab(text string) []fstabEntry {
	var out []fstabEntry
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		out = append(out, fstabEntry{spec: unescapeFstab(f[0]), dir: unescapeFstab(f[1]), typ: f[2]})
	}
	return out
}

// unescapeFstab decodes the octal escapes (\040 for a space) fstab uses.
func unescapeFstab(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// isExt tells whether an fstab type may be an ext filesystem.
func isExt(typ string) bool {
	return typ == "ext2" || typ == "ext3" || typ == "ext4" || typ == "auto" || typ == "defaults"
}

// mount finds the root filesystem and mounts the others at their fstab
// mount points.
func (a *assembler) mount() {
	g := a.g
	type candidate struct {
		f     *Filesystem
		fstab []fstabEntry
		score int
	}
	var best *candidate
	for _, f := range g.Filesystems {
		if f.FS == nil {
			continue
		}
		st, err := f.FS.Stat("etc/fstab")
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			// A damaged etc or root directory: say so, it is likely why
			// no root is found.
			a.warnf("%s: looking for etc/fstab: %v", f.Devices[0], err)
		}
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		text, err := f.FS.ReadFile("etc/fstab")
		if err != nil {
			a.warnf("%s: reading etc/fstab: %v", f.Devices[0], err)
			continue
		}
		c := &candidate{f: f, fstab: parseFstab(string(text)), score: 1}
		if st, err := f.FS.Stat("sbin"); err == nil && st.IsDir() {
			c.score = 2
		}
		for _, e := range c.fstab {
			if e.dir == "/" && g.Lookup(e.spec) == f {
				c.score = 3 // its own fstab mounts it as /
			}
		}
		if best == nil || c.score > best.score {
			best = c
		}
	}
	if best == nil {
		return
	}
	root := best.f
	root.MountPoint = "/"
	g.RootFS = root
	m := guestfs.NewMounts(root.FS)
	g.Root = m
	g.Mounts = append(g.Mounts, Mount{Dir: "/", Spec: root.Devices[0], FS: root})
	for _, e := range best.fstab {
		if e.dir == "/" {
			if f := g.Lookup(e.spec); f != nil && f != root {
				a.warnf("fstab mounts %s as /, but %s holds the root tree", e.spec, root.Devices[0])
			}
			continue
		}
		if !strings.HasPrefix(e.dir, "/") || !isExt(e.typ) {
			continue
		}
		f := g.Lookup(e.spec)
		switch {
		case f == nil:
			if e.typ != "auto" && e.typ != "defaults" {
				a.warnf("fstab: %s for %s is not on the given disks", e.spec, e.dir)
			}
			continue
		case f.FS == nil:
			if f.Err != nil {
				a.warnf("fstab: %s for %s cannot be opened: %v", e.spec, e.dir, f.Err)
			}
			continue
		case f.MountPoint != "":
			a.warnf("fstab: %s for %s is already mounted at %s", e.spec, e.dir, f.MountPoint)
			continue
		}
		dir := strings.TrimPrefix(path.Clean(e.dir), "/")
		if err := m.Mount(dir, f.FS); err != nil {
			a.warnf("fstab: mounting %s at %s: %v", e.spec, e.dir, err)
			continue
		}
		f.MountPoint = path.Clean(e.dir)
		g.Mounts = append(g.Mounts, Mount{Dir: f.MountPoint, Spec: e.spec, FS: f})
	}
	slices.SortFunc(g.Mounts, func(x, y Mount) int { return strings.Compare(x.Dir, y.Dir) })
}
