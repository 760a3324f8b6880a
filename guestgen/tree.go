package guestgen

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
)

// tree writes files into a staging directory that mke2fs -d turns into a
// filesystem.
type tree struct {
	root string
	err  error
}

func (t *tree) dir(name string, mode os.FileMode) {
	if t.err != nil {
		return
	}
	p := filepath.Join(t.root, name)
	if t.err = os.MkdirAll(p, 0o755); t.err == nil {
		t.err = os.Chmod(p, mode)
	}
}

func (t *tree) file(name string, mode os.FileMode, content string) {
	if t.err != nil {
		return
	}
	p := filepath.Join(t.root, name)
	if t.err = os.MkdirAll(filepath.Dir(p), 0o755); t.err != nil {
		return
	}
	if t.err = os.WriteFile(p, []byte(content), mode); t.err == nil {
		t.err = os.Chmod(p, mode)
	}
}

func (t *tree) link(name, target string) {
	if t.err != nil {
		return
	}
	p := filepath.Join(t.root, name)
	if t.err = os.MkdirAll(filepath.Dir(p), 0o755); t.err == nil {
		t.err = os.Symlink(target, p)
	}
}

func (t *tree) copy(name, src string, mode os.FileMode) {
	if t.err != nil {
		return
	}
	t.err = copyFile(src, filepath.Join(t.root, name), mode)
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copying %s: %w", src, err)
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Chmod(dst, mode)
}

// guestLayout is what the guest's files say about its disks.
type guestLayout struct {
	spec     Spec
	mac      string
	bootDev  string // /dev/xvda1
	rootDev  string // /dev/xvda2 or /dev/VolGroup00/LogVol00
	swapDev  string
	dataDev  string // /dev/xvdb1 with DataDisk
	bootUUID string
	rootUUID string
	fsType   string // of / and /boot: ext3, or ext4 on RHEL 6
}

const (
	release      = "CentOS release 5.4 (Final)"
	releaseRHEL6 = "Red Hat Enterprise Linux Server release 6.5 (Santiago)"
)

// busyboxApplets get a link to /bin/busybox in the root's /bin or /sbin.
var busyboxApplets = map[string][]string{
	"bin": {"sh", "ash", "cat", "chmod", "chown", "cp", "date", "df", "dmesg", "echo", "false", "grep",
		"egrep", "hostname", "kill", "ln", "login", "ls", "mkdir", "mknod", "more", "mount", "mv", "ps",
		"pwd", "rm", "rmdir", "sed", "sleep", "stty", "su", "sync", "touch", "true", "umount", "uname",
		"vi", "awk", "cut", "head", "tail", "tr", "wc", "id", "env", "free", "setsid", "usleep", "gzip",
		"gunzip", "zcat", "cpio", "find", "xargs", "sort", "uniq", "less", "dd", "ip", "ping", "expr",
		"readlink", "test", "[", "printf", "basename", "dirname", "mountpoint", "nc", "killall", "pidof", "logger"},
	"sbin": {"getty", "sulogin", "findfs", "swapon", "swapoff", "reboot", "halt", "poweroff", "insmod",
		"rmmod", "lsmod", "modprobe", "ifconfig", "route", "mkswap", "fdisk", "blockdev", "losetup",
		"switch_root", "udhcpc", "hwclock", "sysctl", "klogd", "syslogd"},
}

