package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/xen2kvm/xen2kvm/config"
)

func init() { register(newInspectCommand) }

// inspectGuest looks inside a guest's disks (distribution, kernels,
// boot loader, drivers) for `inspect`. It is the extension point for
// guest inspection: nil until a package that can read guest disks sets
// it, typically from an init function in its own file of this command.
// It gets the parsed domain with Disk.Exists filled in and the --disk-map
// rewrites; what it returns is printed under "guest" (JSON) or as a
// "guest:" section (text, through fmt.Sprint unless it implements
// textReporter). An error is reported as a warning of that config.
var inspectGuest func(ctx context.Context, d *config.Domain, maps []config.PathMap) (any, error)

// textReporter is implemented by guest inspection results that print
// themselves in the human form of inspect.
type textReporter interface {
	WriteText(w io.Writer) error
}

// inspectResult is one config in the output of inspect: the domain model
// (its JSON fields at the top level), or the error reading it.
type inspectResult struct {
	*config.Domain
	File  string `json:"file,omitempty"`  // only with Error
	Error string `json:"error,omitempty"` // the config could not be read
	Guest any    `json:"guest,omitempty"` // from inspectGuest
}

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
		Args: wrapArgs(cobra.MinimumNArgs(1)),
		RunE: func(cmd *cobra.Command, args []string) error {
			var opts []config.Option
			if format != "" {
				f, err := config.ParseFormat(format)
				if err != nil {
					return usagef("--format %q: want xm, xl, sxp or libvirt", format)
				}
				opts = append(opts, config.WithFormat(f))
			}
			var maps []config.PathMap
			for _, v := range diskMaps {
				m, err := config.ParsePathMap(v)
				if err != nil {
					return usagef("--disk-map: %v", err)
				}
				maps = append(maps, m)
			}
			results, err := inspectConfigs(cmd.Context(), cmd.InOrStdin(), args, opts, maps)
			if !passwords {
				for _, r := range results {
					redactPasswords(r.Domain)
				}
			}
			if len(args) == 1 && err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				if werr := writeInspectJSON(out, results); werr != nil {
					return werr
				}
			} else {
				for i, r := range results {
					if i > 0 {
						fmt.Fprintln(out)
					}
					writeInspectText(out, r)
				}
			}
			return err
		},
	}
	fl := cmd.Flags()
	fl.BoolVar(&asJSON, "json", false, "print one JSON object per config (an array for several)")
	fl.StringVar(&format, "format", "", "read the configs as `FORMAT`: xm, xl, sxp or libvirt (default: detect)")
	fl.BoolVar(&passwords, "show-passwords", false, "print VNC passwords instead of "+strconv.Quote(redacted))
	fl.StringArrayVar(&diskMaps, "disk-map", nil, "look for disk paths starting with `OLD=NEW` prefix OLD under NEW instead (repeatable)")
	return cmd
}

// redacted replaces a password in inspect's output.
const redacted = "(redacted)"

// redactPasswords hides the passwords of a domain (VNC, and unknown
// settings named like one): inspect output is
// pasted into tickets and chats.
func redactPasswords(d *config.Domain) {
	if d == nil {
		return
	}
	for i := range d.Graphics {
		if d.Graphics[i].Password != "" {
			d.Graphics[i].Password = redacted
		}
	}
	for i, u := range d.Unknown {
		if config.IsSecretKey(u.Key) && u.Value != "" {
			d.Unknown[i].Value = redacted
		}
	}
}

// inspectConfigs reads every config. Configs that cannot be read are kept
// as results with their error; the returned error says how many failed.
func inspectConfigs(ctx context.Context, stdin io.Reader, paths []string, opts []config.Option, maps []config.PathMap) ([]inspectResult, error) {
	var (
		results []inspectResult
		errs    []error
	)
	for _, p := range paths {
		var (
			d   *config.Domain
			err error
		)
		if p == "-" {
			var data []byte
			data, err = io.ReadAll(io.LimitReader(stdin, config.MaxConfigSize+1))
			if err == nil {
				d, err = config.Parse(data, "<stdin>", opts...)
			}
		} else {
			d, err = config.ParseFile(p, opts...)
		}
		if err != nil {
			errs = append(errs, err)
			results = append(results, inspectResult{File: p, Error: err.Error()})
			continue
		}
		d.CheckDisks(maps)
		if err := d.CheckName(); err != nil && d.Name != "" {
			d.Warnings = append(d.Warnings, fmt.Sprintf("%v: migrate and batch refuse this guest", err))
		}
		r := inspectResult{Domain: d}
		if inspectGuest != nil {
			g, err := inspectGuest(ctx, d, maps)
			if err != nil {
				d.Warnings = append(d.Warnings, fmt.Sprintf("guest inspection: %v", err))
			}
			r.Guest = g
		}
		results = append(results, r)
	}
	switch {
	case len(errs) == 1 && len(paths) == 1:
		return results, errs[0]
	case len(errs) > 0:
		return results, fmt.Errorf("%d of %d configs could not be read: %w", len(errs), len(paths), errors.Join(errs...))
	}
	return results, nil
}

func writeInspectJSON(w io.Writer, results []inspectResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(results) == 1 {
		return enc.Encode(results[0])
	}
	return enc.Encode(results)
}

