package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/report"
	"github.com/xen2kvm/xen2kvm/virtiowin"
)

// winDisks names the disks for convert.FindWindows.
func winDisks(disks []namedDisk) []convert.NamedDevice {
	var out []convert.NamedDevice
	for _, d := range disks {
		out = append(out, convert.NamedDevice{Name: d.name, Dev: d.dev})
	}
	return out
}

// windowsPlan inspects a Windows HVM guest and plans its registry edits.
// It returns nil when no Windows system volume is found.
func windowsPlan(disks []namedDisk, d *config.Domain, o planOptions) (*conversion, []string, error) {
	wv, warnings, err := convert.FindWindows(winDisks(disks))
	if err != nil || wv == nil {
		return nil, warnings, err
	}
	disabled := map[string]bool{}
	var bad []error
	for _, r := range o.Skip {
		if !slices.ContainsFunc(convert.Rules(), func(k convert.Rule) bool { return k.Name == r }) {
			bad = append(bad, fmt.Errorf("%w %q (Windows rules: %s)", convert.ErrUnknownRule, r, strings.Join(convert.WindowsRules(), ", ")))
		}
		disabled[r] = true
	}
	if err := errors.Join(bad...); err != nil {
		return nil, warnings, err
	}
	w := wv.Windows
	opts := convert.WindowsOptions{Disabled: disabled, Viostor: o.VirtioWin != ""}
	c := &conversion{OSName: "windows", Warnings: warnings, windows: w, windowsOpts: opts}
	c.OS = &report.OS{Distro: "windows", Version: w.Release(), Arch: w.Arch, Details: wv.Details(), Windows: w}
	c.Blockers = w.Blockers()
	if d.Type != config.HVM {
		c.Blockers = append(c.Blockers, fmt.Sprintf("PV guest %s holds Windows: only HVM Windows guests are converted", d.Name))
	}
	if len(c.Blockers) > 0 {
		return c, warnings, nil
	}
	edits, err := convert.PlanWindows(w, wv.Volume, opts)
	if err != nil {
		return nil, warnings, fmt.Errorf("planning the registry edits on %s: %w", wv.Name, err)
	}
	hivePath := w.HivePath("SYSTEM")
	byRule := map[string]*report.Edit{}
	var order []string
	for _, e := range edits {
		re := byRule[e.Rule]
		if re == nil {
			re = &report.Edit{Path: hivePath, Rule: e.Rule, Why: ruleWhy(e)}
			byRule[e.Rule] = re
			order = append(order, e.Rule)
		}
		re.Diff += e.String() + "\n"
	}
	for _, r := range order {
		c.Edits = append(c.Edits, *byRule[r])
	}
	c.Notes = append(c.Notes,
		fmt.Sprintf("Windows on %s: %d registry value(s) changed or added in place in the SYSTEM hive (same size, same clusters; NTFS metadata untouched)", wv.Name, len(edits)),
		"the KVM guest keeps IDE disks and an emulated network card ("+nicModels(d)+"), so Windows boots with the drivers it already has",
	)
	if len(edits) == 0 {
		c.Notes = append(c.Notes, "no registry change was needed")
	}
	dev, vol := wv.Dev, wv.Volume
	c.apply = func() error { return convert.ApplyWindows(w, vol, dev, edits, opts) }
	if o.VirtioWin != "" {
		if err := planVirtioWin(c, wv, o.VirtioWin, d.Name, o.To); err != nil {
			return nil, warnings, err
		}
	} else {
		c.Notes = append(c.Notes, "next step, to move to virtio: migrate with --virtio-win PATH, which stages the drivers and prepares the registry for viostor (then follow its notes); by hand instead, install viostor and netkvm in the guest, boot it once with a small extra virtio disk so that Windows binds viostor, and only then switch the system disk to virtio (libvirt <target dev='vda' bus='virtio'/>) and the NIC model to virtio")
	}
	return c, warnings, nil
}

// virtioWinPlan is the virtio-win staging of a Windows guest.
type virtioWinPlan struct {
	src     *virtiowin.Source
	drivers *virtiowin.Drivers
	// disk is the first-boot disk's file name in OUTDIR (its volume's
	// name with --to) and diskTarget its drive, set with the KVM domain.
	disk, diskTarget string
	// cd is the target of the CD-ROM drive holding the ISO; cdReused: it
	// was the Xen config's empty drive.
	cd       string
	cdReused bool
	// isoVol is the ISO's shared volume with --to (see isoVolume).
	isoVol string
}

