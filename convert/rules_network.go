// Network rules.

package convert

import (
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
