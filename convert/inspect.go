package convert

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/grub"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/initrd"
	"github.com/xen2kvm/xen2kvm/selinux"
)

// ErrNoOS is returned by Inspect when the filesystem holds no operating
// system it recognises.
var ErrNoOS = errors.New("no operating system found")

// Guest is what inspection found in a guest.
type Guest struct {
	OS      string `json:"os"`      // "linux" or "windows"
	Distro  string `json:"distro"`  // "rhel", "centos", "scientific", "oracle", "fedora", "suse", "debian", ...
	Product string `json:"product"` // the release file's line, "CentOS release 5.4 (Final)"
	Major   int    `json:"major"`
	Minor   int    `json:"minor"`
	Arch    string `json:"arch"` // x86_64, i686

	Kernels []Kernel `json:"kernels"`
	// Grub is the boot loader configuration; nil when none was found.
	Grub  *Bootloader  `json:"grub,omitempty"`
	Fstab []FstabEntry `json:"fstab,omitempty"`
	// SELinux is the mode /etc/selinux/config sets: enforcing,
	// permissive, disabled, or "" without the file.
	SELinux string `json:"selinux,omitempty"`
	// SELinuxType is SELINUXTYPE (targeted, mls, strict).
	SELinuxType string `json:"selinux_type,omitempty"`
	// XenPVHVM tells whether Xen PV-on-HVM drivers (kmod-xenpv) are
	// installed.
	XenPVHVM bool `json:"xen_pv_on_hvm,omitempty"`
	// Warnings are findings that did not stop inspection.
	Warnings []string `json:"warnings,omitempty"`
}

// Kernel is one installed kernel.
type Kernel struct {
	Release string `json:"release"` // 2.6.18-164.el5
	Package string `json:"package"` // kernel, kernel-PAE, kernel-xen, kernel-smp, ...
	Vmlinuz string `json:"vmlinuz"` // guest path, "boot/vmlinuz-2.6.18-164.el5"
	Initrd  string `json:"initrd,omitempty"`
	// InitrdFlavour is nash (RHEL 4/5) or dracut (RHEL 6).
	InitrdFlavour initrd.Flavour `json:"initrd_flavour,omitempty"`
	Config        string         `json:"config,omitempty"`  // boot/config-RELEASE
	Modules       string         `json:"modules,omitempty"` // lib/modules/RELEASE
	// Xen tells a Xen-only kernel: CONFIG_X86_XEN or CONFIG_X86_64_XEN in
	// its config, or a xen/xenU/xen0 release suffix.
	Xen       bool `json:"xen"`
	VirtioBlk bool `json:"virtio_blk"`
	VirtioNet bool `json:"virtio_net"`
	// Debug tells a debug or kdump flavour (kernel-debug,
	// kernel-kdump), never chosen to boot.
	Debug bool `json:"debug,omitempty"`
	// Entry is the index of the grub entry that boots this kernel, -1
	// for none.
	Entry int `json:"grub_entry"`

	config []byte
}

// Virtio tells whether the kernel can run on virtio disks and network.
func (k *Kernel) Virtio() bool { return k.VirtioBlk && k.VirtioNet }

// Bootloader is a GRUB legacy installation.
type Bootloader struct {
	Path   string       `json:"path"` // boot/grub/grub.conf
	Config *grub.Config `json:"-"`
	// DeviceMap is the guest path of device.map, "" when absent.
	DeviceMap string `json:"device_map,omitempty"`
	// BootPrefix is "boot" when grub's paths are relative to a separate
	// /boot filesystem, "" when they are relative to the root.
	BootPrefix string `json:"boot_prefix,omitempty"`
}

// GuestPath turns a path from grub.conf ("/vmlinuz-X", "(hd0,0)/boot/x")
// into a guest path.
func (b *Bootloader) GuestPath(p string) string {
	_, p = grub.SplitDevice(p)
	return path.Join(b.BootPrefix, strings.TrimPrefix(path.Clean("/"+p), "/"))
}

var releaseRe = regexp.MustCompile(`release\s+(\d+)(?:\.(\d+))?(?:.*Update\s+(\d+))?`)

