// Network rules.

package convert

import (
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
)

// network warns about interface configs whose HWADDR will not match. It
// edits nothing, and a folder or file it cannot read is passed over.
func (c *planner) network() error {
	const dir = "etc/sysconfig/network-scripts"
	es, err := c.root.ReadDir(dir)
	if err != nil {
		return nil
	}
	for _, e := range es {
		dev, ok := strings.CutPrefix(e.Name(), "ifcfg-eth")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(dev)
		if err != nil {
			continue
		}
		b, err := c.root.ReadFile(dir + "/" + e.Name())
		if err != nil {
			continue
		}
		hw := ""
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(l), "HWADDR="); ok {
				hw = strings.Trim(strings.TrimSpace(v), `"'`)
			}
		}
		if hw == "" {
			continue
		}
		switch {
		case n >= len(c.d.NICs):
			c.warn("/%s/%s has HWADDR %s but the config has no NIC %d", dir, e.Name(), hw, n)
		case c.d.NICs[n].MAC == "":
			c.warn("/%s/%s has HWADDR %s but the config gives NIC %d no MAC: set it, or the guest will not bring eth%d up", dir, e.Name(), hw, n, n)
		case !strings.EqualFold(c.d.NICs[n].MAC, hw):
			c.warn("/%s/%s has HWADDR %s but NIC %d has MAC %s: the guest will not bring eth%d up", dir, e.Name(), hw, n, c.d.NICs[n].MAC, n)
		}
	}
	return nil
}

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