// planVirtioWin checks the virtio-win set has the guest's drivers and
// plans the RunOnce value that starts the first-boot script. to is the
// libvirt URI the guest is delivered to ("" for OUTDIR), for the notes'
// virsh commands.
func planVirtioWin(c *conversion, wv *convert.WindowsVolume, path, name, to string) error {
	w := wv.Windows
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	src, err := virtiowin.Open(path)
	if err != nil {
		return err
	}
	drivers, err := src.Drivers(w.Version, w.Arch)
	if err != nil {
		src.Close()
		return err
	}
	c.virtioWin = &virtioWinPlan{src: src, drivers: drivers}
	prev := c.close
	c.close = func() error {
		err := src.Close()
		if prev != nil {
			err = errors.Join(prev(), err)
		}
		return err
	}
	e, err := convert.PlanRunOnce(w, wv.Volume, virtiowin.RunOnceName, virtiowin.RunOnceCommand)
	if err != nil {
		return fmt.Errorf("registering the virtio-win first-boot script: %w", err)
	}
	c.Edits = append(c.Edits, report.Edit{Path: w.HivePath("SOFTWARE"), Rule: e.Rule, Why: e.Why, Diff: e.String() + "\n"})
	how := "the virtio-win ISO is attached as a CD-ROM"
	if !src.ISO {
		how = "the drivers are copied onto the first-boot disk"
	}
	if src.Path != path {
		// The virtio-win RPM's folder: its ISO or its drivers/ tree.
		how = "using " + src.Path + ": " + how
	}
	virsh := "virsh"
	if to != "" {
		virsh = "virsh -c " + to
	}
	c.Notes = append(c.Notes,
		fmt.Sprintf("virtio-win (%s): %s; a small FAT disk (label %s) holds %s, which installs %s and %s at the first administrator logon (RunOnce), logging to %%SystemRoot%%\\xen2kvm-virtio.log",
			path, how, virtiowin.Label, virtiowin.ScriptPath, drivers.Viostor, drivers.NetKVM),
		"virtio-win install method: "+drivers.Method(),
		"the first-boot script runs at the next interactive logon of an administrator (console or Remote Desktop; RunOnce runs at logon, not at boot); xen2kvm sets no autologon (it would need an administrator's password in the registry in clear text), so until someone logs on nothing is installed and the guest stays on IDE",
		fmt.Sprintf("switching to virtio: when %%SystemRoot%%\\xen2kvm-virtio.log says \"viostor is boot-start: the system disk can be switched to virtio\", shut Windows down and define %s-virtio.xml (written beside %s.xml: the same domain with its disks on virtio, vda..., its NICs virtio, without the virtio-win CD-ROM and the first-boot disk): %s define %s-virtio.xml, then %s start %s; by hand, in %s.xml change each guest disk's <target dev='hdX' bus='ide'/> to <target dev='vdX' bus='virtio'/> (dropping its <address type='drive'/>), set <model type='virtio'/> on each interface, and remove the two disks xen2kvm added. If the log says ERROR instead, keep IDE. Windows sees the virtio NIC as a new adapter: a static IP configuration must be entered again", name, name, virsh, name, virsh, name, name))
	dev, vol, apply := wv.Dev, wv.Volume, c.apply
	c.apply = func() error {
		if err := apply(); err != nil {
			return err
		}
		return convert.ApplyRunOnce(w, vol, dev, virtiowin.RunOnceName, virtiowin.RunOnceCommand)
	}
	return nil
}

