package main

import (
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/internal/atomicfile"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/xenhost"
)

func init() { register(newInspectCommand) }

func newInspectCommand() *cobra.Command {
	var (
		asJSON    bool
		format    string
		diskMaps  []string
		passwords bool
		ssh       sshFlags
		manifest  string
		mOutput   string
	)
	cmd := &cobra.Command{
		Use:   "inspect CONFIG|ssh://[USER@]HOST[:PORT][/NAME]...",
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
if/else) are refused with the file, line and column of the construct.

CONFIG may also be ssh://[USER@]HOST[:PORT]/NAME, a guest on a Xen host,
or ssh://[USER@]HOST[:PORT], every guest on it. The config then comes
from the Xen toolstack on the host (xm list -l for guests xend manages,
xm create --dryrun for config files under /etc/xen, which also runs the
Python of configs that compute their settings; the file itself over
SFTP when xm cannot help), and the summary adds whether the guest runs,
where its config came from and its disks' sizes; the inside of guests
that are not running is inspected over SFTP, read-only. Nothing on the
host is written, and nothing runs there but those xm queries.
--manifest FILE writes a batch manifest for the host's guests.

SSH uses the keys --identity names (default ~/.ssh/id_*) and the
ssh-agent, or asks for a password when run from a terminal. Host keys
are checked against ~/.ssh/known_hosts: an unknown host is refused with
its key's fingerprint unless --accept-new-host-key. The old algorithms
RHEL 5's OpenSSH 4.3 needs are used only with hosts that offer nothing
newer, with a warning naming them.`,
		Example: `  # What does this guest look like?
  xen2kvm inspect /etc/xen/web01

  # All guests of a host, as JSON, with the images copied to /srv/import:
  xen2kvm inspect --json --disk-map /var/lib/xen/images=/srv/import/images /srv/import/etc-xen/*

  # A domain as xend stores it:
  xen2kvm inspect --format sxp /var/lib/xend/domains/*/config.sxp

  # Every guest of a Xen host, and a batch manifest to migrate them:
  xen2kvm inspect ssh://root@xen01 --manifest xen01.yaml

  # One guest on the host, as JSON:
  xen2kvm inspect --json ssh://root@xen01/web01`,
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
			if err := ssh.check(); err != nil {
				return err
			}
			maps, err := parseDiskMaps(diskMaps)
			if err != nil {
				return err
			}
			if manifest != "" {
				if len(args) != 1 || !xenhost.IsURL(args[0]) {
					return usagef("--manifest needs one ssh://[USER@]HOST[:PORT] to list the guests of")
				}
			}
			results, err := pipeline.Inspect(cmd.Context(), args, pipeline.InspectOptions{Stdin: cmd.InOrStdin(), Parse: opts, DiskMap: maps, SSH: ssh.options(cmd)})
			if manifest != "" {
				// The guests whose config was read go into the manifest,
				// even when others could not be read.
				data, merr := pipeline.HostManifest(args[0], results, mOutput)
				if merr == nil {
					merr = atomicfile.WriteFile(manifest, data, 0o644)
				}
				if merr == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "xen2kvm: wrote %s; migrate the guests with: xen2kvm batch %s\n", manifest, manifest)
				} else if err == nil {
					err = fmt.Errorf("writing manifest %s: %w", manifest, merr)
				}
			}
			if !passwords {
				for _, r := range results {
					report.RedactPasswords(r.Domain)
				}
			}
			if len(results) == 1 && results[0].Domain == nil && err != nil {
				return err // nothing else to show
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
	fl.StringVar(&manifest, "manifest", "", "with ssh://HOST: write a batch manifest migrating the host's guests to `FILE`")
	fl.StringVar(&mOutput, "manifest-output", "kvm", "the manifest's output folder, `DIR` (relative to the manifest)")
	ssh.add(cmd)
	return cmd
}
