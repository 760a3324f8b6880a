// Package guestgen builds realistic RHEL 5 era Xen guests for xen2kvm's
// tests and demo: sparse raw disk images plus their /etc/xen config, as
// they sit on a CentOS 5 Xen host.
//
//	g, err := guestgen.Build(ctx, "out", guestgen.CentOS5PV)
//	// g.Config: out/centos5/etc/xen/centos5 (xm format, pygrub, tap:aio:)
//	// g.Images: [out/centos5/images/centos5.img]
//
// A PV guest's system disk has an MBR in the installer's cylinder layout,
// /boot (ext3) on xvda1 and root (ext3) either on xvda2 with swap on
// xvda3, or on LVM (VolGroup00/LogVol00, swap LogVol01, the LVM2 on-disk
// format written natively). Its files are those a conversion touches:
// grub.conf with menu.lst and /etc/grub.conf links (the kernel-xen entry
// the default, with console=xvc0), device.map, fstab on xvda, modprobe.conf
// with the xennet and xenblk aliases, inittab with agetty on xvc0,
// securetty without ttyS0, DEFAULTKERNEL=kernel-xen, ifcfg-eth0 with the
// vif's MAC, /boot/config-* and /lib/modules trees with old-style
// modules.dep, and nash initrds that load only the Xen block driver.
//
// The guests really boot. Every kernel is Debian's 6.1 kernel from
// internal/testkernel standing in for the RHEL release it is installed
// as, with its modules copied into the RHEL-named trees (the Xen drivers
// renamed xenblk.ko and xennet.ko as RHEL names them; ext4.ko stands in
// for ext3.ko). busybox is the userland: /bin/nash in the initrd is a shim
// that runs the nash script's commands, and the root's /sbin/init honours
// /etc/inittab and, through rc.sysinit, /etc/fstab as RHEL 5 does — so an
// unconverted guest never reaches login: under KVM and a converted one
// does.
//
// Their first boot behaves as a RHEL 5 guest's does, so the boot check's
// first-boot proof has something to see: rc.sysinit rebuilds /etc/mtab,
// saves the random seed and, finding /.autorelabel, relabels and reboots
// once; kudzu (unless the conversion disabled it) moves ifcfg-eth0 aside
// on the new network card; syslog writes /var/log/messages; the network script configures
// ifcfg-eth0's static address or a DHCP lease; an sshd stand-in answers
// on port 22 with a banner; acpid powers the guest off on the ACPI
// button and init's runlevel 0 unmounts the filesystems cleanly. Spec
// options add what goes wrong on real migrations: an ifcfg-eth0 naming
// another MAC, a relabel that reboots forever.
//
// The RHEL 6 guest (RHEL6) is built as RHEL 6's tools left it: ext4 /
// and /boot made with e2fsprogs 1.41's features (extents, flex_bg,
// uninit_bg, huge_file, dir_nlink, extra_isize; no metadata_csum or
// 64bit), filesystems and grub's root= by UUID, grub legacy booting the
// one pvops kernel with console=hvc0, its module tree indexed by the
// host's depmod, and an initramfs made by the host's dracut (hostonly
// style: xen-blkfront and ext4 its only drivers, gzip, no systemd), with
// one stand-in link: lib/modules/<Debian release> -> the RHEL release,
// since the running kernel's uname -r is Debian's. Its init follows
// RHEL 6's upstart jobs (a getty on the serial console the kernel's
// console= names), rc.sysinit runs a start_udev stand-in that loads the
// drivers matching each device's modalias and keeps
// 70-persistent-net.rules as udev's generator does, and /.autorelabel
// makes it relabel and reboot as RHEL 6's rc.sysinit does.
//
// Build caches: a second call with the same spec finds the completion
// stamp it writes last and returns at once. The stamp's key hashes the
// spec, the skel scripts, guestgen's own Go source (embedded; not its
// tests), the busybox and kernel it used: a change to any of them
// rebuilds the guest. cmd/mkguest builds presets
// from the command line.
package guestgen
