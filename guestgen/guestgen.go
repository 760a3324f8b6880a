package guestgen

import (
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"sort"
	"strings"
)

// Spec describes a guest to build.
type Spec struct {
	// Name is the Xen domain name; it names the config file, the image
	// files and the guest's directory under the output folder.
	Name string
	// HVM builds a Windows-style HVM guest (builder = "hvm", IDE disk
	// with one NTFS-looking partition). It does not boot.
	HVM bool
	// LVM puts root and swap on VolGroup00 (LogVol00, LogVol01) in
	// partition 2 instead of on partitions 2 and 3.
	LVM bool
	// Kernels are the installed kernel releases in grub.conf order; the
	// first is the default entry. A release ending in "xen" is a Xen
	// kernel (console=xvc0, the Xen block driver in its initrd).
	Kernels []string
	// LVMFilter gives /etc/lvm/lvm.conf and the initrd's copy a filter
	// that accepts only the Xen disks (xvd*), as hosts that hide their
	// own volumes from guests' LVM have: on virtio the root VG is not
	// found unless the conversion rewrites it. Needs LVM.
	LVMFilter bool
	// SELinuxLabels gives the guest the targeted policy's file_contexts
	// and a security.selinux label on every file (SELinux is enforcing
	// in every guest), so files a conversion writes can be checked for
	// theirs.
	SELinuxLabels bool
	// DataDisk adds a second disk, xvdb, with an ext3 filesystem mounted
	// on /data.
	DataDisk bool
	// DataVG puts the data disk's /data on a logical volume, DataVG/data,
	// whose PV is xvdb1 (the initrd activates it beside the root VG).
	// Needs DataDisk.
	DataVG bool
	// XenPVModules gives the guest kmod-xenpv's drivers for its first
	// non-Xen kernel and an rc.local that insmods them by path
	// (xen-vbd.ko, xen-vnif.ko): on KVM the insmod fails, naming the
	// driver on the console, unless the conversion comments the lines out.
	// Needs a non-Xen kernel.
	XenPVModules bool
	// Kdump enables a kdump service stand-in whose /etc/kdump.conf dumps
	// to /dev/xvda1, and reserves crash kernel memory (crashkernel=) on
	// every grub entry: at boot the service fails, naming the device,
	// when the target is not there, and fails without crashkernel=.
	Kdump bool
	// RPMDB gives the guest an rpm stand-in and its database,
	// /var/lib/rpm/Packages, listing the installed kernels: rpm -q, and
	// rpm -i --justdb recording a package file (see KernelRPM).
	RPMDB bool
	// DiskMiB is the size of the system disk (default 256).
	DiskMiB int
	// MemoryMiB and VCPUs go into the config (defaults 512 and 1).
	MemoryMiB int
	VCPUs     int

	// First-boot behaviours (PV guests). Every guest runs kudzu, acpid
	// (powers off on the ACPI button), syslog, an sshd stand-in answering
	// on SSHPort with a banner, and relabels and reboots once when it
	// finds /.autorelabel, as RHEL 5 does.

	// IPAddr gives eth0 a static address, "192.168.122.50/24" (with
	// Gateway); empty means BOOTPROTO=dhcp.
	IPAddr  string
	Gateway string
	// SSHPort is the port the sshd stand-in listens on (22 when 0).
	SSHPort int
	// NoKudzu leaves the kudzu stand-in's start links out, as after
	// "chkconfig kudzu off". With them (RHEL 5's default), at a boot on a
	// new network card it moves ifcfg-eth0 to ifcfg-eth0.bak and writes a
	// DHCP configuration, unless the conversion disabled it (its kudzu
	// rule does).
	NoKudzu bool
	// IfcfgMAC is the HWADDR ifcfg-eth0 names (the vif's MAC when
	// empty). Another address (a cloned guest whose vif got a new MAC)
	// survives the conversion, and the network script ignores the NIC,
	// as RHEL's does: login works, the network does not.
	IfcfgMAC string
	// RelabelLoop leaves a /.autorelabel the relabel cannot remove
	// (immutable, chattr +i), so the guest relabels and reboots at every
	// boot.
	RelabelLoop bool

	// RHEL6 builds a RHEL 6-style guest on plain partitions: ext4 for /
	// and /boot as RHEL 6's e2fsprogs 1.41 made them, filesystems named
	// by UUID, one pvops kernel (it runs on Xen and carries the virtio
	// modules) whose dracut initramfs holds xen-blkfront as its only
	// disk driver, console=hvc0, an upstart-style init (the serial getty
	// follows the kernel's console), udev's coldplug and
	// 70-persistent-net.rules naming the vif eth0. Needs dracut and
	// depmod on the host.
	RHEL6 bool
}

