package convert

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strings"
)

// Rules for what real RHEL 4/5/6 Xen guests carry besides the drivers:
// kudzu, LVM filters, Xen driver loads in the rc scripts, kdump targets
// and udev's persistent network names.
const (
	RuleKudzu         = "kudzu"          // kudzu's first-boot hardware probe disabled (chkconfig kudzu off)
	RuleLVMFilter     = "lvm-filter"     // lvm.conf filters (and the initrd's copy) accept the new disks
	RuleRcXenModules  = "rc-xen-modules" // rc.local/rc.sysinit insmod of the Xen PV drivers
	RuleKdump         = "kdump"          // /etc/kdump.conf dump targets renamed
	RulePersistentNet = "persistent-net" // RHEL 6 70-persistent-net.rules entries for the Xen NIC
)

var kudzuLinkRe = regexp.MustCompile(`^S\d+kudzu$`)

// kudzu disables kudzu's boot-time hardware probe as chkconfig kudzu off
// does: its rc?.d start links go. At the first boot on KVM it would find
// the Xen NIC gone and an e1000 or virtio NIC new, move ifcfg-eth0 to
// ifcfg-eth0.bak and write a DHCP configuration in its place.
func (c *planner) kudzu() error {
	for _, base := range []string{"etc/rc.d", "etc"} {
		found := false
		for lvl := 0; lvl <= 6; lvl++ {
			dir := fmt.Sprintf("%s/rc%d.d", base, lvl)
			fi, err := c.root.Lstat(dir)
			if err != nil || !fi.IsDir() {
				continue
			}
			es, err := c.root.ReadDir(dir)
			if err != nil {
				return fmt.Errorf("listing /%s: %w", dir, err)
			}
			for _, e := range es {
				if !kudzuLinkRe.MatchString(e.Name()) {
					continue
				}
				found = true
				p := dir + "/" + e.Name()
				if err := c.removeLink(p, "kudzu would replace the static ifcfg-eth0 with a DHCP stub when it sees the Xen NIC replaced at the first boot: its start link goes, as chkconfig kudzu off does"); err != nil {
					return err
				}
			}
		}
		if found {
			break
		}
	}
	return nil
}

// removeLink plans removing a symlink (or a file) without reading
// through it.
func (c *planner) removeLink(p, why string) error {
	fi, err := c.root.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	if fi.Mode()&fs.ModeSymlink == 0 {
		return c.remove(p, why)
	}
	target, err := c.root.ReadLink(p)
	if err != nil {
		return fmt.Errorf("/%s: %w", p, err)
	}
	if _, seen := c.files[p]; seen {
		return nil
	}
	c.record(p, Remove, nil, nil, 0, why)
	c.files[p].Link = target
	return nil
}

// lvmFilterRe finds a filter or global_filter setting.
var lvmFilterRe = regexp.MustCompile(`^(\s*)(filter|global_filter)(\s*=\s*)\[(.*)\](.*)$`)

// lvmPatternRe finds one quoted pattern of a filter list.
var lvmPatternRe = regexp.MustCompile(`"([^"]*)"`)

// rewriteLVMFilters adds, after every accept pattern that names Xen disks
// (xvd), the same pattern for the new disks (vd, hd or sd), so the volume
// groups on them are seen. Reject patterns are left alone. Multi-line
// lists are handled line by line. It returns the new text and what was
// changed.
func rewriteLVMFilters(data []byte, prefix string) ([]byte, []string) {
	lines, final := splitLines(data)
	var changed []string
	inList := false
	for i, l := range lines {
		trim := strings.TrimSpace(l)
		if strings.HasPrefix(trim, "#") {
			continue
		}
		isSetting := false
		if m := lvmFilterRe.FindStringSubmatch(l); m != nil {
			isSetting = true
		} else if f := strings.Fields(trim); len(f) > 0 && (strings.HasPrefix(trim, "filter") || strings.HasPrefix(trim, "global_filter")) && strings.Contains(trim, "[") && !strings.Contains(trim, "]") {
			isSetting, inList = true, true
		} else if inList {
			isSetting = true
			if strings.Contains(trim, "]") {
				inList = false
			}
		}
		if !isSetting {
			continue
		}
		nl := lvmPatternRe.ReplaceAllStringFunc(l, func(q string) string {
			pat := q[1 : len(q)-1]
			if len(pat) < 2 || pat[0] != 'a' || !strings.Contains(pat, "xvd") {
				return q
			}
			np := strings.ReplaceAll(pat, "xvd", prefix)
			if strings.Contains(l, `"`+np+`"`) {
				return q
			}
			return q + `, "` + np + `"`
		})
		if nl != l {
			changed = append(changed, strings.TrimSpace(nl))
			lines[i] = nl
		}
	}
	return joinLines(lines, final), changed
}

