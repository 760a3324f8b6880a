package report

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
)

// Inspection is one config as xen2kvm inspect shows it: the domain model
// (its JSON fields at the top level) and what was found inside the
// guest's disks, or the error reading the config.
type Inspection struct {
	*config.Domain
	File  string          `json:"file,omitempty"`  // only with Error
	Error string          `json:"error,omitempty"` // the config could not be read
	Guest *InspectedGuest `json:"guest,omitempty"` // nil when no disk of the guest exists here
	// Host is where the guest is, for a guest read off a Xen host over
	// SSH.
	Host *HostGuest `json:"host,omitempty"`
}

// HostGuest is a guest as its Xen host sees it.
type HostGuest struct {
	URL        string `json:"url"`                   // ssh://root@xen01/web01
	Running    bool   `json:"running"`               // xm list shows it with a domain ID
	State      string `json:"state,omitempty"`       // xm's state flags
	ConfigFrom string `json:"config_from,omitempty"` // xm list -l NAME | xm create --dryrun FILE | sftp FILE
	// Disks are the sizes of the guest's disks on the host.
	Disks []HostDisk `json:"disks,omitempty"`
}

// HostDisk is one disk of a guest on its Xen host.
type HostDisk struct {
	Target string `json:"target"`
	Path   string `json:"path"`
	Size   int64  `json:"size"` // bytes; 0 when it could not be read
	Error  string `json:"error,omitempty"`
}

// InspectedGuest is what inspection found inside a guest whose disks
// exist.
type InspectedGuest struct {
	Filesystems []InspectedFilesystem `json:"filesystems"`
	OS          *convert.Guest        `json:"os,omitempty"`
	// Windows is what Windows inspection found on an NTFS system volume.
	Windows  *InspectedWindows `json:"windows,omitempty"`
	Warnings []string          `json:"warnings,omitempty"`
}

// InspectedWindows is a Windows system volume and what its registry says.
type InspectedWindows struct {
	Volume string `json:"volume"` // hda1
	*convert.Windows
	// Details are the findings as lines for people.
	Details []string `json:"details,omitempty"`
}

