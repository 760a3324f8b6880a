package firstboot

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/kvmrun"
	"github.com/xen2kvm/xen2kvm/report"
)

// ErrLeftover: the first boot shows something of Xen the conversion
// should have changed (see Leftovers), and Options.AllowDrift was not set.
var ErrLeftover = errors.New("the first boot shows a conversion left undone")

// Leftovers lists what a first boot shows the conversion left undone:
// every console finding that names a Xen PV driver or a Xen disk (an
// rc.local insmod'ing xen-vbd.ko, a kdump target on /dev/xvda1), and a
// debug kernel booted while root's /boot holds a non-Xen kernel of
// another flavour. A debug kernel shows in a console finding (its lock
// dependency validator) or in booted, the path of the kernel the boot
// loader booted in the boot filesystem ("vmlinuz-2.6.18-164.el5debug";
// "" when unknown). root may be nil: the kernel is not checked then.
// Each entry names what broke.
func Leftovers(findings []report.Finding, booted string, root fs.FS) []string {
	var out []string
	debugLine := ""
	for _, f := range findings {
		switch {
		case f.Kind == kvmrun.FindingXen:
			out = append(out, fmt.Sprintf("console line %d names a Xen PV driver or disk, which KVM has not: %q", f.Line, f.Text))
		case f.Kind == kvmrun.FindingDebugKernel && debugLine == "":
			debugLine = fmt.Sprintf("console line %d: %q", f.Line, f.Text)
		}
	}
	what := ""
	if rel, ok := strings.CutPrefix(path.Base(booted), "vmlinuz-"); ok {
		if pkg, debug := convert.KernelPackage(rel); debug {
			what = fmt.Sprintf("kernel %s (%s), a debug flavour", rel, pkg)
		}
	}
	if debugLine != "" {
		if what == "" {
			what = "a debug kernel"
		}
		what += " (" + debugLine + ")"
	}
	if what == "" || root == nil {
		return out
	}
	var prod []string
	if es, err := fs.ReadDir(root, "boot"); err == nil {
		for _, e := range es {
			r, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
			if _, d := convert.KernelPackage(r); ok && !d && !convert.XenRelease(r) {
				prod = append(prod, r)
			}
		}
	}
	sort.Strings(prod)
	if len(prod) > 0 {
		out = append(out, fmt.Sprintf("the guest booted %s, which runs slowly and is meant for diagnosing, while %s is installed: grub's default entry should boot that",
			what, strings.Join(prod, ", ")))
	}
	return out
}
