package main

import (
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/report"
)

// destFlags are migrate's flags for delivering to libvirt.
type destFlags struct {
	to, pool string
	start    bool
}

func (f *destFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.to, "to", "", "deliver to libvirt at `URI` (qemu:///system, qemu+ssh://root@kvm01/system): disks become volumes of --pool and the domain is defined there; OUTDIR (default .) gets the report")
	fl.StringVar(&f.pool, "pool", "default", "storage pool on --to that receives the disks")
	fl.BoolVar(&f.start, "start", false, "start the domain on --to once it is defined")
}

func (f *destFlags) check() error {
	if f.to == "" && (f.start || f.pool != "default") {
		return usagef("--pool and --start need --to URI")
	}
	return nil
}

// printDelivered is the summary of a guest delivered to libvirt.
func printDelivered(w io.Writer, g *report.Guest) {
	d := g.Destination
	fmt.Fprintf(w, "Migrated %s to %s (pool %s, domain type %s) in %s\n", g.Name, d.URI, d.Pool, d.DomainType,
		report.Seconds(g.Finished.Sub(g.Started).Seconds()))
	for _, disk := range g.Disks {
		fmt.Fprintf(w, "  %s -> volume %s (%s)\n", disk.Target, disk.Output, disk.Format)
	}
	// The boot on the destination records no first-boot proof, so
	// printChecked prints none here.
	printChecked(w, g, "boot check on the destination")
	if d.Started {
		fmt.Fprintf(w, "  started: virsh -c %s console %s\n", d.URI, g.Name)
	} else {
		fmt.Fprintf(w, "  start it: virsh -c %s start %s\n", d.URI, g.Name)
	}
	fmt.Fprintf(w, "  report: %s\n", filepath.Join(g.OutDir, g.Name+".report.json"))
}
