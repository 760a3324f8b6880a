// Package firstboot proves a converted guest's first boot beyond its
// login prompt. It boots the guest on throw-away qcow2 overlays above the
// converted images, follows the reboots the guest makes on its own, proves
// its network answers (on a QEMU user network shaped to the guest's own
// ifcfg), powers it off through ACPI, then reads the overlays back with
// xen2kvm's own image, LVM and ext readers (the journal replayed in
// memory, nothing written) and reports what the boot changed in /etc and
// /boot: kudzu moving ifcfg-eth0 aside, udev naming a new interface, a
// rewritten fstab or grub.conf, a /.autorelabel left behind.
//
//	res, err := firstboot.Check(ctx, dom, firstboot.Options{
//		Boot: []kvmrun.Option{kvmrun.WithAccel(kvmrun.AccelAuto), kvmrun.WithTimeout(5 * time.Minute)},
//	})
//	for _, f := range res.Report.Drift.Files {
//		fmt.Println(f.Change, f.Path, f.Flag)
//	}
//	if errors.Is(err, firstboot.ErrDrift) { ... }
package firstboot