// rootTree writes the root filesystem's files (without /boot's contents).
func rootTree(t *tree, l *guestLayout, busybox string) {
	s := l.spec
	for _, d := range []string{"bin", "sbin", "boot", "dev", "proc", "sys", "tmp", "var/tmp", "var/log",
		"var/lock/subsys", "var/run", "var/lib", "mnt", "media", "home", "opt", "srv", "selinux", "usr/bin",
		"usr/sbin", "usr/lib", "lib", "etc/rc.d/init.d", "etc/rc.d/rc0.d", "etc/rc.d/rc1.d",
		"etc/rc.d/rc2.d", "etc/rc.d/rc3.d", "etc/rc.d/rc4.d", "etc/rc.d/rc5.d", "etc/rc.d/rc6.d",
		"etc/xen", "etc/sysconfig/network-scripts", "etc/blkid", "etc/lvm/cache"} {
		t.dir(d, 0o755)
	}
	t.dir("root", 0o750)
	t.dir("tmp", 0o1777)
	t.dir("var/tmp", 0o1777)
	if s.DataDisk {
		t.dir("data", 0o755)
	}
	t.copy("bin/busybox", busybox, 0o755)
	for dir, applets := range busyboxApplets {
		for _, a := range applets {
			target := "busybox"
			if dir != "bin" {
				target = "../bin/busybox"
			}
			t.link(dir+"/"+a, target)
		}
	}
	t.file("sbin/init", 0o755, skel("init"))
	t.file("sbin/agetty", 0o755, skel("agetty"))
	t.file("sbin/mingetty", 0o755, skel("mingetty"))
	t.file("etc/rc.d/rc.sysinit", 0o755, skel("rc.sysinit"))
	t.file("etc/rc.d/rc", 0o755, skel("rc"))
	t.file("etc/rc.d/init.d/network", 0o755, skel("network"))
	for _, svc := range []string{"syslog", "acpid", "sshd", "kudzu", "halt"} {
		if svc == "kudzu" && s.RHEL6 {
			continue // RHEL 6 has no kudzu
		}
		t.file("etc/rc.d/init.d/"+svc, 0o755, skel(svc))
	}
	// The start (S) and stop (K) links chkconfig makes from each script's
	// "# chkconfig: 2345 NN MM" line.
	for _, lvl := range []string{"2", "3", "4", "5"} {
		if !s.NoKudzu && !s.RHEL6 {
			t.link("etc/rc.d/rc"+lvl+".d/S05kudzu", "../init.d/kudzu")
		}
		t.link("etc/rc.d/rc"+lvl+".d/S10network", "../init.d/network")
		t.link("etc/rc.d/rc"+lvl+".d/S12syslog", "../init.d/syslog")
		t.link("etc/rc.d/rc"+lvl+".d/S26acpid", "../init.d/acpid")
		t.link("etc/rc.d/rc"+lvl+".d/S55sshd", "../init.d/sshd")
	}
	for _, lvl := range []string{"0", "1", "6"} {
		t.link("etc/rc.d/rc"+lvl+".d/K25sshd", "../init.d/sshd")
		t.link("etc/rc.d/rc"+lvl+".d/K44acpid", "../init.d/acpid")
		t.link("etc/rc.d/rc"+lvl+".d/K88syslog", "../init.d/syslog")
		t.link("etc/rc.d/rc"+lvl+".d/K90network", "../init.d/network")
		if !s.RHEL6 {
			t.link("etc/rc.d/rc"+lvl+".d/K95kudzu", "../init.d/kudzu")
		}
	}
	t.link("etc/rc.d/rc0.d/S01halt", "../init.d/halt")
	t.link("etc/rc.d/rc6.d/S01reboot", "../init.d/halt")
	t.file("etc/acpi/PWRF/00000080", 0o755, "#!/bin/sh\n# The ACPI power button: power off, as RHEL 5's acpid power.conf does.\nexec /sbin/poweroff\n")
	t.file("usr/share/udhcpc/default.script", 0o755, skel("udhcpc.script"))
	t.file("usr/sbin/sshd-banner", 0o755, "#!/bin/sh\n# What the sshd stand-in says to every connection.\necho \"SSH-2.0-OpenSSH_4.3\"\n")
	port := s.SSHPort
	if port == 0 {
		port = 22
	}
	t.file("etc/ssh/sshd_config", 0o600, fmt.Sprintf("Protocol 2\nPort %d\nSyslogFacility AUTHPRIV\nPasswordAuthentication yes\n", port))
	if !s.RHEL6 {
		t.file("etc/sysconfig/hwconf", 0o644, fmt.Sprintf("-\nclass: NETWORK\nbus: XEN\ndetached: 0\ndevice: eth0\ndriver: xennet\ndesc: \"Xen Virtual Ethernet\"\nnetwork.hwaddr: %s\n", l.mac))
	}
	t.file("var/lib/random-seed", 0o600, strings.Repeat("\x5a", 512))
	t.file("var/log/messages", 0o600, "")
	if s.RelabelLoop {
		// Made immutable when the filesystem is built: the relabel's
		// rm -f cannot remove it.
		t.file(".autorelabel", 0o644, "")
	}
	t.link("etc/rc.sysinit", "rc.d/rc.sysinit")
	t.link("etc/rc", "rc.d/rc")
	t.link("etc/init.d", "rc.d/init.d")
	t.link("etc/grub.conf", "../boot/grub/grub.conf")

	rel := release
	if s.RHEL6 {
		rel = releaseRHEL6
	}
	t.file("etc/redhat-release", 0o644, rel+"\n")
	t.file("etc/issue", 0o644, rel+"\nKernel \\r on an \\m\n\n")
	t.file("etc/fstab", 0o644, fstab(l))
	if s.RHEL6 {
		rhel6Tree(t, l)
	} else {
		t.file("etc/inittab", 0o644, inittab())
		t.file("etc/securetty", 0o600, securetty("xvc0"))
		t.file("etc/modprobe.conf", 0o644, "alias eth0 xennet\nalias scsi_hostadapter xenblk\n")
	}
	t.file("etc/sysconfig/kernel", 0o644, sysconfigKernel(s))
	t.file("etc/sysconfig/grub", 0o644, "boot=/dev/xvda\nforcelba=0\n")
	t.file("etc/sysconfig/network", 0o644, "NETWORKING=yes\nNETWORKING_IPV6=no\nHOSTNAME="+s.Name+".localdomain\n")
	ifmac := l.mac
	if s.IfcfgMAC != "" {
		ifmac = s.IfcfgMAC
	}
	t.file("etc/sysconfig/network-scripts/ifcfg-eth0", 0o644, ifcfgEth0(s, ifmac))
	t.file("etc/sysconfig/network-scripts/ifcfg-lo", 0o644,
		"DEVICE=lo\nIPADDR=127.0.0.1\nNETMASK=255.0.0.0\nNETWORK=127.0.0.0\nBROADCAST=127.255.255.255\nONBOOT=yes\nNAME=loopback\n")
	t.file("etc/selinux/config", 0o644, "SELINUX=enforcing\nSELINUXTYPE=targeted\n")
	t.file("etc/hosts", 0o644, "127.0.0.1\tlocalhost.localdomain localhost\n::1\tlocalhost6.localdomain6 localhost6\n")
	// root has no password so that the demo console logs in with "root";
	// login still refuses root on a tty missing from /etc/securetty.
	t.file("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\nbin:x:1:1:bin:/bin:/sbin/nologin\n"+
		"daemon:x:2:2:daemon:/sbin:/sbin/nologin\nnobody:x:99:99:Nobody:/:/sbin/nologin\n")
	t.file("etc/shadow", 0o400, "root::14500:0:99999:7:::\nbin:*:14500:0:99999:7:::\n"+
		"daemon:*:14500:0:99999:7:::\nnobody:*:14500:0:99999:7:::\n")
	t.file("etc/group", 0o644, "root:x:0:root\nbin:x:1:root,bin,daemon\ndaemon:x:2:root,bin,daemon\n"+
		"tty:x:5:\ndisk:x:6:root\nnobody:x:99:\n")
	if !s.RHEL6 {
		t.file("etc/blkid/blkid.tab", 0o644, blkidTab(l))
	}
	if s.SELinuxLabels {
		t.file(fileContexts, 0o644, skel("file_contexts"))
	}
	if s.LVMFilter {
		t.file("etc/lvm/lvm.conf", 0o644, "# LVM2 configuration\ndevices {\n\tdir = \"/dev\"\n\tscan = [ \"/dev\" ]\n"+xenOnlyFilter+"\tcache_dir = \"/etc/lvm/cache\"\n}\n")
	}
	if s.LVM {
		t.file("etc/lvm/cache/.cache", 0o600,
			"# stale lvm device cache, as on the Xen host\npersistent_filter_cache {\n\tvalid_devices=[\n\t\t\"/dev/xvda2\"\n\t]\n}\n")
	}
}

