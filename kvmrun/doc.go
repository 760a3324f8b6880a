// Package kvmrun launches a converted guest under QEMU/KVM and proves it
// boots: it picks the accelerator (KVM only when a probe guest shows it
// works on this host, else TCG), boots PV guests the way pygrub did (the
// kernel, initrd and command line of the default entry of the grub config
// on the guest's own disk), watches the serial console for a login prompt
// and shuts the guest down over QMP.
//
//	res, err := kvmrun.Boot(ctx, dom,
//		kvmrun.WithAccel(kvmrun.AccelAuto),
//		kvmrun.WithExpect(regexp.MustCompile(`login:`)),
//		kvmrun.WithTimeout(5*time.Minute))
//	var be *kvmrun.BootError
//	if errors.As(err, &be) {
//		fmt.Println("stuck in", be.Stage, "after:", strings.Join(be.SerialTail, "\n"))
//	}
//
// The QEMU command line is logged (and returned) so a person can rerun it.
package kvmrun

// DefaultQEMU is the QEMU binary looked up on PATH.
const DefaultQEMU = "qemu-system-x86_64"
