package pipeline

import (
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/report"
)

// checkLabels reads the output back and checks that every file the plan
// wrote carries a SELinux label, for a guest that enforces SELinux (or
// logs in permissive mode) and will not relabel at its first boot. ok is
// false when the check does not apply.
func checkLabels(root guestfs.FS, p *convert.Plan) (report.Check, bool) {
	if p.SELinux != "enforcing" && p.SELinux != "permissive" {
		return report.Check{}, false
	}
	c := report.Check{Name: "SELinux labels on the files xen2kvm wrote"}
	if _, err := root.Stat(".autorelabel"); err == nil {
		c.OK, c.Detail = true, "/.autorelabel is present: the first boot relabels every file"
		return c, true
	}
	x, ok := root.(guestfs.XattrFS)
	if !ok {
		c.Detail = "the output's filesystems cannot be read for labels"
		return c, true
	}
	var missing []string
	n := 0
	for _, e := range p.Edits {
		if e.Kind == convert.Remove {
			continue
		}
		n++
		v, err := x.GetXattr(e.Path, convert.SELinuxAttr)
		switch {
		case errors.Is(err, guestfs.ErrNoXattr), err == nil && len(strings.TrimRight(string(v), "\x00")) == 0:
			missing = append(missing, "/"+e.Path)
		case errors.Is(err, fs.ErrNotExist):
			missing = append(missing, "/"+e.Path+" (not found)")
		case err != nil:
			missing = append(missing, fmt.Sprintf("/%s (%v)", e.Path, err))
		}
	}
	if len(missing) > 0 {
		c.Detail = fmt.Sprintf("SELinux is %s and nothing relabels the guest at boot, but %d of the %d files written have no security.selinux label (the guest denies access to them): %s",
			p.SELinux, len(missing), n, strings.Join(missing, ", "))
		return c, true
	}
	c.OK, c.Detail = true, fmt.Sprintf("%d files labelled", n)
	return c, true
}