// The presets: the guests xen2kvm's tests and demo use.
var (
	// CentOS5PV is a CentOS 5.4 PV guest on plain partitions (/boot on
	// xvda1, / on xvda2, swap on xvda3) with the kernel-xen entry as
	// default and a non-Xen kernel installed.
	CentOS5PV = Spec{Name: "centos5", Kernels: []string{"2.6.18-164.el5xen", "2.6.18-164.el5"}}
	// CentOS5LVM is CentOS5PV with / and swap on VolGroup00 and a static
	// address on eth0, as real RHEL 5 guests are: kudzu, an LVM filter
	// that accepts only Xen disks, SELinux labels on every file,
	// kernel-debug of the same version as kernel installed beside
	// kernel-xen, an rc.local that insmods kmod-xenpv's drivers and kdump
	// dumping to /dev/xvda1.
	CentOS5LVM = Spec{Name: "centos5-lvm", LVM: true, LVMFilter: true, SELinuxLabels: true, XenPVModules: true, Kdump: true,
		Kernels: []string{"2.6.18-164.el5xen", "2.6.18-164.el5", "2.6.18-164.el5debug"},
		IPAddr:  "192.168.122.50/24", Gateway: "192.168.122.1"}
	// TwoDisks is CentOS5PV with a second disk whose volume group
	// DataVG (PV xvdb1) holds /data.
	TwoDisks = Spec{Name: "centos5-2disks", DataDisk: true, DataVG: true, Kernels: []string{"2.6.18-164.el5xen", "2.6.18-164.el5"}}
	// XenOnly has two Xen kernels and no other, as the installer leaves
	// a PV guest, and an RPM database that knows them.
	XenOnly = Spec{Name: "centos5-xenonly", Kernels: []string{"2.6.18-164.el5xen", "2.6.18-128.el5xen"}, RPMDB: true}
	// RHEL6 is a RHEL 6.5 PV guest (see Spec.RHEL6).
	RHEL6 = Spec{Name: "rhel6", RHEL6: true, Kernels: []string{"2.6.32-431.el6.x86_64"}}
	// Windows2003HVM is an HVM guest whose disk holds one NTFS partition.
	Windows2003HVM = Spec{Name: "win2003", HVM: true, MemoryMiB: 1024}
)

// Presets returns the named presets, by the name mkguest takes (each
// preset's Name).
func Presets() map[string]Spec {
	m := map[string]Spec{}
	for _, s := range []Spec{CentOS5PV, CentOS5LVM, TwoDisks, XenOnly, RHEL6, Windows2003HVM} {
		m[s.Name] = s
	}
	return m
}

