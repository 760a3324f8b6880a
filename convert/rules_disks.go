// Disk name rules: the tables that name the guest's disks, and the caches
// that remember the Xen names.

package convert

import "strings"

// remapField renames the device in field n (0-based) of each line of a
// table file such as fstab.
func (c *planner) remapField(file string, field int, what string) error {
	data, ok, err := c.read(file)
	if err != nil || !ok {
		return err
	}
	lines, final := splitLines(data)
	for i, l := range lines {
		f := strings.Fields(l)
		if len(f) <= field || strings.HasPrefix(f[0], "#") {
			continue
		}
		nd, ok := c.remap.remap(f[field])
		if !ok {
			continue
		}
		// Replace the field in place, keeping the spacing.
		pos := 0
		for j := 0; j <= field; j++ {
			k := strings.Index(l[pos:], f[j])
			if j == field {
				pos += k
				break
			}
			pos += k + len(f[j])
		}
		rest := l[pos+len(f[field]):]
		// Keep the next column where it was when the name got shorter.
		if pad := len(f[field]) - len(nd); pad > 0 && strings.HasPrefix(rest, " ") {
			rest = strings.Repeat(" ", pad) + rest
		}
		lines[i] = l[:pos] + nd + rest
	}
	return c.write(file, joinLines(lines, final), 0o644, what+" are renamed by disk order ("+c.remap.String()+"); LABEL= and UUID= stay")
}

func (c *planner) fstab() error {
	return c.remapField("etc/fstab", 0, "disk devices")
}

func (c *planner) crypttab() error {
	return c.remapField("etc/crypttab", 1, "encrypted devices")
}

func (c *planner) blkidCache() error {
	for _, f := range []string{"etc/blkid/blkid.tab", "etc/blkid/blkid.tab.old", "etc/blkid.tab", "etc/blkid.tab.old"} {
		if err := c.remove(f, "the blkid cache names the Xen disks; blkid rebuilds it at boot"); err != nil {
			return err
		}
	}
	return c.remove("etc/lvm/cache/.cache", "the LVM device cache names the Xen disks; LVM rescans at boot")
}