// lvmFilter rewrites LVM filters that accept only Xen disks, in
// /etc/lvm/lvm.conf and (through the initrd rule) in the initrd's copy.
func (c *planner) lvmFilter() error {
	const f = "etc/lvm/lvm.conf"
	data, ok, err := c.read(f)
	if err != nil || !ok {
		return err
	}
	prefix := c.prefix
	out, changed := rewriteLVMFilters(data, prefix)
	if len(changed) == 0 {
		return nil
	}
	why := fmt.Sprintf("the LVM filter accepts only Xen disks (xvd*), which would hide the volume groups on the %s* disks: the same patterns accept %s*", prefix, prefix)
	if err := c.write(f, out, 0o644, why); err != nil {
		return err
	}
	if c.initrdEdit == nil {
		c.initrdEdit = map[string]func([]byte) []byte{}
	}
	c.initrdEdit[f] = func(b []byte) []byte {
		nb, _ := rewriteLVMFilters(b, prefix)
		return nb
	}
	c.initrdEditWhy = append(c.initrdEditWhy, "the initrd's copy of lvm.conf gets the same filter (rule "+RuleLVMFilter+")")
	return nil
}

// lvmBinaries are where RHEL keeps lvm (the static one goes into nash
// initrds).
var lvmBinaries = []string{"sbin/lvm", "usr/sbin/lvm", "sbin/lvm.static", "usr/sbin/lvm.static"}

// oldLVM tells whether the guest keeps its root on LVM and its lvm2 is
// too old to know virtio disks: lvm2 before 2.02.40 (RHEL 5.3) has no
// "virtblk" in its table of device types, so it ignores /dev/vd*.
func (c *planner) oldLVM() (string, bool) {
	usesLVM := false
	for _, e := range c.g.Fstab {
		if strings.HasPrefix(e.Spec, "/dev/mapper/") || (strings.HasPrefix(e.Spec, "/dev/") && strings.Count(e.Spec, "/") == 3 && !strings.HasPrefix(e.Spec, "/dev/disk/")) {
			usesLVM = true
		}
	}
	if !usesLVM {
		return "", false
	}
	for _, b := range lvmBinaries {
		data, err := c.root.ReadFile(b)
		if err != nil {
			continue
		}
		if !bytes.Contains(data, []byte("virtblk")) {
			return "/" + b, true
		}
		return "", false
	}
	return "", false
}

var xenInsmodRe = regexp.MustCompile(`\b(insmod|modprobe)\b.*\bxen[-_](vbd|vnif|platform[-_]pci|balloon)\b`)

// rcXenModules comments out rc.local and rc.sysinit lines that load the
// Xen PV drivers by hand: on KVM they fail (no Xen platform device), and
// a script that stops on the error stops the boot.
func (c *planner) rcXenModules() error {
	for _, f := range []string{"etc/rc.d/rc.local", "etc/rc.d/rc.sysinit", "etc/rc.local", "etc/rc.sysinit"} {
		if fi, err := c.root.Lstat(f); err != nil || fi.Mode()&fs.ModeSymlink != 0 {
			continue // etc/rc.local is a link to rc.d/rc.local
		}
		data, ok, err := c.read(f)
		if err != nil || !ok {
			if err != nil {
				return err
			}
			continue
		}
		lines, final := splitLines(data)
		n := 0
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || !xenInsmodRe.MatchString(l) {
				continue
			}
			lines[i] = "# xen2kvm: Xen PV driver, no device on KVM: " + l
			n++
		}
		if n > 0 {
			if err := c.write(f, joinLines(lines, final), 0o755, fmt.Sprintf("%d line(s) load the Xen PV drivers (xen-vbd, xen-vnif), which find no Xen device on KVM: commented out", n)); err != nil {
				return err
			}
		}
	}
	return nil
}

// kdump renames the disks /etc/kdump.conf dumps to.
func (c *planner) kdump() error {
	const f = "etc/kdump.conf"
	data, ok, err := c.read(f)
	if err != nil || !ok {
		return err
	}
	lines, final := splitLines(data)
	for i, l := range lines {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			lines[i] = c.remapLine(l)
		}
	}
	return c.write(f, joinLines(lines, final), 0o644, "kdump's dump target is renamed by disk order ("+c.remap.String()+"), or the crash dump goes nowhere")
}

// persistentNet comments out udev's persistent names for the Xen NICs
// (RHEL 6): the KVM NIC is another device (another driver, and a new MAC
// when the config gave none), and udev would name it eth1 while eth0
// stays reserved for the Xen one. udev writes a new entry at the first
// boot, with eth0 free.
func (c *planner) persistentNet() error {
	const f = "etc/udev/rules.d/70-persistent-net.rules"
	data, ok, err := c.read(f)
	if err != nil || !ok {
		return err
	}
	lines, final := splitLines(data)
	n := 0
	for i, l := range lines {
		t := strings.TrimSpace(l)
		if strings.HasPrefix(t, "#") || !strings.Contains(t, `SUBSYSTEM=="net"`) || !strings.Contains(t, "NAME=") {
			continue
		}
		lines[i] = "# xen2kvm: the Xen NIC's name, freed for the KVM NIC: " + l
		n++
	}
	if n == 0 {
		return nil
	}
	return c.write(f, joinLines(lines, final), 0o644, "udev keeps eth names for the Xen NICs' MAC addresses and would name the KVM NIC eth1: the old entries are commented out and udev writes new ones at the first boot")
}