// attachVirtioWin adds the virtio-win CD-ROM (an ISO) and the first-boot
// disk to the KVM domain, on free IDE slots (an empty CD-ROM drive is
// reused for the ISO).
func attachVirtioWin(k *config.KVMDomain, c *conversion) error {
	vw := c.virtioWin
	if vw == nil {
		return nil
	}
	used := map[string]bool{}
	for _, d := range k.Disks {
		if d.Bus == "ide" {
			used[d.Target] = true
		}
	}
	free := func() string {
		for _, t := range []string{"hdb", "hdc", "hdd", "hda"} {
			if !used[t] {
				used[t] = true
				return t
			}
		}
		return ""
	}
	if vw.src.ISO {
		reused := false
		for i := range k.Disks {
			if d := &k.Disks[i]; d.Device == "cdrom" && d.Path == "" && d.Bus == "ide" {
				d.Path, d.Format, d.ReadOnly, d.Source = vw.src.Path, "raw", true, nil
				reused = true
				vw.cd, vw.cdReused = d.Target, true
				break
			}
		}
		if !reused {
			t := free()
			if t == "" {
				return fmt.Errorf("%w: no IDE slot left for the virtio-win CD-ROM", config.ErrTooManyIDE)
			}
			k.Disks = append(k.Disks, config.KVMDisk{Path: vw.src.Path, Format: "raw", Target: t, Bus: "ide", Device: "cdrom", ReadOnly: true})
			vw.cd = t
		}
	}
	t := free()
	if t == "" {
		return fmt.Errorf("%w: no IDE slot left for the virtio-win first-boot disk", config.ErrTooManyIDE)
	}
	vw.disk, vw.diskTarget = fmt.Sprintf("%s-%s.raw", k.Name, t), t
	k.Disks = append(k.Disks, config.KVMDisk{Path: vw.disk, Format: "raw", Target: t, Bus: "ide", Device: "disk"})
	return nil
}

// isoVolume names the volume that holds the virtio-win ISO on a libvirt
// destination by the ISO's content (sum is its SHA-256 in hex): one
// volume per pool that every Windows guest migrated with that ISO
// shares, not 700 MB uploaded again for each; another ISO gets another.
func isoVolume(sum string) string { return "virtio-win-" + sum[:12] + ".iso" }

// fileSums caches the SHA-256 of the virtio-win ISOs: a batch's guests
// share one, hashed once. The key is the file's path, size and mtime.
var fileSums = struct {
	sync.Mutex
	by map[string]*fileSum
}{by: map[string]*fileSum{}}

type fileSum struct {
	once sync.Once
	sum  string
	err  error
}

// sha256File is the SHA-256 of the file at p in hex, read as a stream.
func sha256File(p string) (string, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return "", err
	}
	key := fmt.Sprintf("%s\x00%d\x00%d", p, fi.Size(), fi.ModTime().UnixNano())
	fileSums.Lock()
	s := fileSums.by[key]
	if s == nil {
		s = &fileSum{}
		fileSums.by[key] = s
	}
	fileSums.Unlock()
	s.once.Do(func() {
		f, err := os.Open(p)
		if err != nil {
			s.err = err
			return
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			s.err = fmt.Errorf("reading %s: %w", p, err)
			return
		}
		s.sum = hex.EncodeToString(h.Sum(nil))
	})
	return s.sum, s.err
}

// virtioDomain is k as it is to run once the first-boot script has made
// viostor boot-start: the guest's IDE disks on virtio (vda, vdb, ... in
// their order), its NICs virtio, without the first-boot disk and the
// virtio-win ISO (a reused drive of the Xen config is left empty), and
// the guest disks' new targets by their old. nil without virtio-win.
func (c *conversion) virtioDomain(k *config.KVMDomain) (*config.KVMDomain, map[string]string) {
	if c == nil || c.virtioWin == nil {
		return nil, nil
	}
	vw := c.virtioWin
	renamed := map[string]string{}
	v := *k
	v.Disks, v.NICs = nil, nil
	n := 0
	for _, d := range k.Disks {
		switch {
		case d.Device == "cdrom" && d.Target == vw.cd:
			if !vw.cdReused {
				continue
			}
			d.Path, d.Format, d.ReadOnly = "", "", true
		case d.Device == "cdrom":
		case d.Source == nil: // the first-boot disk
			continue
		case d.Bus == "ide":
			t := "vd" + string(rune('a'+n))
			renamed[d.Target] = t
			d.Bus, d.Target = "virtio", t
			n++
		}
		v.Disks = append(v.Disks, d)
	}
	for _, nic := range k.NICs {
		nic.Model = "virtio"
		v.NICs = append(v.NICs, nic)
	}
	return &v, renamed
}

// virtioXMLName is the file in OUTDIR holding virtioDomain's libvirt XML.
func virtioXMLName(name string) string { return name + "-virtio.xml" }

// extraImageNames are the files in OUTDIR that xen2kvm writes as disks
// besides the copies of the guest's disks.
func (c *conversion) extraImageNames() []string {
	if c == nil || c.virtioWin == nil || c.virtioWin.disk == "" {
		return nil
	}
	return []string{c.virtioWin.disk}
}