// writeInspectText prints the human summary of one config.
func writeInspectText(w io.Writer, r inspectResult) {
	if r.Domain == nil {
		fmt.Fprintf(w, "%s\n  error: %s\n", r.File, r.Error)
		return
	}
	d := r.Domain
	name := orDash(d.Name)
	if config.CheckName(d.Name) != nil && d.Name != "" {
		name = strconv.QuoteToASCII(d.Name) // no control bytes to the terminal
	}
	fmt.Fprintf(w, "%s (%s, %s)\n", name, d.Source.File, d.Source.Format)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, v string) { fmt.Fprintf(tw, "  %s:\t%s\n", k, v) }
	row("uuid", orDash(d.UUID))
	row("type", typeSummary(d))
	mem := fmt.Sprintf("%d MiB", d.MemoryMiB)
	if d.MaxMemoryMiB != d.MemoryMiB {
		mem += fmt.Sprintf(" (max %d MiB)", d.MaxMemoryMiB)
	}
	row("memory", mem)
	vcpus := strconv.Itoa(d.VCPUs)
	if d.MaxVCPUs != d.VCPUs {
		vcpus += fmt.Sprintf(" (max %d)", d.MaxVCPUs)
	}
	if d.CPUs != "" {
		vcpus += ", pinned to " + d.CPUs
	}
	row("vcpus", vcpus)
	for _, g := range d.Graphics {
		row("graphics", graphicsSummary(g))
	}
	if len(d.Serial) > 0 {
		var s []string
		for _, c := range d.Serial {
			s = append(s, c.Raw)
		}
		row("serial", strings.Join(s, ", "))
	}
	if len(d.PCI) > 0 {
		row("pci passthrough", strings.Join(d.PCI, ", "))
	}
	tw.Flush()

	fmt.Fprintf(w, "  disks:\n")
	if len(d.Disks) == 0 {
		fmt.Fprintf(w, "    none\n")
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, disk := range d.Disks {
		src := disk.Source
		switch {
		case src == "":
			src = "(empty drive)"
		case disk.Exists != nil && !*disk.Exists:
			src += "  (missing)"
		}
		fmt.Fprintf(tw, "    %s\t%s\t%s\t%s\t%s\n", disk.Target, disk.Device, disk.Mode, orDash(disk.Backend), src)
	}
	tw.Flush()

	fmt.Fprintf(w, "  nics:\n")
	if len(d.NICs) == 0 {
		fmt.Fprintf(w, "    none\n")
	}
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, n := range d.NICs {
		mac := n.MAC
		if mac == "" {
			mac = "(random MAC)"
		}
		model := n.Model
		if model == "" && (n.Type == "netfront" || n.Type == "vif" || d.Type == config.PV) {
			model = "netfront"
		}
		fmt.Fprintf(tw, "    %s\tbridge %s\tmodel %s\tscript %s\n", mac, orDash(n.Bridge), orDash(model), orDash(n.Script))
	}
	tw.Flush()

	if r.Guest != nil {
		fmt.Fprintf(w, "  guest:\n")
		if tr, ok := r.Guest.(textReporter); ok {
			if err := tr.WriteText(w); err != nil {
				fmt.Fprintf(w, "    (%v)\n", err)
			}
		} else {
			fmt.Fprintf(w, "    %v\n", r.Guest)
		}
	}
	if len(d.Warnings) > 0 {
		fmt.Fprintf(w, "  warnings:\n")
		for _, warn := range d.Warnings {
			fmt.Fprintf(w, "    - %s\n", warn)
		}
	}
}

func typeSummary(d *config.Domain) string {
	if d.Type == config.HVM {
		s := "HVM"
		if d.Loader != "" {
			s += ", loader " + d.Loader
		}
		if d.Kernel != "" {
			s += ", kernel " + d.Kernel
		}
		boot := d.Boot
		if boot == "" {
			boot = "c"
		}
		return s + ", boot " + boot
	}
	s := "PV"
	switch {
	case d.Bootloader != "":
		s += ", bootloader " + d.Bootloader
		if d.BootloaderArgs != "" {
			s += " " + d.BootloaderArgs
		}
	case d.Kernel != "":
		s += ", kernel " + d.Kernel
		if d.Ramdisk != "" {
			s += ", ramdisk " + d.Ramdisk
		}
	}
	if c := d.Cmdline(); c != "" {
		s += ", cmdline " + strconv.Quote(c)
	}
	return s
}

func graphicsSummary(g config.Graphics) string {
	s := g.Type
	if g.Type != "vnc" {
		if g.DisplayV != "" {
			s += ", DISPLAY " + g.DisplayV
		}
		return s
	}
	switch {
	case g.Port != nil:
		s += ", port " + strconv.Itoa(*g.Port)
	case g.Display != nil && !g.AutoPort:
		s += fmt.Sprintf(", port %d", 5900+*g.Display)
	default:
		s += ", port auto"
	}
	if g.Listen != "" {
		s += ", listen " + g.Listen
	}
	switch g.Password {
	case "":
	case redacted:
		s += ", password set"
	default:
		s += ", password " + strconv.Quote(g.Password)
	}
	if g.Keymap != "" {
		s += ", keymap " + g.Keymap
	}
	return s
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
