package guestgen

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
)

// formatVersion changes when Build's output changes for the same spec
// and the same guestgen source (the key hashes that): a change in a
// package guestgen imports or in how it runs the host's tools.
const formatVersion = "guestgen/9"

// sourceFS is guestgen's own Go source, hashed into the cache key so
// that a change to the generator rebuilds the cached guests.
//
//go:embed *.go
var sourceFS embed.FS

const stampName = ".guestgen-complete.json"

type stamp struct {
	Key   string   `json:"key"`
	Guest *Guest   `json:"guest"`
	Files []string `json:"files"` // size and mtime of the config and each image
}

// fileStates describes files so that a cached guest whose images were
// written to since (a test that broke the read-only rule) is rebuilt.
func fileStates(paths []string) []string {
	var st []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil
		}
		st = append(st, fmt.Sprintf("%s %d %d", filepath.Base(p), fi.Size(), fi.ModTime().UnixNano()))
	}
	return st
}

// Build builds the guest described by spec into outDir/NAME: the disk
// images in outDir/NAME/images and the xm config in
// outDir/NAME/etc/xen/NAME. The config names the images as
// /var/lib/xen/images/FILE, as on the Xen host.
//
// A completed build is recorded last, in a stamp file; calling Build again
// with the same spec returns the existing guest at once. Concurrent
// builds of one guest (tests in parallel) wait for each other.
func Build(ctx context.Context, outDir string, spec Spec) (*Guest, error) {
	return build(ctx, outDir, spec, false)
}

// BuildCached is Build into a cache shared by runs of different code
// (test runs from several checkouts at once): the guest's folder is
// cacheDir/NAME-KEY, KEY standing for the spec and the generator's code,
// so that a build of other code never replaces a guest another run is
// using. Folders of the same guest for other keys that were last built
// more than staleAfter ago are removed.
func BuildCached(ctx context.Context, cacheDir string, spec Spec) (*Guest, error) {
	return build(ctx, cacheDir, spec, true)
}

// staleAfter is how old another key's folder of a guest must be for
// BuildCached to remove it.
const staleAfter = 24 * time.Hour

func build(ctx context.Context, outDir string, spec Spec, perKey bool) (*Guest, error) {
	spec = spec.withDefaults()
	if err := spec.validate(); err != nil {
		return nil, err
	}
	outDir, err := filepath.Abs(outDir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lock(filepath.Join(outDir, "."+spec.Name+".lock"))
	if err != nil {
		return nil, err
	}
	defer unlock()

	in, err := gatherInputs(ctx, spec)
	if err != nil {
		return nil, err
	}
	key := in.key(spec)
	dir := filepath.Join(outDir, spec.Name)
	if perKey {
		dir += "-" + key[:16]
		pruneStale(outDir, spec.Name, dir)
	}
	if g, ok := cached(dir, key); ok {
		return g, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	staging, err := os.MkdirTemp(outDir, "."+spec.Name+"-staging-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(staging)

	b := &builder{spec: spec, in: in, dir: dir, staging: staging}
	g, err := b.build(ctx)
	if err != nil {
		return nil, fmt.Errorf("building guest %s: %w", spec.Name, err)
	}
	files := fileStates(append([]string{g.Config}, g.Images...))
	data, err := json.MarshalIndent(stamp{Key: key, Guest: g, Files: files}, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, stampName), append(data, '\n'), 0o644); err != nil {
		return nil, err
	}
	return g, nil
}

// pruneStale removes the folders of guest name in cacheDir other than
// keep (other keys', and the plain NAME of Build) whose stamp, or the
// folder itself when it has none, is older than staleAfter.
func pruneStale(cacheDir, name, keep string) {
	dirs, _ := filepath.Glob(filepath.Join(cacheDir, name+"-*"))
	for _, d := range append(dirs, filepath.Join(cacheDir, name)) {
		if d == keep || !ownFolder(filepath.Base(d), name) {
			continue
		}
		fi, err := os.Stat(filepath.Join(d, stampName))
		if err != nil {
			if fi, err = os.Stat(d); err != nil || !fi.IsDir() {
				continue
			}
		}
		if time.Since(fi.ModTime()) > staleAfter {
			os.RemoveAll(d)
		}
	}
}

// ownFolder tells whether base is NAME or NAME-KEY (16 hex digits), not
// the folder of another guest whose name starts with NAME-.
func ownFolder(base, name string) bool {
	if base == name {
		return true
	}
	k, ok := strings.CutPrefix(base, name+"-")
	if !ok || len(k) != 16 {
		return false
	}
	_, err := hex.DecodeString(k)
	return err == nil
}

func cached(dir, key string) (*Guest, bool) {
	data, err := os.ReadFile(filepath.Join(dir, stampName))
	if err != nil {
		return nil, false
	}
	var st stamp
	if json.Unmarshal(data, &st) != nil || st.Key != key || st.Guest == nil {
		return nil, false
	}
	now := fileStates(append([]string{st.Guest.Config}, st.Guest.Images...))
	if now == nil || strings.Join(now, "\n") != strings.Join(st.Files, "\n") {
		return nil, false
	}
	return st.Guest, true
}

func lock(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// inputs are the host files a build uses.
type inputs struct {
	kernel  *testkernel.Kernel // nil for HVM
	busybox string
}

// ErrMissingTool is returned (wrapped) when a host program the build needs
// is not installed.
var ErrMissingTool = errors.New("missing host tool")

func gatherInputs(ctx context.Context, s Spec) (*inputs, error) {
	in := &inputs{}
	if s.HVM {
		return in, nil
	}
	if _, err := exec.LookPath("mke2fs"); err != nil {
		return nil, fmt.Errorf("%w: mke2fs (install e2fsprogs)", ErrMissingTool)
	}
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return nil, fmt.Errorf("%w: busybox (install busybox-static)", ErrMissingTool)
	}
	if err := checkStatic(bb); err != nil {
		return nil, err
	}
	in.busybox = bb
	if s.RHEL6 {
		for _, tool := range []string{"dracut", "depmod"} {
			if _, err := exec.LookPath(tool); err != nil {
				return nil, fmt.Errorf("%w: %s (install dracut-core and kmod)", ErrMissingTool, tool)
			}
		}
	}
	k, err := testkernel.Get(ctx)
	if err != nil {
		return nil, fmt.Errorf("getting the test kernel: %w", err)
	}
	in.kernel = k
	return in, nil
}

// checkStatic makes sure busybox runs without shared libraries: the
// initrd has none.
func checkStatic(path string) error {
	f, err := elf.Open(path)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("%w: %s is dynamically linked; the guest needs busybox-static", ErrMissingTool, path)
		}
	}
	return nil
}

