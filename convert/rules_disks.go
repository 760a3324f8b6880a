// Disk name rules: the tables that name the guest's disks, and the caches
// that remember the Xen names.

package convert

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

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
	c.initrdEditWhy = append(c.initrdEditWhy, "the initrd's copy of lvm.conf gets the same filter (rule lvm-filter)")
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