// releaseFiles are the files that name a distribution, in the order
// checked.
var releaseFiles = []struct{ file, distro string }{
	{"etc/centos-release", ""},
	{"etc/redhat-release", ""},
	{"etc/fedora-release", "fedora"},
	{"etc/SuSE-release", "suse"},
	{"etc/debian_version", "debian"},
	{"etc/lsb-release", "lsb"},
}

// Inspect examines a guest's root filesystem (with its other filesystems
// mounted, /boot in particular) without changing it.
func Inspect(root guestfs.FS) (*Guest, error) {
	g := &Guest{}
	if err := g.inspectRelease(root); err != nil {
		return nil, err
	}
	if g.OS != "linux" {
		return g, nil
	}
	if b, err := root.ReadFile("etc/fstab"); err == nil {
		if g.Fstab, err = ParseFstab(b); err != nil {
			return nil, fmt.Errorf("reading /etc/fstab: %w", err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("reading /etc/fstab: %w", err)
	}
	if err := g.inspectGrub(root); err != nil {
		return nil, err
	}
	if err := g.inspectKernels(root); err != nil {
		return nil, err
	}
	g.Arch = inspectArch(root, g.Kernels)
	if b, err := root.ReadFile("etc/selinux/config"); err == nil {
		g.SELinux, g.SELinuxType = selinux.Policy(b)
	}
	return g, nil
}

func (g *Guest) inspectRelease(root guestfs.FS) error {
	if isWindows(root) {
		g.OS, g.Distro = "windows", "windows"
		return nil
	}
	for _, rf := range releaseFiles {
		b, err := root.ReadFile(rf.file)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading /%s: %w", rf.file, err)
		}
		g.OS = "linux"
		line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
		g.Product = strings.TrimSpace(line)
		g.Distro = rf.distro
		if g.Distro == "" {
			g.Distro = redhatDistro(g.Product)
		}
		if m := releaseRe.FindStringSubmatch(g.Product); m != nil {
			g.Major, _ = strconv.Atoi(m[1])
			if m[2] != "" {
				g.Minor, _ = strconv.Atoi(m[2])
			} else if m[3] != "" {
				g.Minor, _ = strconv.Atoi(m[3])
			}
		}
		return nil
	}
	return ErrNoOS
}

func isWindows(root guestfs.FS) bool {
	for _, d := range []string{"Windows/System32", "WINDOWS/system32", "WINNT/system32", "Windows/system32"} {
		if fi, err := root.Stat(d); err == nil && fi.IsDir() {
			return true
		}
	}
	return false
}

func redhatDistro(product string) string {
	p := strings.ToLower(product)
	switch {
	case strings.HasPrefix(p, "red hat enterprise linux"):
		return "rhel"
	case strings.HasPrefix(p, "centos"):
		return "centos"
	case strings.HasPrefix(p, "scientific linux"):
		return "scientific"
	case strings.HasPrefix(p, "enterprise linux"), strings.HasPrefix(p, "oracle linux"):
		return "oracle"
	case strings.HasPrefix(p, "fedora"):
		return "fedora"
	}
	return "redhat-based"
}

func (g *Guest) separateBoot() bool {
	for _, e := range g.Fstab {
		if path.Clean(e.File) == "/boot" {
			return true
		}
	}
	return false
}

var grubFiles = []string{"boot/grub/grub.conf", "boot/grub/menu.lst", "etc/grub.conf"}

func (g *Guest) inspectGrub(root guestfs.FS) error {
	// The file itself, not a symlink to it, so that edits name one path.
	var file string
	for _, f := range grubFiles {
		if fi, err := root.Lstat(f); err == nil && fi.Mode().IsRegular() {
			file = f
			break
		}
	}
	if file == "" {
		for _, f := range grubFiles {
			if _, err := root.Stat(f); err == nil {
				file = f
				break
			}
		}
	}
	if file == "" {
		return nil
	}
	b, err := root.ReadFile(file)
	if err != nil {
		return fmt.Errorf("reading /%s: %w", file, err)
	}
	c, err := grub.Parse(b)
	if err != nil {
		return fmt.Errorf("reading /%s: %w", file, err)
	}
	bl := &Bootloader{Path: file, Config: c}
	if g.separateBoot() {
		bl.BootPrefix = "boot"
	}
	if _, err := root.Stat(path.Join(path.Dir(file), "device.map")); err == nil && strings.HasPrefix(file, "boot/") {
		bl.DeviceMap = path.Join(path.Dir(file), "device.map")
	} else if _, err := root.Stat("boot/grub/device.map"); err == nil {
		bl.DeviceMap = "boot/grub/device.map"
	}
	g.Grub = bl
	return nil
}

var packageRe = regexp.MustCompile(`(?:\.el\d+|EL|\.fc\d+)([A-Za-z0-9-]*)$`)

// kernelFlavour splits a kernel release into its version without the
// flavour ("2.6.18-164.el5") and the flavour ("debug", "xen", "PAE", "").
func kernelFlavour(rel string) (base, flavour string) {
	for _, arch := range []string{".x86_64", ".i686", ".i586", ".i386", ".ia64", ".ppc64"} {
		if i := strings.Index(rel, arch); i >= 0 {
			return rel[:i+len(arch)], strings.TrimPrefix(rel[i+len(arch):], ".")
		}
	}
	if m := packageRe.FindStringSubmatchIndex(rel); m != nil && m[3] > m[2] {
		return rel[:m[2]], rel[m[2]:m[3]]
	}
	return rel, ""
}

// KernelPackage names the package a kernel release belongs to
// ("kernel-debug" for 2.6.18-164.el5debug); debug tells a debug or kdump
// flavour.
func KernelPackage(release string) (pkg string, debug bool) { return kernelPackage(release) }

// XenRelease tells whether a kernel release is a Xen kernel's
// (2.6.18-164.el5xen).
func XenRelease(release string) bool { return xenRelease(release) }

// kernelPackage names the package a kernel release belongs to; debug
// tells a debug or kdump flavour, which is never the kernel to boot.
func kernelPackage(rel string) (pkg string, debug bool) {
	_, flavour := kernelFlavour(rel)
	if flavour == "" {
		return "kernel", false
	}
	f := strings.ToLower(flavour)
	return "kernel-" + flavour, strings.Contains(f, "debug") || strings.Contains(f, "kdump")
}

func xenRelease(rel string) bool {
	return strings.HasSuffix(rel, "xen") || strings.HasSuffix(rel, "xenU") || strings.HasSuffix(rel, "xen0")
}

func (g *Guest) inspectKernels(root guestfs.FS) error {
	es, err := root.ReadDir("boot")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listing /boot: %w", err)
	}
	for _, e := range es {
		rel, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok || rel == "" {
			continue
		}
		k := Kernel{Release: rel, Vmlinuz: "boot/" + e.Name(), Entry: -1}
		k.Package, k.Debug = kernelPackage(rel)
		var config []byte
		if b, err := root.ReadFile("boot/config-" + rel); err == nil {
			k.Config, config, k.config = "boot/config-"+rel, b, b
		}
		k.Xen = xenRelease(rel) || configSet(config, "CONFIG_X86_XEN") || configSet(config, "CONFIG_X86_64_XEN")
		k.VirtioBlk = configBuiltin(config, "CONFIG_VIRTIO_BLK")
		k.VirtioNet = configBuiltin(config, "CONFIG_VIRTIO_NET")
		mods := "lib/modules/" + rel
		if fi, err := root.Stat(mods); err == nil && fi.IsDir() {
			k.Modules = mods
			dep, err := readModulesDep(root, rel)
			if err != nil {
				g.Warnings = append(g.Warnings, err.Error())
			} else {
				k.VirtioBlk = k.VirtioBlk || hasModule(root, mods, dep, "virtio_blk")
				k.VirtioNet = k.VirtioNet || hasModule(root, mods, dep, "virtio_net")
				for _, p := range dep.Paths() {
					n := initrd.ModuleName(p)
					if strings.Contains(p, "/xenpv/") || n == "xen_vbd" || n == "xen_vnif" || n == "xen_platform_pci" {
						g.XenPVHVM = true
					}
				}
			}
		}
		k.Initrd = g.findInitrd(root, rel)
		if k.Initrd != "" {
			if b, err := root.ReadFile(k.Initrd); err == nil {
				if img, err := initrd.Read(b); err == nil {
					k.InitrdFlavour = initrd.Detect(img)
				} else {
					g.Warnings = append(g.Warnings, fmt.Sprintf("initrd /%s: %v", k.Initrd, err))
				}
			}
		}
		if g.Grub != nil {
			for i, ent := range g.Grub.Config.Entries {
				kp, _, _ := ent.LinuxKernel()
				if kp != "" && g.Grub.GuestPath(kp) == k.Vmlinuz && (k.Entry < 0 || g.Grub.Config.Entries[k.Entry].Xen()) {
					k.Entry = i
				}
			}
		}
		g.Kernels = append(g.Kernels, k)
	}
	sort.SliceStable(g.Kernels, func(i, j int) bool {
		return compareVersions(g.Kernels[i].Release, g.Kernels[j].Release) > 0
	})
	return nil
}

