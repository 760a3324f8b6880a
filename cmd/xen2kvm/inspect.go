package main

import (
	"strconv"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
)

func init() { register(newInspectCommand) }

func newInspectCommand() *cobra.Command {
	var (
		asJSON    bool
		format    string
		diskMaps  []string
		passwords bool
	)
	cmd := &cobra.Command{
		Use:   "inspect CONFIG...",
		Short: "Show what Xen guest configs describe",
		Long: `Show what one or more Xen guest configs describe.

CONFIG is an xm file from /etc/xen (Python-literal syntax), an xl.cfg, an
SXP as xend stores it or 'xm list -l' prints it, or libvirt domain XML of
type xen; "-" reads one from standard input. The format is detected from
the content; --format forces one.

The summary lists the guest's type (PV or HVM), memory, vcpus, boot
settings, disks and network interfaces, then warnings: settings read
twice, settings xen2kvm does not know (kept, not dropped), disk images
that do not exist here. VNC passwords are shown only with --show-passwords. A missing disk is reported, not an error; when
the images sit elsewhere than on the Xen host, --disk-map OLD=NEW says
where to look.

xm files that compute values with real Python (variables, % formatting,
if/else) are refused with the file, line and column of the construct.`,
		Example: `  # What does this guest look like?
  xen2kvm inspect /etc/xen/web01

  # All guests of a host, as JSON, with the images copied to /srv/import:
  xen2kvm inspect --json --disk-map /var/lib/xen/images=/srv/import/images /srv/import/etc-xen/*

  # A domain as xend stores it:
  xen2kvm inspect --format sxp /var/lib/xend/domains/*/config.sxp

  # A running domain, straight from the Xen host:
  ssh xenhost xm list -l web01 | xen2kvm inspect -`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []config.Option
			if format != "" {
				f, err := config.ParseFormat(format)
				if err != nil {
					return usagef("--format %q: want xm, xl, sxp or libvirt", format)
				}
				opts = append(opts, config.WithFormat(f))
			}
			maps, err := parseDiskMaps(diskMaps)
			if err != nil {
				return err
			}
			results, err := pipeline.Inspect(cmd.Context(), args, pipeline.InspectOptions{Stdin: cmd.InOrStdin(), Parse: opts, DiskMap: maps})
			if !passwords {
				for _, r := range results {
					report.RedactPasswords(r.Domain)
				}
			}
			if len(args) == 1 && err != nil {
				return err
			}
			if asJSON {
				if werr := report.WriteInspectionsJSON(cmd.OutOrStdout(), results...); werr != nil {
					return werr
				}
			} else if werr := report.WriteInspectionsText(cmd.OutOrStdout(), results...); werr != nil {
				return werr
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print one JSON object per config (an array for several)")
	fl.StringVar(&format, "format", "", "read the configs as `FORMAT`: xm, xl, sxp or libvirt (default: detect)")
	fl.BoolVar(&passwords, "show-passwords", false, "print VNC passwords instead of "+strconv.Quote(report.Redacted))
	fl.StringArrayVar(&diskMaps, "disk-map", nil, "look for disk paths starting with `OLD=NEW` prefix OLD under NEW instead (repeatable)")
	return cmd
}