// key identifies what a build would produce.
func (in *inputs) key(s Spec) string { return in.keyOf(sourceFS, s) }

// keyOf is key for the generator whose Go source is src: its .go files
// other than tests are hashed in.
func (in *inputs) keyOf(src fs.FS, s Spec) string {
	h := sha256.New()
	fmt.Fprintln(h, formatVersion)
	json.NewEncoder(h).Encode(s)
	names, _ := fs.Glob(src, "*.go")
	for _, p := range names {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		data, _ := fs.ReadFile(src, p)
		fmt.Fprintf(h, "%s %x\n", p, sha256.Sum256(data))
	}
	fs.WalkDir(skelFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := skelFS.ReadFile(p)
			fmt.Fprintf(h, "%s %x\n", p, sha256.Sum256(data))
		}
		return nil
	})
	for _, p := range []string{in.busybox, kernelPath(in.kernel)} {
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(h, "%s %d %d\n", p, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func kernelPath(k *testkernel.Kernel) string {
	if k == nil {
		return ""
	}
	return k.Vmlinuz
}

// ids derives the guest's identifiers from its name, so that a guest is
// the same whenever it is built.
type ids struct{ name string }

func (i ids) sum(purpose string) [32]byte { return sha256.Sum256([]byte(i.name + "\x00" + purpose)) }

func (i ids) uuid(purpose string) string {
	s := i.sum(purpose)
	s[6] = s[6]&0x0f | 0x40
	s[8] = s[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", s[0:4], s[4:6], s[6:8], s[8:10], s[10:16])
}

func (i ids) uuidBytes(purpose string) [16]byte {
	var u [16]byte
	s := i.sum(purpose)
	copy(u[:], s[:16])
	return u
}

func (i ids) lvm(purpose string) string {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	s := i.sum(purpose)
	b := make([]byte, 32)
	for n := range b {
		b[n] = chars[int(s[n])%len(chars)]
	}
	return string(b)
}

func (i ids) mac() string {
	s := i.sum("mac")
	return fmt.Sprintf("00:16:3e:%02x:%02x:%02x", s[0]&0x7f, s[1], s[2])
}

func (i ids) u32(purpose string) uint32 {
	s := i.sum(purpose)
	return binary.LittleEndian.Uint32(s[:])
}

type builder struct {
	spec    Spec
	in      *inputs
	dir     string
	staging string
	id      ids
}

func (b *builder) build(ctx context.Context) (*Guest, error) {
	s := b.spec
	b.id = ids{s.Name}
	g := &Guest{
		Name:        s.Name,
		Dir:         b.dir,
		Config:      filepath.Join(b.dir, "etc", "xen", s.Name),
		XenImageDir: XenImageDir,
		MAC:         b.id.mac(),
		Kernels:     s.Kernels,
	}
	for _, d := range []string{"images", "etc/xen"} {
		if err := os.MkdirAll(filepath.Join(b.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	var disks []xmDisk
	var err error
	if s.HVM {
		disks, err = b.buildHVM(g)
	} else if s.RHEL6 {
		disks, err = b.buildRHEL6(ctx, g)
	} else {
		disks, err = b.buildPV(ctx, g)
	}
	if err != nil {
		return nil, err
	}
	cfg := xmConfig(s, b.id.uuid("domain"), g.MAC, disks)
	if err := os.WriteFile(g.Config, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	return g, nil
}

func (b *builder) image(g *Guest, file string) string {
	p := filepath.Join(b.dir, "images", file)
	g.Images = append(g.Images, p)
	return p
}

// diskPlan is where a PV guest's filesystems sit on its system disk.
type diskPlan struct {
	Size   int64
	Parts  []partition
	Boot   partition
	Root   struct{ Offset, Size int64 } // the root filesystem (a partition or LogVol00)
	Swap   struct{ Offset, Size int64 }
	VG     *volumeGroup // with LVM
	Layout guestLayout
}

// plan lays out a PV guest's system disk: /boot on 13 cylinders (about
// 100 MiB, as anaconda made it), then either root and a 4-cylinder swap
// partition, or one LVM partition with VolGroup00.
func plan(s Spec, id ids) (*diskPlan, error) {
	p := &diskPlan{Size: int64(s.DiskMiB) << 20}
	total := int(p.Size / sectorSize / cylinder)
	const bootCyl, swapCyl = 13, 4
	l := guestLayout{spec: s, mac: id.mac(), bootDev: "/dev/xvda1", bootUUID: id.uuid("boot"), rootUUID: id.uuid("root")}
	var err error
	if s.LVM {
		p.Parts, err = cylinderPartitions(p.Size, []int{bootCyl, total - bootCyl}, []byte{0x83, 0x8e})
		if err != nil {
			return nil, err
		}
		pv := p.Parts[1]
		vg := &volumeGroup{Name: "VolGroup00", UUID: id.lvm("vg"), PVUUID: id.lvm("pv"), PVDevice: "/dev/xvda2",
			PVSectors: pv.Size, CreateHost: s.Name + ".localdomain", CreateTime: 1257000000}
		n := vg.peCount()
		if n < 3 {
			return nil, fmt.Errorf("a %d MiB disk leaves %d LVM extents; 3 are needed", s.DiskMiB, n)
		}
		vg.LVs = []logicalVolume{{"LogVol00", n - 1, id.lvm("lv0")}, {"LogVol01", 1, id.lvm("lv1")}}
		for i, name := range []string{"LogVol00", "LogVol01"} {
			off, size, err := vg.lvOffset(name)
			if err != nil {
				return nil, err
			}
			dst := &p.Root
			if i == 1 {
				dst = &p.Swap
			}
			dst.Offset, dst.Size = pv.Offset()+off, size
		}
		p.VG = vg
		l.rootDev, l.swapDev = "/dev/VolGroup00/LogVol00", "/dev/VolGroup00/LogVol01"
	} else {
		if total < bootCyl+swapCyl+4 {
			return nil, fmt.Errorf("a %d MiB disk is too small", s.DiskMiB)
		}
		p.Parts, err = cylinderPartitions(p.Size, []int{bootCyl, total - bootCyl - swapCyl, swapCyl}, []byte{0x83, 0x83, 0x82})
		if err != nil {
			return nil, err
		}
		p.Root.Offset, p.Root.Size = p.Parts[1].Offset(), p.Parts[1].Bytes()
		p.Swap.Offset, p.Swap.Size = p.Parts[2].Offset(), p.Parts[2].Bytes()
		l.rootDev, l.swapDev = "/dev/xvda2", "/dev/xvda3"
	}
	p.Boot = p.Parts[0]
	if s.DataDisk {
		l.dataDev = "/dev/xvdb1"
		if s.DataVG {
			l.dataDev = "/dev/DataVG/data"
		}
	}
	p.Layout = l
	return p, nil
}

// Module sets per kernel: a Xen kernel's tree has the Xen front ends, a
// non-Xen kernel's the virtio drivers; both the ext3 (ext4.ko) stack.
func kernelModules(modDir, rel string) (map[string]*module, error) {
	if IsXen(rel) {
		return loadModules(modDir, fsModules, acpiModules, xenModules)
	}
	return loadModules(modDir, fsModules, acpiModules, virtioModules)
}

// initrdModules are what mkinitrd put in a kernel's initrd on the Xen
// host: the filesystem, the Xen block driver for a Xen kernel (none for
// the other: its xenblk alias names no module it has), dm-mod with LVM.
func initrdModules(mods map[string]*module, rel string, lvm bool) ([]*module, error) {
	names := []string{"crc32c_generic", "ext4"}
	if IsXen(rel) {
		names = append(names, "xen_blkfront")
	}
	if lvm {
		names = append(names, "dm_mod")
	}
	return loadOrder(mods, names...)
}

func (b *builder) buildPV(ctx context.Context, g *Guest) ([]xmDisk, error) {
	s := b.spec
	p, err := plan(s, b.id)
	if err != nil {
		return nil, err
	}
	k := b.in.kernel
	rootDir := filepath.Join(b.staging, "root")
	bootDir := filepath.Join(b.staging, "boot")
	rt := &tree{root: rootDir}
	rootTree(rt, &p.Layout, b.in.busybox)
	rhel5Pieces(rt, s, k.ModulesDir)
	bt := &tree{root: bootDir}
	bt.file("grub/grub.conf", 0o600, grubConf(&p.Layout))
	bt.link("grub/menu.lst", "./grub.conf")
	bt.file("grub/device.map", 0o644, "# this device map was written by the installer\n(hd0)     /dev/xvda\n")
	debConfig, err := os.ReadFile(k.Config)
	if err != nil {
		return nil, err
	}
	for _, rel := range s.Kernels {
		bt.copy("vmlinuz-"+rel, k.Vmlinuz, 0o644)
		bt.file("config-"+rel, 0o644, kernelConfig(string(debConfig), rel))
		if rt.err != nil || bt.err != nil {
			break
		}
		mods, err := kernelModules(k.ModulesDir, rel)
		if err != nil {
			return nil, err
		}
		if err := installModules(rootDir, rel, mods); err != nil {
			return nil, err
		}
		order, err := initrdModules(mods, rel, s.LVM || s.DataVG)
		if err != nil {
			return nil, err
		}
		var initrd bytes.Buffer
		is := initrdSpec{Release: rel, Modules: order, LVM: s.LVM || s.DataVG, LVMFilter: s.LVMFilter, RootDev: p.Layout.rootDev, SwapDev: p.Layout.swapDev}
		if s.DataVG {
			is.ExtraVGs = []string{"DataVG"}
		}
		if err := buildInitrd(ctx, &initrd, is, b.in.busybox); err != nil {
			return nil, err
		}
		bt.file("initrd-"+rel+".img", 0o600, initrd.String())
	}
	if err := errors.Join(rt.err, bt.err); err != nil {
		return nil, err
	}

	img := b.image(g, s.Name+".img")
	if err := createImage(img, p.Size, b.id.u32("mbr"), p.Parts); err != nil {
		return nil, err
	}
	if err := mkext3(ctx, img, ext3{Offset: p.Boot.Offset(), Size: p.Boot.Bytes(), Label: "/boot",
		UUID: p.Layout.bootUUID, Tree: bootDir}); err != nil {
		return nil, err
	}
	if s.SELinuxLabels {
		if err := labelFS(img, p.Boot.Offset(), p.Boot.Bytes(), "/boot", filepath.Join(rootDir, fileContexts)); err != nil {
			return nil, err
		}
	}
	if p.VG != nil {
		area, err := p.VG.pvArea()
		if err != nil {
			return nil, err
		}
		if err := writeAt(img, p.Parts[1].Offset(), area); err != nil {
			return nil, err
		}
	}
	rootFS := ext3{Offset: p.Root.Offset, Size: p.Root.Size, Label: "/",
		UUID: p.Layout.rootUUID, BlockSize: 4096, Tree: rootDir}
	if s.RelabelLoop {
		rootFS.Immutable = []string{".autorelabel"}
	}
	if err := mkext3(ctx, img, rootFS); err != nil {
		return nil, err
	}
	if s.SELinuxLabels {
		if err := labelFS(img, p.Root.Offset, p.Root.Size, "/", filepath.Join(rootDir, fileContexts)); err != nil {
			return nil, err
		}
	}
	if err := writeAt(img, p.Swap.Offset, swapHeader(p.Swap.Size, b.id.uuidBytes("swap"))); err != nil {
		return nil, err
	}
	disks := []xmDisk{{"tap:aio", XenImageDir + "/" + s.Name + ".img", "xvda", "w"}}

	if s.DataDisk {
		data := b.image(g, s.Name+"-data.img")
		size := int64(64 << 20)
		typ := byte(0x83)
		if s.DataVG {
			size, typ = 100<<20, 0x8e // two 32 MiB extents
		}
		parts, err := cylinderPartitions(size, []int{0}, []byte{typ})
		if err != nil {
			return nil, err
		}
		parts[0].Boot = false
		if err := createImage(data, size, b.id.u32("data-mbr"), parts); err != nil {
			return nil, err
		}
		dt := &tree{root: filepath.Join(b.staging, "data")}
		dt.file("README", 0o644, "Application data of "+s.Name+", on its second disk (xvdb1).\n")
		if dt.err != nil {
			return nil, dt.err
		}
		fsOff, fsSize := parts[0].Offset(), parts[0].Bytes()
		if s.DataVG {
			vg := dataVG(s, b.id, parts[0].Size)
			area, err := vg.pvArea()
			if err != nil {
				return nil, err
			}
			if err := writeAt(data, parts[0].Offset(), area); err != nil {
				return nil, err
			}
			off, sz, err := vg.lvOffset("data")
			if err != nil {
				return nil, err
			}
			fsOff, fsSize = parts[0].Offset()+off, sz
		}
		if err := mkext3(ctx, data, ext3{Offset: fsOff, Size: fsSize, Label: "/data",
			UUID: b.id.uuid("data"), BlockSize: 4096, Tree: dt.root}); err != nil {
			return nil, err
		}
		disks = append(disks, xmDisk{"tap:aio", XenImageDir + "/" + s.Name + "-data.img", "xvdb", "w"})
	}
	return disks, nil
}

// buildHVM makes a Windows-style disk: one bootable NTFS partition.
// dataVG is the data disk's volume group: one PV (xvdb1) of pvSectors,
// one LV "data" over all its extents.
func dataVG(s Spec, id ids, pvSectors uint64) *volumeGroup {
	vg := &volumeGroup{Name: "DataVG", UUID: id.lvm("datavg"), PVUUID: id.lvm("datapv"), PVDevice: "/dev/xvdb1",
		PVSectors: pvSectors, CreateHost: s.Name + ".localdomain", CreateTime: 1257000000}
	vg.LVs = []logicalVolume{{"data", vg.peCount(), id.lvm("datalv")}}
	return vg
}

func (b *builder) buildHVM(g *Guest) ([]xmDisk, error) {
	s := b.spec
	size := int64(s.DiskMiB) << 20
	parts, err := cylinderPartitions(size, []int{0}, []byte{0x07})
	if err != nil {
		return nil, err
	}
	img := b.image(g, s.Name+".img")
	if err := createImage(img, size, b.id.u32("mbr"), parts); err != nil {
		return nil, err
	}
	p := parts[0]
	serial := uint64(b.id.u32("serial"))<<32 | uint64(b.id.u32("serial2"))
	boot := ntfsBootSector(p.Size, p.Start, serial)
	if err := writeAt(img, p.Offset(), boot); err != nil {
		return nil, err
	}
	// NTFS keeps a copy of the boot sector in the partition's last sector.
	if err := writeAt(img, p.Offset()+p.Bytes()-sectorSize, boot); err != nil {
		return nil, err
	}
	const cluster = 8 * sectorSize
	var mft []byte
	for i := uint32(0); i < 4; i++ {
		mft = append(mft, mftRecord(i)...)
	}
	if err := writeAt(img, p.Offset()+4*cluster, mft); err != nil {
		return nil, err
	}
	mirr := int64(binary.LittleEndian.Uint64(boot[0x38:]))
	if err := writeAt(img, p.Offset()+mirr*cluster, mft); err != nil {
		return nil, err
	}
	return []xmDisk{
		{"file", XenImageDir + "/" + s.Name + ".img", "hda", "w"},
		{"", "", "hdc:cdrom", "r"},
	}, nil
}