// PresetNames returns the preset names, sorted.
func PresetNames() []string {
	var names []string
	for n := range Presets() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// ErrInvalidSpec is returned (wrapped) by Build for a spec it cannot build.
var ErrInvalidSpec = errors.New("invalid guest spec")

var (
	nameRe    = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9._-]*$`)
	releaseRe = regexp.MustCompile(`^[0-9][0-9a-zA-Z._-]*$`)
)

// IsXen tells whether a kernel release is a Xen kernel (kernel-xen's
// releases end in "xen", e.g. 2.6.18-164.el5xen).
func IsXen(release string) bool { return strings.HasSuffix(release, "xen") }

func (s Spec) withDefaults() Spec {
	if s.DiskMiB == 0 {
		s.DiskMiB = 256
	}
	if s.MemoryMiB == 0 {
		s.MemoryMiB = 512
	}
	if s.VCPUs == 0 {
		s.VCPUs = 1
	}
	s.Kernels = append([]string(nil), s.Kernels...)
	return s
}

func (s Spec) validate() error {
	var errs []error
	if !nameRe.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("name %q: want letters, digits, '.', '_' or '-'", s.Name))
	}
	if s.HVM {
		if len(s.Kernels) > 0 || s.LVM || s.DataDisk {
			errs = append(errs, fmt.Errorf("an HVM guest takes no kernels, LVM or data disk"))
		}
	} else if len(s.Kernels) == 0 {
		errs = append(errs, fmt.Errorf("a PV guest needs at least one kernel"))
	}
	if s.LVMFilter && !s.LVM {
		errs = append(errs, fmt.Errorf("an LVM filter needs LVM"))
	}
	if s.RHEL6 {
		if s.HVM || s.LVM || s.DataDisk || s.SELinuxLabels || s.RelabelLoop {
			errs = append(errs, fmt.Errorf("a RHEL 6 guest takes no HVM, LVM, data disk, SELinux labels or relabel loop"))
		}
		for _, k := range s.Kernels {
			if IsXen(k) {
				errs = append(errs, fmt.Errorf("RHEL 6 has no kernel-xen (%s): its one kernel runs on Xen", k))
			}
		}
	}
	if s.XenPVModules && !slices.ContainsFunc(s.Kernels, func(k string) bool { return !IsXen(k) }) {
		errs = append(errs, fmt.Errorf("kmod-xenpv's drivers need a non-Xen kernel"))
	}
	if s.DataVG && !s.DataDisk {
		errs = append(errs, fmt.Errorf("a data volume group needs the data disk"))
	}
	seen := map[string]bool{}
	for _, k := range s.Kernels {
		if !releaseRe.MatchString(k) {
			errs = append(errs, fmt.Errorf("kernel release %q is not a release name", k))
		}
		if seen[k] {
			errs = append(errs, fmt.Errorf("kernel %s listed twice", k))
		}
		seen[k] = true
	}
	if s.DiskMiB != 0 && (s.DiskMiB < 200 || s.DiskMiB > 1<<20) {
		errs = append(errs, fmt.Errorf("disk size %d MiB: want 200 MiB to 1 TiB", s.DiskMiB))
	}
	if s.MemoryMiB < 0 || s.VCPUs < 0 {
		errs = append(errs, fmt.Errorf("negative memory or vcpus"))
	}
	if s.IPAddr != "" {
		if ip, _, err := net.ParseCIDR(s.IPAddr); err != nil || ip.To4() == nil {
			errs = append(errs, fmt.Errorf("IPAddr %q: want an IPv4 address with its prefix, 192.168.122.50/24", s.IPAddr))
		}
	}
	if s.Gateway != "" && net.ParseIP(s.Gateway).To4() == nil {
		errs = append(errs, fmt.Errorf("gateway %q is not an IPv4 address", s.Gateway))
	}
	if s.SSHPort < 0 || s.SSHPort > 65535 {
		errs = append(errs, fmt.Errorf("SSH port %d out of range", s.SSHPort))
	}
	if s.IfcfgMAC != "" {
		if _, err := net.ParseMAC(s.IfcfgMAC); err != nil {
			errs = append(errs, fmt.Errorf("IfcfgMAC %q is not a MAC address", s.IfcfgMAC))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%w %s: %w", ErrInvalidSpec, s.Name, err)
	}
	return nil
}

// Guest is a built guest.
type Guest struct {
	Name string `json:"name"`
	// Dir is the guest's folder: OUTDIR/NAME.
	Dir string `json:"dir"`
	// Config is the xm config file, DIR/etc/xen/NAME.
	Config string `json:"config"`
	// Images are the disk image files in config order, under DIR/images.
	Images []string `json:"images"`
	// XenImageDir is the folder the config names the images in, as on the
	// Xen host (/var/lib/xen/images): migrate them with
	// --disk-map XenImageDir=DIR/images.
	XenImageDir string `json:"xen_image_dir"`
	// MAC is the guest's NIC address (00:16:3e:…).
	MAC string `json:"mac"`
	// Kernels are the installed kernel releases, the default first.
	Kernels []string `json:"kernels,omitempty"`
}

// XenImageDir is where the configs say the images are.
const XenImageDir = "/var/lib/xen/images"
