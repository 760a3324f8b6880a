package convert

import (
	"regexp"
	"sort"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
)

// diskName matches a Linux disk or partition name of the schemes a Xen
// guest may use: xvda, xvdb3, hda1, sdc, and vda for an already converted
// guest.
var diskName = regexp.MustCompile(`^(xvd|hd|sd|vd)([a-z]+)([0-9]*)$`)

// letters returns the disk letters of index i: 0 a, 25 z, 26 aa.
func letters(i int) string {
	s := ""
	for i >= 0 {
		s = string(rune('a'+i%26)) + s
		i = i/26 - 1
	}
	return s
}

// deviceMap returns, for each disk of d in order, its Xen target name and
// its name on KVM: vdX with virtio; without, the IDE names of the era
// (hdX; sdX for RHEL 6, whose libata drives IDE). CD-ROMs keep their
// names and are not listed.
func deviceMap(d *config.Domain, prefix string) (map[string]string, []string) {
	m := map[string]string{}
	var order []string
	n := 0
	for _, disk := range d.Disks {
		if disk.Device == "cdrom" {
			continue
		}
		t := strings.TrimPrefix(disk.Target, "/dev/")
		if t == "" {
			continue
		}
		m[t] = prefix + letters(n)
		order = append(order, t)
		n++
	}
	return m, order
}

// remapper renames the devices of a guest by disk order.
type remapper struct {
	// whole maps a whole-disk name (xvda) to its new name (vda); its
	// partitions follow it.
	whole map[string]string
	// exact maps a partition exported as a disk (sda1) to its new whole
	// disk (vdb).
	exact map[string]string
	// names are the config's disk names, for String.
	names []string
}

func newRemapper(m map[string]string) *remapper {
	r := &remapper{whole: map[string]string{}, exact: map[string]string{}}
	for old, nw := range m {
		r.names = append(r.names, old+"="+nw)
		sm := diskName.FindStringSubmatch(old)
		if sm == nil {
			r.exact[old] = nw
			continue
		}
		if sm[3] != "" {
			r.exact[old] = nw
			continue
		}
		r.whole[old] = nw
	}
	// The same disk as the guest may also know it under another scheme
	// (hda in an HVM guest whose config says xvda, or the reverse).
	keys := make([]string, 0, len(r.whole))
	for k := range r.whole {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, old := range keys {
		sm := diskName.FindStringSubmatch(old)
		for _, scheme := range []string{"xvd", "hd", "sd"} {
			alt := scheme + sm[2]
			if _, taken := r.whole[alt]; !taken {
				if _, taken := r.exact[alt]; !taken {
					r.whole[alt] = r.whole[old]
				}
			}
		}
	}
	return r
}

// remap returns the new name of a device path or name ("/dev/xvda2" ->
// "/dev/vda2", "xvdb" -> "vdb"); ok is false for anything it leaves
// alone: LABEL=, UUID=, LVM and device-mapper names, unknown disks, and
// names that are already right.
func (r *remapper) remap(dev string) (string, bool) {
	name := strings.TrimPrefix(dev, "/dev/")
	prefix := dev[:len(dev)-len(name)]
	if strings.Contains(name, "/") || strings.Contains(name, "=") {
		return dev, false
	}
	if nw, ok := r.exact[name]; ok {
		return prefix + nw, nw != name
	}
	sm := diskName.FindStringSubmatch(name)
	if sm == nil {
		return dev, false
	}
	nw, ok := r.whole[sm[1]+sm[2]]
	if !ok || nw == sm[1]+sm[2] {
		return dev, false
	}
	return prefix + nw + sm[3], true
}

func (r *remapper) String() string {
	parts := append([]string(nil), r.names...)
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// devRe matches a device path in a config line.
var devRe = regexp.MustCompile(`/dev/[A-Za-z0-9_./-]*[A-Za-z0-9]`)

// remapLine renames every /dev/ disk in line.
func (c *planner) remapLine(line string) string {
	return devRe.ReplaceAllStringFunc(line, func(dev string) string {
		nd, _ := c.remap.remap(dev)
		return nd
	})
}
