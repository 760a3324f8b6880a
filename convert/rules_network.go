// Network rules.

package convert

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// network gives a NIC that the config leaves without a MAC the HWADDR of
// the guest's ifcfg-ethN (ethN is the N-th vif), so that the KVM NIC has
// the address the guest brings eth N up on (RHEL's network scripts leave
// an interface down whose HWADDR no card has). It warns about HWADDRs no
// NIC will have and about NICs without a MAC anywhere. It edits nothing,
// and a folder or file it cannot read is passed over.
func (c *planner) network() error {
	const dir = "etc/sysconfig/network-scripts"
	hwaddrs := map[int]string{} // NIC index -> the HWADDR its ifcfg gives
	es, _ := c.root.ReadDir(dir)
	for _, e := range es {
		dev, ok := strings.CutPrefix(e.Name(), "ifcfg-eth")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(dev)
		if err != nil || n < 0 {
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
		file := "/" + dir + "/" + e.Name()
		switch mac, err := net.ParseMAC(hw); {
		case n >= len(c.d.NICs):
			c.warn("%s has HWADDR %s but the config has no NIC %d", file, hw, n)
		case c.d.NICs[n].MAC != "":
			if !strings.EqualFold(c.d.NICs[n].MAC, hw) {
				c.warn("%s has HWADDR %s but NIC %d has MAC %s: the guest will not bring eth%d up", file, hw, n, c.d.NICs[n].MAC, n)
			}
		case err != nil || len(mac) != 6:
			c.warn("%s has HWADDR %q, which is not a MAC address, and the config gives NIC %d no MAC: the KVM NIC gets a MAC of xen2kvm's making (52:54:00:...) and the guest will not bring eth%d up", file, hw, n, n)
		default:
			hwaddrs[n] = mac.String()
			c.plan.GuestMACs = append(c.plan.GuestMACs, GuestMAC{NIC: n, MAC: mac.String(), File: file})
			c.note("NIC %d gets MAC %s, the HWADDR of %s: the config gives it none", n, mac, file)
		}
	}
	slices.SortFunc(c.plan.GuestMACs, func(a, b GuestMAC) int { return a.NIC - b.NIC })
	for n, nic := range c.d.NICs {
		if nic.MAC == "" && hwaddrs[n] == "" {
			c.warn("neither the config nor the guest's /%s/ifcfg-eth%d gives NIC %d a MAC: the KVM NIC gets a MAC of xen2kvm's making (52:54:00:..., made from the guest's UUID, the same at every migration), not the one Xen drew at the guest's last boot; DHCP reservations and firewall rules for the old address no longer match", dir, n, n)
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