// ifcfgEth0 is the vif's configuration: DHCP, or the spec's static address.
func ifcfgEth0(s Spec, mac string) string {
	c := "# Xen Virtual Ethernet\nDEVICE=eth0\n"
	if s.IPAddr == "" {
		c += "BOOTPROTO=dhcp\n"
	} else {
		ip, ipnet, _ := net.ParseCIDR(s.IPAddr)
		c += fmt.Sprintf("BOOTPROTO=static\nIPADDR=%s\nNETMASK=%s\n", ip, net.IP(ipnet.Mask))
		if s.Gateway != "" {
			c += "GATEWAY=" + s.Gateway + "\n"
		}
	}
	if s.RHEL6 {
		// A RHEL 6 guest made from a template: the template's
		// preparation took HWADDR out (a clone has another MAC), so
		// the name eth0 rests on udev's 70-persistent-net.rules alone.
		return c + "ONBOOT=yes\n"
	}
	return c + "HWADDR=" + strings.ToUpper(mac) + "\nONBOOT=yes\n"
}

func fstab(l *guestLayout) string {
	row := func(dev, mnt, typ, opts string, freq, pass int) string {
		return fmt.Sprintf("%-23s %-23s %-7s %-15s %d %d\n", dev, mnt, typ, opts, freq, pass)
	}
	var b strings.Builder
	typ := l.fsType
	if typ == "" {
		typ = "ext3"
	}
	b.WriteString(row(l.rootDev, "/", typ, "defaults", 1, 1))
	b.WriteString(row(l.bootDev, "/boot", typ, "defaults", 1, 2))
	if l.dataDev != "" {
		b.WriteString(row(l.dataDev, "/data", "ext3", "defaults", 1, 2))
	}
	b.WriteString(row("tmpfs", "/dev/shm", "tmpfs", "defaults", 0, 0))
	b.WriteString(row("devpts", "/dev/pts", "devpts", "gid=5,mode=620", 0, 0))
	b.WriteString(row("sysfs", "/sys", "sysfs", "defaults", 0, 0))
	b.WriteString(row("proc", "/proc", "proc", "defaults", 0, 0))
	b.WriteString(row(l.swapDev, "swap", "swap", "defaults", 0, 0))
	return b.String()
}

