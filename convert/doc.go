// Package convert inspects a Xen guest's files and plans, then applies,
// the changes that make it boot on KVM: RHEL and CentOS 4, 5 and 6 guests
// get a non-Xen kernel with virtio as the grub default, their disks
// renamed by disk order (xvda -> vda) wherever the guest names them, the
// Xen driver aliases turned into virtio ones, an initrd rebuilt natively
// with the virtio modules, and their console moved to ttyS0. Windows HVM
// guests are left as they are. A guest with only Xen kernels is blocked,
// unless Options.KernelRPM names a kernel package to install into it.
//
// The conversion is a table of rules (Rules lists them, by name and
// reason, in the order they run; Options.Disable leaves some out), each a
// function in the rules_*.go file of its family.
//
// A plan is computed without writing anything, so a dry run is MakePlan
// and Diff; Apply writes the same plan into a copy-on-write overlay.
//
//	g, err := convert.Inspect(root) // root: the guest's / with /boot mounted
//	if err != nil { ... }
//	p, err := convert.MakePlan(g, root, domain, convert.Options{})
//	if err != nil { ... }
//	fmt.Print(p.Diff())
//	if len(p.Blockers) == 0 {
//		err = p.Apply(root)
//	}
package convert