// InspectedFilesystem is one filesystem found on a guest's disks.
type InspectedFilesystem struct {
	Devices    []string `json:"devices"`
	Type       string   `json:"type"`
	Label      string   `json:"label,omitempty"`
	UUID       string   `json:"uuid,omitempty"`
	MountPoint string   `json:"mount_point,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// Redacted replaces a password in an inspection.
const Redacted = "(redacted)"

// RedactPasswords hides the passwords of a domain (VNC, and unknown
// settings named like one): inspect output is pasted into tickets and
// chats.
func RedactPasswords(d *config.Domain) {
	if d == nil {
		return
	}
	for i := range d.Graphics {
		if d.Graphics[i].Password != "" {
			d.Graphics[i].Password = Redacted
		}
	}
	for i, u := range d.Unknown {
		if config.IsSecretKey(u.Key) && u.Value != "" {
			d.Unknown[i].Value = Redacted
		}
	}
}

// WriteInspectionsText writes the human summary of each inspection, a
// blank line between them.
func WriteInspectionsText(w io.Writer, results ...Inspection) error {
	ew := &errWriter{w: w}
	for i, r := range results {
		if i > 0 {
			fmt.Fprintln(ew)
		}
		writeInspection(ew, r)
	}
	return ew.err
}

// WriteInspectionsJSON writes one JSON object for one inspection, an array
// for several.
func WriteInspectionsJSON(w io.Writer, results ...Inspection) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if len(results) == 1 {
		return enc.Encode(results[0])
	}
	return enc.Encode(results)
}

// writeInspection prints the human summary of one config.
func writeInspection(w io.Writer, r Inspection) {
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
	if h := r.Host; h != nil {
		state := "off"
		if h.Running {
			state = "running (" + h.State + ")"
		}
		row("host", h.URL+", "+state)
		row("config from", orDash(h.ConfigFrom))
	}
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

	var disks [][]string
	for _, disk := range d.Disks {
		src := disk.Source
		switch {
		case src == "":
			src = "(empty drive)"
		case disk.Exists != nil && !*disk.Exists:
			src += "  (missing)"
		}
		if r.Host != nil {
			for _, hd := range r.Host.Disks {
				if hd.Target == disk.Target && hd.Error != "" {
					src += "  (" + hd.Error + ")"
				} else if hd.Target == disk.Target {
					src += fmt.Sprintf("  (%s)", Bytes(hd.Size))
				}
			}
		}
		disks = append(disks, []string{disk.Target, disk.Device, disk.Mode, orDash(disk.Backend), src})
	}
	writeList(w, "disks", disks)

	var nics [][]string
	for _, n := range d.NICs {
		mac := n.MAC
		if mac == "" {
			mac = "(random MAC)"
		}
		model := n.Model
		if model == "" && (n.Type == "netfront" || n.Type == "vif" || d.Type == config.PV) {
			model = "netfront"
		}
		nics = append(nics, []string{mac, "bridge " + orDash(n.Bridge), "model " + orDash(model), "script " + orDash(n.Script)})
	}
	writeList(w, "nics", nics)

	if r.Guest != nil {
		fmt.Fprintf(w, "  guest:\n")
		r.Guest.writeText(w)
	}
	if len(d.Warnings) > 0 {
		fmt.Fprintf(w, "  warnings:\n")
		for _, warn := range d.Warnings {
			fmt.Fprintf(w, "    - %s\n", warn)
		}
	}
}

// writeList prints a heading and its rows under it, their columns
// aligned, or "none" when there are no rows.
func writeList(w io.Writer, heading string, rows [][]string) {
	fmt.Fprintf(w, "  %s:\n", heading)
	if len(rows) == 0 {
		fmt.Fprintf(w, "    none\n")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintf(tw, "    %s\n", strings.Join(r, "\t"))
	}
	tw.Flush()
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
	case Redacted:
		s += ", password set"
	default:
		s += ", password " + strconv.Quote(g.Password)
	}
	if g.Keymap != "" {
		s += ", keymap " + g.Keymap
	}
	return s
}

// writeText prints the guest section of an inspection.
func (r *InspectedGuest) writeText(w io.Writer) {
	var b strings.Builder
	if win := r.Windows; win != nil {
		fmt.Fprintf(&b, "    os:          %s\n", win.Product())
		for _, d := range win.Details {
			fmt.Fprintf(&b, "    windows:     %s\n", d)
		}
	}
	if o := r.OS; o != nil {
		fmt.Fprintf(&b, "    os:          %s (%s %d.%d, %s)\n", o.Product, o.Distro, o.Major, o.Minor, o.Arch)
		for _, k := range o.Kernels {
			var tags []string
			if k.Xen {
				tags = append(tags, "xen")
			}
			if k.Virtio() {
				tags = append(tags, "virtio")
			}
			if k.InitrdFlavour != "" {
				tags = append(tags, string(k.InitrdFlavour)+" initrd")
			}
			fmt.Fprintf(&b, "    kernel:      %s (%s) %s\n", k.Release, k.Package, strings.Join(tags, ", "))
		}
		if o.Grub != nil {
			fmt.Fprintf(&b, "    bootloader:  grub legacy, %s\n", o.Grub.Path)
		}
		for _, warn := range o.Warnings {
			fmt.Fprintf(&b, "    warning:     %s\n", warn)
		}
	}
	for _, f := range r.Filesystems {
		line := fmt.Sprintf("    filesystem:  %s %s", strings.Join(f.Devices, " "), f.Type)
		if f.Label != "" {
			line += " label=" + f.Label
		}
		if f.MountPoint != "" {
			line += " on " + f.MountPoint
		}
		if f.Error != "" {
			line += " (" + f.Error + ")"
		}
		b.WriteString(line + "\n")
	}
	for _, warn := range r.Warnings {
		fmt.Fprintf(&b, "    warning:     %s\n", warn)
	}
	io.WriteString(w, b.String())
}