func inittab() string {
	var b strings.Builder
	b.WriteString(`#
# inittab: what init runs at boot and in each runlevel.
# Runlevels: 0 halt, 1 single user, 2 multi-user without NFS,
# 3 full multi-user, 4 unused, 5 X11, 6 reboot.
#
id:3:initdefault:

# System initialization.
si::sysinit:/etc/rc.d/rc.sysinit

`)
	for i := 0; i <= 6; i++ {
		fmt.Fprintf(&b, "l%d:%d:wait:/etc/rc.d/rc %d\n", i, i, i)
	}
	b.WriteString(`
# Trap CTRL-ALT-DELETE
ca::ctrlaltdel:/sbin/shutdown -t3 -r now

pf::powerfail:/sbin/shutdown -f -h +2 "Power Failure; System Shutting Down"
pr:12345:powerokwait:/sbin/shutdown -c "Power Restored; Shutdown Cancelled"

# Run gettys in standard runlevels
co:2345:respawn:/sbin/agetty xvc0 9600 vt100-nav
`)
	for i := 1; i <= 6; i++ {
		fmt.Fprintf(&b, "%d:2345:respawn:/sbin/mingetty tty%d\n", i, i)
	}
	b.WriteString("\n# Run xdm in runlevel 5\nx:5:respawn:/etc/X11/prefdm -nodaemon\n")
	return b.String()
}