// writeExtraImages writes the virtio-win first-boot disk into the staging
// folder.
func (m *migration) writeExtraImages(stage *staging) error {
	vw := m.conv.virtioWin
	if vw == nil || vw.disk == "" {
		return nil
	}
	if err := virtiowin.WriteDisk(stage.path(vw.disk), vw.src, vw.drivers); err != nil {
		return fmt.Errorf("writing the virtio-win first-boot disk: %w", err)
	}
	stage.add(vw.disk)
	m.log.Info("wrote the virtio-win first-boot disk", "guest", m.dom.Name, "file", vw.disk)
	return nil
}

func ruleWhy(e convert.RegEdit) string {
	switch e.Rule {
	case convert.RuleWinXenPV:
		return "disable the Xen PV drivers: on KVM there is no Xen platform device, and a boot-start PV storage driver stops the boot with 0x7B or hangs it"
	case convert.RuleWinFilters:
		return "take the Xen PV drivers out of the device class filters, or every device of the class fails to start"
	case convert.RuleWinCPU:
		return "disable the processor driver (intelppm/processr): it stops Windows with 0x7E when the CPU changes"
	case convert.RuleWinIDE:
		return "make the IDE drivers boot-start: the KVM guest boots from QEMU's PIIX IDE"
	case convert.RuleWinViostor:
		return "prepare viostor to start the system disk once it is on virtio: CriticalDeviceDatabase entries for the virtio block device's PCI IDs and a viostor service, created in the hive's free space; the service stays disabled (Start=4) until the first-boot script has copied viostor.sys to system32\\drivers and set Start=0"
	}
	return e.Why
}

func nicModels(d *config.Domain) string {
	var ms []string
	for _, n := range d.NICs {
		m := strings.ToLower(n.Model)
		if m == "" {
			m = "rtl8139"
		}
		ms = append(ms, m)
	}
	if len(ms) == 0 {
		return "none configured"
	}
	return strings.Join(ms, ", ")
}

// windowsBootSkip is the boot check's word on a Windows guest.
const windowsBootSkip = "Windows: a login prompt cannot prove it booted (Windows Server 2003/2008 print no login prompt on a serial console, and no Windows can be installed on this machine to test against); checked instead, on the written output: the NTFS volume is clean, the SYSTEM hive parses with equal sequence numbers and a valid checksum, and re-planning finds every registry change in place (see validation)"

// validateWindows re-opens the written images and checks the Windows
// system volume: NTFS readable and clean, the SYSTEM hive valid, and
// nothing left to change.
func validateWindows(disks []namedDisk, c *conversion) []report.Check {
	wv, _, err := convert.FindWindows(winDisks(disks))
	if err != nil || wv == nil {
		detail := "no Windows system volume found on the output"
		if err != nil {
			detail = err.Error()
		}
		return []report.Check{{Name: "Windows system volume readable", Detail: detail}}
	}
	checks := []report.Check{{Name: "Windows system volume readable", OK: true, Detail: fmt.Sprintf("%s: %s", wv.Name, wv.Windows.Product())}}
	w := wv.Windows
	checks = append(checks, report.Check{Name: "NTFS volume clean (not dirty, not hibernated)", OK: !w.Dirty && !w.Hibernated,
		Detail: fmt.Sprintf("dirty %v, hibernated %v", w.Dirty, w.Hibernated)})
	checks = append(checks, report.Check{Name: "SYSTEM hive valid (checksum, equal sequence numbers)", OK: !w.LogPending && len(w.ControlSets) > 0,
		Detail: fmt.Sprintf("%s: %d control sets", w.HivePath("SYSTEM"), len(w.ControlSets))})
	left, err := convert.PlanWindows(w, wv.Volume, c.windowsOpts)
	ck := report.Check{Name: "registry changes in place", OK: err == nil && len(left) == 0}
	switch {
	case err != nil:
		ck.Detail = err.Error()
	case len(left) > 0:
		ck.Detail = fmt.Sprintf("%d change(s) still to make, first %s", len(left), left[0])
	default:
		ck.Detail = "re-planning on the output finds nothing left to change"
		if !c.windowsOpts.Disabled[convert.RuleWinXenPV] && slices.ContainsFunc(w.PVDrivers, func(s convert.WinService) bool { return s.Start != 4 }) {
			ck.OK, ck.Detail = false, "a Xen PV driver is still enabled"
		}
	}
	return append(checks, ck)
}
