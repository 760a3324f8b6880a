package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Bytes formats a byte count for people: 0 B, 512 B, 1.5 KiB, 8.0 GiB.
func Bytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 5; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// Seconds formats a duration in seconds for people: 0.4 s, 12 s, 3m05s.
func Seconds(s float64) string {
	switch {
	case s < 10:
		return fmt.Sprintf("%.1f s", s)
	case s < 120:
		return fmt.Sprintf("%.0f s", s)
	default:
		m := int(s) / 60
		return fmt.Sprintf("%dm%02ds", m, int(s)-60*m)
	}
}

// WriteText writes the guests' reports as plain text.
func WriteText(w io.Writer, guests ...*Guest) error {
	ew := &errWriter{w: w}
	for i, g := range guests {
		if i > 0 {
			ew.printf("\n")
		}
		writeGuestText(ew, g)
	}
	return ew.err
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}

func (e *errWriter) printf(format string, args ...any) { fmt.Fprintf(e, format, args...) }

func writeGuestText(w *errWriter, g *Guest) {
	title := fmt.Sprintf("Guest %s: %s", g.Name, g.Status)
	if g.DryRun {
		title += " (dry run: nothing written)"
	}
	w.printf("%s\n%s\n", title, strings.Repeat("=", len(title)))
	if g.Error != "" {
		w.printf("Error: %s\n", g.Error)
	}
	s := g.Source
	w.printf("\nSource config: %s (%s)\n", s.File, s.Format)
	w.printf("  type %s, %d MiB memory (max %d MiB), %d vCPU\n", s.Type, s.MemoryMiB, s.MaxMemoryMiB, s.VCPUs)
	if s.Bootloader != "" {
		w.printf("  boot loader %s\n", s.Bootloader)
	}
	if s.Kernel != "" {
		w.printf("  kernel %s\n", s.Kernel)
	}
	if h := g.Host; h != nil {
		w.printf("  read from %s (config: %s), %s of disk data over the network, %d reconnects\n", h.URL, orDash(h.ConfigFrom), Bytes(h.BytesRead), h.Reconnects)
	}
	for _, n := range s.NICs {
		w.printf("  nic %s bridge %s model %s -> %s", orDash(n.MAC), orDash(n.Bridge), orDash(n.Model), orDash(n.NewModel))
		if n.NewMAC != "" && !strings.EqualFold(n.NewMAC, n.MAC) {
			w.printf(" mac %s (%s)", n.NewMAC, n.MACFrom)
		}
		w.printf("\n")
	}
	if g.OS != nil {
		w.printf("\nGuest OS: %s %s %s\n", g.OS.Distro, g.OS.Version, g.OS.Arch)
		if g.OS.Kernel != "" {
			w.printf("  boots kernel %s (virtio: %v)\n", g.OS.Kernel, g.OS.Virtio)
		}
		for _, d := range g.OS.Details {
			w.printf("  %s\n", d)
		}
	}
	if len(g.Disks) > 0 {
		w.printf("\nDisks:\n")
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintf(tw, "  XEN\tKVM\tSOURCE\tVIRTUAL\tALLOCATED\tFORMAT\tEST. SIZE\tEST. COPY\n")
		for _, d := range g.Disks {
			src := d.Path
			if d.Source != d.Path && d.Source != "" {
				src = d.Source + " -> " + d.Path
			}
			fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Target, orDash(d.NewTarget), src,
				Bytes(d.VirtualSize), Bytes(d.Allocated), d.Format, Bytes(d.EstimatedSize), Seconds(d.EstimatedCopySeconds))
		}
		tw.Flush()
	}
	if len(g.Edits) > 0 {
		w.printf("\nEdits inside the guest:\n")
		for _, e := range g.Edits {
			w.printf("\n* /%s", e.Path)
			if e.Rule != "" {
				w.printf(" [%s]", e.Rule)
			}
			if e.Why != "" {
				w.printf(": %s", e.Why)
			}
			w.printf("\n%s", e.Diff)
			if e.Diff != "" && !strings.HasSuffix(e.Diff, "\n") {
				w.printf("\n")
			}
		}
	}
	if g.TargetXML != "" {
		w.printf("\nTarget KVM domain (libvirt XML):\n%s", g.TargetXML)
		if !strings.HasSuffix(g.TargetXML, "\n") {
			w.printf("\n")
		}
	}
	list := func(title string, items []string) {
		if len(items) == 0 {
			return
		}
		w.printf("\n%s:\n", title)
		for _, it := range items {
			w.printf("  - %s\n", it)
		}
	}
	list("Warnings", g.Warnings)
	list("Blockers", g.Blockers)
	list("Notes", g.Notes)
	if len(g.Validation) > 0 {
		w.printf("\nValidation of the output:\n")
		for _, c := range g.Validation {
			mark := "ok  "
			if !c.OK {
				mark = "FAIL"
			}
			w.printf("  %s %s", mark, c.Name)
			if c.Detail != "" {
				w.printf(": %s", c.Detail)
			}
			w.printf("\n")
		}
	}
	if wm := g.Warm; wm != nil && g.DryRun {
		w.printf("\nWarm migration planned (blocks of %s, hashed by %s):\n", Bytes(wm.BlockSize), wm.HashMethod)
		w.printf("  pass 1, guest running: would copy at most %s (%d blocks; blocks of zeros are not moved)", Bytes(wm.PlannedBytes), wm.Pass1.Blocks)
		if wm.Folder != "" {
			w.printf(" into %s", wm.Folder)
		}
		w.printf("\n")
		if wm.ShutdownBy == "xen2kvm" {
			w.printf("  then xen2kvm would stop the guest (xm shutdown -w) and pass 2 move the blocks that changed\n")
		} else {
			w.printf("  then xen2kvm would wait for the guest to stop and pass 2 move the blocks that changed\n")
		}
	} else if wm != nil {
		w.printf("\nWarm migration (blocks of %s, hashed by %s", Bytes(wm.BlockSize), wm.HashMethod)
		if wm.Hash != "" {
			w.printf(" with %s", strings.ToUpper(wm.Hash))
		}
		if wm.HashHelpers > 0 {
			w.printf(", %d at once a disk", wm.HashHelpers)
		}
		if wm.Resumed {
			w.printf(", resumed after pass 1")
		}
		w.printf("):\n")
		w.printf("  pass 1, guest running: %s moved in %s\n", Bytes(wm.Pass1.BytesRead), Seconds(wm.Pass1.Seconds))
		w.printf("  pass 2, guest stopped: %d of %d blocks changed (%d now zero), %s moved in %s\n",
			wm.Pass2.ChangedBlocks, wm.Pass2.Blocks, wm.Pass2.ZeroBlocks, Bytes(wm.Pass2.BytesRead), Seconds(wm.Pass2.Seconds))
		switch wm.ShutdownBy {
		case "xen2kvm":
			w.printf("  stopped by xen2kvm (xm shutdown -w)")
		case "user":
			w.printf("  stopped by the user")
		default:
			w.printf("  already stopped")
		}
		w.printf("; downtime %s (guest stopped to converted guest ready)\n", Seconds(wm.DowntimeSeconds))
		if wm.OutputFromPasses > 0 {
			w.printf("  output images of %d disks written by the passes, patched with %s of the conversion's changes\n", wm.OutputFromPasses, Bytes(wm.PatchedBytes))
		}
	}
	if b := g.Boot; b != nil {
		switch {
		case !b.Ran:
			w.printf("\nBoot check: skipped (%s)\n", b.Skipped)
		case b.OK:
			w.printf("\nBoot check: login prompt reached in %s (%s)\n", Seconds(b.Seconds), b.Accel)
		default:
			w.printf("\nBoot check: FAILED: %s\n", b.Detail)
		}
		writeBootText(w, b)
	}
	if d := g.Destination; d != nil {
		w.printf("\nDelivered to %s, pool %s (domain type %s)", d.URI, d.Pool, orDash(d.DomainType))
		switch {
		case d.Started:
			w.printf(", defined and started\n")
		case d.Defined:
			w.printf(", defined\n")
		default:
			w.printf(", not defined\n")
		}
		w.printf("  volumes: %s\n", strings.Join(d.Volumes, ", "))
		for _, v := range d.Shared {
			how := "reused"
			if v.Uploaded {
				how = "uploaded"
			}
			w.printf("  shared volume: %s (%s)\n", v.Name, how)
		}
		if len(d.Recovered) > 0 {
			w.printf("  replaced what an interrupted run left: %s\n", strings.Join(d.Recovered, ", "))
		}
		if len(d.Replaced) > 0 {
			w.printf("  replaced (--force): %s\n", strings.Join(d.Replaced, ", "))
		}
		if d.Placement != "" {
			w.printf("  %s\n", d.Placement)
		}
	}
	if len(g.Files) > 0 {
		w.printf("\nWritten to %s:\n", g.OutDir)
		for _, f := range g.Files {
			w.printf("  %s\n", f)
		}
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// writeBootText writes the first-boot details of a boot check.
func writeBootText(w *errWriter, b *Boot) {
	if !b.Ran {
		return
	}
	if b.Reboots > 0 {
		w.printf("  rebooted %s on its own before the login prompt\n", times(b.Reboots))
	}
	switch b.Shutdown {
	case "":
	case "powerdown", "exited":
		w.printf("  powered off cleanly after the ACPI power button\n")
	default:
		w.printf("  did NOT power off after the ACPI power button (stopped by %s): filesystems not cleanly unmounted\n", b.Shutdown)
	}
	if n := b.Network; n != nil {
		if n.OK {
			w.printf("  network: proven by %s: %s\n", n.Proof, n.Detail)
		} else {
			w.printf("  network: NOT proven: %s\n", n.Detail)
		}
		if n.Config != "" {
			w.printf("    guest configuration: %s\n", n.Config)
		}
	}
	if len(b.Findings) > 0 {
		w.printf("  console findings:\n")
		for _, f := range b.Findings {
			w.printf("    line %d at %s [%s]: %s\n", f.Line, Seconds(f.Seconds), f.Kind, f.Text)
		}
	}
	for _, warn := range b.Warnings {
		w.printf("  warning: %s\n", warn)
	}
	d := b.Drift
	if d == nil {
		return
	}
	w.printf("\nFirst-boot drift (/%s): %d files changed, %d flagged", strings.Join(d.Dirs, ", /"), len(d.Files), d.Flagged)
	if d.Allowed {
		w.printf(" (allowed)")
	}
	w.printf("\n")
	if d.Error != "" {
		w.printf("  error reading the drift: %s\n", d.Error)
	}
	for _, f := range d.Files {
		w.printf("\n* /%s (%s)", f.Path, f.Change)
		if f.Flag != "" {
			w.printf(" FLAGGED: %s", f.Flag)
		}
		w.printf("\n")
		if f.Diff != "" {
			w.printf("%s", f.Diff)
			if !strings.HasSuffix(f.Diff, "\n") {
				w.printf("\n")
			}
		}
	}
}

func times(n int) string {
	if n == 1 {
		return "once"
	}
	return fmt.Sprintf("%d times", n)
}

// WriteBoot writes a boot check's first-boot details as text: reboots,
// power-off, network proof, console findings, warnings and the drift as
// unified diffs (what WriteText shows under "Boot check").
func WriteBoot(w io.Writer, b *Boot) error {
	ew := &errWriter{w: w}
	writeBootText(ew, b)
	return ew.err
}
