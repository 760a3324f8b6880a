package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
)

func init() { register(newBatchCommand) }

func newBatchCommand() *cobra.Command {
	var (
		f                migrateFlags
		jobs, workers    int
		uploadsPerHost   int
		stateFile, logDr string
	)
	cmd := &cobra.Command{
		Use:   "batch MANIFEST",
		Short: "Migrate many Xen guests listed in a YAML manifest",
		Long: `Migrate the Xen guests a YAML manifest lists, several at once.

The manifest has optional defaults and a list of guests; every default
may be overridden per guest. Relative paths are relative to the
manifest's folder. Each guest is written to OUTPUT/NAME/ exactly as
xen2kvm migrate would write it. Unknown keys are errors that name their
line.

  defaults:
    output: /srv/kvm          # each guest goes to OUTPUT/NAME/
    format: qcow2             # qcow2 | raw
    disk_map:                 # path prefix rewrites, as --disk-map
      /var/lib/xen/images: /srv/import/images
    boot_check: true          # boot each result when QEMU is installed
  guests:
    - config: /srv/import/etc-xen/web01
    - config: /srv/import/etc-xen/db02
      format: raw
      output: /srv/kvm-db
    - config: /srv/import/etc-xen/old01   # only Xen kernels installed:
      kernel_rpm: rpms/kernel-2.6.18-419.el5.x86_64.rpm
    - config: ssh://root@xen01/app03      # straight off a Xen host
    - config: app04                       # = ssh://root@xen02/app04
      source_host: ssh://root@xen02
    - config: ssh://root@xen01/db05       # warm: copied while it runs,
      warm: true                          # then only what changed

A config may be ssh://[USER@]HOST[:PORT]/NAME, read off the Xen host as
xen2kvm migrate does; with source_host (usually in defaults) a config
without a / is a guest name on that host. The guests of one host share
one SSH connection. xen2kvm inspect ssh://HOST --manifest FILE writes a
manifest for every guest of a host.

warm: true (ssh:// guests only) migrates a guest warm, as xen2kvm
migrate --warm does; --shutdown-source, --shutdown-timeout and
--warm-hash apply to every warm guest; --host-zero-map applies to every
other ssh:// guest.

--jobs guests are migrated at the same time, and --workers bounds the
disk copy workers of all of them together. Of the guests delivered to
libvirt (to:), at most --uploads-per-host upload their disks to one host
at once (URIs naming one host share it); the others wait, planned, for a
slot. One guest's failure never
stops the others. Each guest logs to LOGDIR/NAME.log, and a state file
records how far each got: run the same batch again and the guests that
were migrated are skipped (as long as every file their report lists is
still there), while the failed or interrupted ones start again. A table of the results ends the run; the exit status is 1 when
any guest failed.

--dry-run plans every guest and writes nothing but the report.`,
		Example: `  # Migrate everything, two guests at a time:
  xen2kvm batch guests.yaml --jobs 2

  # Plan only, as one HTML page for the whole batch:
  xen2kvm batch guests.yaml --dry-run --report plan.html

  # The results as JSON, for scripts:
  xen2kvm batch guests.yaml --json > results.json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(); err != nil {
				return err
			}
			if jobs < 1 || workers < 1 || uploadsPerHost < 1 {
				return usagef("--jobs, --workers and --uploads-per-host must be at least 1")
			}
			m, err := pipeline.LoadManifest(args[0])
			if err != nil {
				return err
			}
			con := newConsole(cmd.ErrOrStderr())
			res, err := pipeline.RunBatch(cmd.Context(), m, pipeline.BatchOptions{
				RunOptions: f.remote(cmd, f.runOptions(workers, con)),
				Jobs:       jobs, UploadsPerHost: uploadsPerHost, StateFile: stateFile, LogDir: logDr, Warm: f.warmOptions(con),
			})
			con.done()
			if res == nil {
				return err
			}
			out := cmd.OutOrStdout()
			var werr error
			switch {
			case f.json:
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				werr = enc.Encode(res)
			default:
				if f.dryRun {
					werr = report.WriteText(out, reports(res)...)
					fmt.Fprintln(out)
				}
				printTable(out, res)
			}
			if f.report != "" && werr == nil {
				rf := f
				rf.json = false
				werr = writeReports(io.Discard, rf, true, reports(res)...)
			}
			if err == nil {
				err = werr
			}
			if errors.Is(err, pipeline.ErrBatchFailed) {
				return withHint(err, "each failed guest's log is listed above; fix them and run the same batch again: migrated guests are skipped")
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.IntVarP(&jobs, "jobs", "j", 2, "migrate `N` guests at the same time")
	fl.IntVar(&workers, "workers", 4, "copy workers shared by all guests")
	fl.IntVar(&uploadsPerHost, "uploads-per-host", 2, "at most `N` guests upload their disks to one libvirt host (to:) at once")
	fl.StringVar(&stateFile, "state", "", "state `FILE` for resuming (default: MANIFEST.state.json beside the manifest)")
	fl.StringVar(&logDr, "log-dir", "", "one log per guest in `DIR` (default: MANIFEST.logs beside the manifest)")
	f.add(cmd)
	return cmd
}

func reports(res *pipeline.BatchResult) []*report.Guest {
	var out []*report.Guest
	for _, g := range res.Guests {
		if g.Report != nil {
			out = append(out, g.Report)
		}
	}
	return out
}

// printTable prints the batch's summary: one line per guest.
func printTable(w io.Writer, res *pipeline.BatchResult) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GUEST\tSTATUS\tTIME\tOUTPUT / REASON")
	for _, g := range res.Guests {
		detail := g.OutDir
		if g.Error != "" {
			detail = g.Error
			if g.Log != "" {
				detail += " (log: " + g.Log + ")"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", g.Name, g.Status, report.Seconds(g.Seconds), detail)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d guest(s), %d failed\n", len(res.Guests), res.Failed)
}