// findInitrd returns the initrd of a kernel: the one its grub entry names,
// or the distribution's usual name.
func (g *Guest) findInitrd(root guestfs.FS, rel string) string {
	if g.Grub != nil {
		for _, ent := range g.Grub.Config.Entries {
			kp, _, ip := ent.LinuxKernel()
			if ip != "" && path.Base(kp) == "vmlinuz-"+rel {
				p := g.Grub.GuestPath(ip)
				if _, err := root.Stat(p); err == nil {
					return p
				}
			}
		}
	}
	for _, p := range []string{"boot/initrd-" + rel + ".img", "boot/initramfs-" + rel + ".img", "boot/initrd-" + rel} {
		if _, err := root.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

func readModulesDep(root guestfs.FS, rel string) (*initrd.ModulesDep, error) {
	p := "lib/modules/" + rel + "/modules.dep"
	b, err := root.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", p, err)
	}
	dep, err := initrd.ParseModulesDep(b)
	if err != nil {
		return nil, fmt.Errorf("reading /%s: %w", p, err)
	}
	return dep, nil
}

func hasModule(root guestfs.FS, mods string, dep *initrd.ModulesDep, name string) bool {
	p, ok := dep.Path(name)
	if !ok {
		return false
	}
	_, err := root.Stat(mods + "/" + p)
	return err == nil
}

// configValue returns the value a kernel config gives name ("y", "m"),
// "" when unset.
func configValue(config []byte, name string) string {
	sc := bufio.NewScanner(bytes.NewReader(config))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), name+"="); ok {
			return v
		}
	}
	return ""
}

