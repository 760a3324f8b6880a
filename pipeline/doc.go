// Package pipeline runs xen2kvm's migrations: one guest (Migrate), many
// guests from a manifest (RunBatch), or either as a dry run that writes
// nothing but its report. Inspect reads configs and looks inside the
// guests' disks without converting anything.
//
// One migration inspects the guest, plans the conversion, applies it into a
// copy-on-write overlay above the read-only source disks, copies every disk
// once (all disks at the same time), writes the libvirt XML, a QEMU launch
// script and the report, validates the written output and boots it:
//
//	res, err := pipeline.Migrate(ctx, "/etc/xen/web01", pipeline.Options{
//		OutDir:  "/srv/kvm/web01",
//		Format:  "qcow2",
//		DiskMap: []config.PathMap{{Old: "/var/lib/xen/images", New: "/srv/import"}},
//	})
//
// Everything is written under a staging folder inside OutDir and renamed
// into place only when the guest is complete; NAME.report.json is written
// last and marks a finished migration. A failed or killed run leaves
// nothing that looks complete, and the sources are never opened for writing.
package pipeline
