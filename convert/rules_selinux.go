// SELinux rules.

package convert

import (
	"errors"
	"fmt"
	"io/fs"
	"path"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/selinux"
)

// SELinuxAttr is the extended attribute that holds a file's SELinux
// label.
const SELinuxAttr = "security.selinux"

// selinuxOn tells whether the guest labels files (enforcing or
// permissive).
func (g *Guest) selinuxOn() bool { return g.SELinux == "enforcing" || g.SELinux == "permissive" }

// selinux labels the files the plan creates (and the directories Apply
// creates for them) as the guest's own file_contexts labels their paths.
// Files the plan modifies keep their inode and so their label. Only when
// the policy cannot be read, or the filesystems keep no labels, does the
// guest get /.autorelabel, which relabels everything and reboots once at
// its first boot.
func (c *planner) selinux() error {
	if !c.g.selinuxOn() {
		return nil
	}
	fallback := func(why string) error {
		c.warn("SELinux is %s but %s: /.autorelabel makes the guest relabel every file and reboot once at its first boot", c.g.SELinux, why)
		if _, ok, err := c.read(".autorelabel"); err != nil || ok {
			return err
		}
		c.record(".autorelabel", Create, nil, []byte{}, 0o644, "SELinux is "+c.g.SELinux+" and the files xen2kvm writes cannot be labelled from the guest's policy: the first boot relabels them")
		return nil
	}
	typ := c.g.SELinuxType
	if typ == "" {
		typ = "targeted"
	}
	fc, err := selinux.Load(c.root, typ)
	if err != nil {
		return fallback(fmt.Sprintf("its file contexts cannot be read (%v)", err))
	}
	x, ok := c.root.(guestfs.XattrFS)
	if !ok {
		return fallback("its filesystems keep no extended attributes here")
	}
	if _, err := x.ListXattr("."); err != nil {
		return fallback(fmt.Sprintf("its root keeps no extended attributes here (%v)", err))
	}
	dirs := map[string]string{}
	for _, p := range c.order {
		e := c.files[p]
		if e.Kind != Create {
			continue
		}
		var mode fs.FileMode
		if e.Link != "" {
			mode = fs.ModeSymlink
		}
		label, ok := fc.Lookup("/"+e.Path, mode)
		if !ok {
			continue
		}
		e.Label = label
		c.addRule(e, "labelled "+label+" as /etc/selinux/"+typ+"/contexts/files/file_contexts labels its path")
		for d := path.Dir(e.Path); d != "." && d != "/"; d = path.Dir(d) {
			if _, seen := dirs[d]; seen {
				break
			}
			if _, err := c.root.Stat(d); err == nil {
				break
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("/%s: %w", d, err)
			}
			dl, _ := fc.Lookup("/"+d, fs.ModeDir)
			dirs[d] = dl
		}
	}
	for d, l := range dirs {
		if l != "" {
			if c.plan.DirLabels == nil {
				c.plan.DirLabels = map[string]string{}
			}
			c.plan.DirLabels[d] = l
		}
	}
	c.plan.Labels = true
	return nil
}

// addRule credits the current rule with a change to an edit another rule
// recorded.
func (c *planner) addRule(e *Edit, why string) {
	e.Rule += "+" + c.rule
	if e.Why != "" {
		e.Why += "; "
	}
	e.Why += why
}

// label sets the SELinux label Apply was asked to give name, when root
// keeps labels.
func label(root guestfs.FS, name, label string) error {
	if label == "" {
		return nil
	}
	x, ok := root.(guestfs.XattrFS)
	if !ok {
		return fmt.Errorf("labelling /%s: %w", name, guestfs.ErrNotSupported)
	}
	if err := x.SetXattr(name, SELinuxAttr, append([]byte(label), 0)); err != nil {
		return fmt.Errorf("labelling /%s: %w", name, err)
	}
	return nil
}