// configSet tells whether a kernel config sets name to y or m.
func configSet(config []byte, name string) bool {
	v := configValue(config, name)
	return v == "y" || v == "m"
}

// configBuiltin tells whether a kernel config builds name into the kernel.
func configBuiltin(config []byte, name string) bool { return configValue(config, name) == "y" }

// inspectArch reads the ELF header of the guest's shell; without one it
// goes by the kernel releases.
func inspectArch(root guestfs.FS, kernels []Kernel) string {
	for _, p := range []string{"bin/sh", "bin/bash", "sbin/init", "bin/ls"} {
		f, err := root.Open(p)
		if err != nil {
			continue
		}
		var h [20]byte
		_, err = io.ReadFull(f, h[:])
		f.Close()
		if err != nil || !bytes.HasPrefix(h[:], []byte("\x7fELF")) {
			continue
		}
		var order binary.ByteOrder = binary.LittleEndian
		if h[5] == 2 {
			order = binary.BigEndian
		}
		switch order.Uint16(h[18:]) {
		case 62:
			return "x86_64"
		case 3:
			return "i686"
		case 50:
			return "ia64"
		case 21:
			return "ppc64"
		}
	}
	for _, k := range kernels {
		switch {
		case configBuiltin(k.config, "CONFIG_X86_64"):
			return "x86_64"
		case configBuiltin(k.config, "CONFIG_X86_32"), configBuiltin(k.config, "CONFIG_X86"):
			return "i686"
		}
	}
	for _, k := range kernels {
		for _, a := range []string{"x86_64", "i686", "i586", "i386"} {
			if strings.Contains(k.Release, a) {
				return a
			}
		}
	}
	return ""
}

// supported tells whether xen2kvm converts the guest's distribution.
func (g *Guest) supported() bool {
	return slices.Contains([]string{"rhel", "centos", "scientific", "oracle"}, g.Distro) && g.Major >= 4 && g.Major <= 6
}
