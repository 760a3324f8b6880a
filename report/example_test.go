package report_test

import (
	"os"

	"github.com/xen2kvm/xen2kvm/report"
)

func ExampleWriteText() {
	g := &report.Guest{
		Name: "web01", Status: report.StatusPlanned, DryRun: true,
		Source: report.Source{File: "/etc/xen/web01", Format: "xm", Type: "pv", MemoryMiB: 512, MaxMemoryMiB: 512, VCPUs: 1},
		Edits: []report.Edit{{Path: "etc/fstab", Rule: "fstab",
			Diff: "--- a/etc/fstab\n+++ b/etc/fstab\n@@ -1 +1 @@\n-/dev/xvda1 / ext3 defaults 1 1\n+/dev/vda1 / ext3 defaults 1 1\n"}},
		Warnings: []string{"SELinux is enforcing: the guest relabels on its first boot"},
	}
	report.WriteText(os.Stdout, g)
	// Output:
	// Guest web01: planned (dry run: nothing written)
	// ===============================================
	//
	// Source config: /etc/xen/web01 (xm)
	//   type pv, 512 MiB memory (max 512 MiB), 1 vCPU
	//
	// Edits inside the guest:
	//
	// * /etc/fstab [fstab]
	// --- a/etc/fstab
	// +++ b/etc/fstab
	// @@ -1 +1 @@
	// -/dev/xvda1 / ext3 defaults 1 1
	// +/dev/vda1 / ext3 defaults 1 1
	//
	// Warnings:
	//   - SELinux is enforcing: the guest relabels on its first boot
}