// securetty is /etc/securetty allowing root on the console, the virtual
// consoles and the Xen PV console pv (xvc0 on RHEL 5, hvc0 on RHEL 6).
func securetty(pv string) string {
	var b strings.Builder
	b.WriteString("console\n")
	for i := 1; i <= 11; i++ {
		fmt.Fprintf(&b, "vc/%d\n", i)
	}
	for i := 1; i <= 11; i++ {
		fmt.Fprintf(&b, "tty%d\n", i)
	}
	b.WriteString(pv + "\n")
	return b.String()
}

func sysconfigKernel(s Spec) string {
	pkg := "kernel"
	if len(s.Kernels) > 0 && IsXen(s.Kernels[0]) {
		pkg = "kernel-xen"
	}
	return "# UPDATEDEFAULT: whether new-kernel-pkg makes a newly installed kernel the default\n" +
		"UPDATEDEFAULT=yes\n\n" +
		"# DEFAULTKERNEL: the kernel package whose new versions become the default\n" +
		"DEFAULTKERNEL=" + pkg + "\n"
}

func blkidTab(l *guestLayout) string {
	line := func(devno, label, uuid, dev string) string {
		return fmt.Sprintf("<device DEVNO=\"%s\" TIME=\"1257000000\" LABEL=\"%s\" UUID=\"%s\" SEC_TYPE=\"ext2\" TYPE=\"ext3\">%s</device>\n",
			devno, label, uuid, dev)
	}
	s := line("0xca01", "/boot", l.bootUUID, l.bootDev)
	if !l.spec.LVM {
		s += line("0xca02", "/", l.rootUUID, l.rootDev)
	}
	return s
}

// grubConf is /boot/grub/grub.conf: one entry per kernel, the first the
// default; Xen kernels get console=xvc0.
func grubConf(l *guestLayout) string {
	var b strings.Builder
	b.WriteString(`# grub.conf written by the installer
#
# /boot is its own partition, so the kernel and initrd paths below are
# relative to it:
#          root (hd0,0)
#          kernel /vmlinuz-version ro root=` + l.rootDev + `
#          initrd /initrd-version.img
#boot=/dev/xvda
default=0
timeout=5
splashimage=(hd0,0)/grub/splash.xpm.gz
hiddenmenu
`)
	for _, k := range l.spec.Kernels {
		args := "ro root=" + l.rootDev
		if IsXen(k) {
			args += " console=xvc0"
		}
		if l.spec.Kdump {
			// Memory for the crash kernel, as system-config-kdump
			// reserves it when kdump is turned on.
			args += " crashkernel=128M@16M"
		}
		fmt.Fprintf(&b, "title CentOS (%s)\n\troot (hd0,0)\n\tkernel /vmlinuz-%s %s\n\tinitrd /initrd-%s.img\n", k, k, args, k)
	}
	return b.String()
}

// kernelConfig is /boot/config-RELEASE: the test kernel's config, with the
// options RHEL 5's kernel-xen has (CONFIG_X86_XEN, CONFIG_X86_64_XEN) and
// without virtio for a Xen release.
func kernelConfig(debian, rel string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "#\n# Automatically generated make config: don't edit\n# Linux kernel version: %s\n#\n", rel)
	xen := IsXen(rel)
	for _, line := range strings.Split(debian, "\n") {
		if xen && strings.HasPrefix(line, "CONFIG_VIRTIO") {
			name, _, _ := strings.Cut(line, "=")
			line = "# " + name + " is not set"
		}
		if strings.HasPrefix(line, "# Automatically generated") || strings.HasPrefix(line, "# Linux/") {
			continue
		}
		b.WriteString(line)
		b.WriteString("\n")
	}
	if xen {
		b.WriteString("CONFIG_X86_XEN=y\nCONFIG_X86_64_XEN=y\n")
	}
	return strings.TrimRight(b.String(), "\n") + "\n"
}
