// Console rules: the login console and the display move off the Xen
// console and framebuffer.

package convert

import (
	"regexp"
	"slices"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
)

var gettyRe = regexp.MustCompile(`\b(xvc0|hvc0)\b`)

func (c *planner) console() error {
	const inittab = "etc/inittab"
	data, ok, err := c.read(inittab)
	if err != nil {
		return err
	}
	if ok {
		lines, final := splitLines(data)
		serial := false
		for i, l := range lines {
			if strings.HasPrefix(strings.TrimSpace(l), "#") || !strings.Contains(l, "getty") {
				continue
			}
			lines[i] = gettyRe.ReplaceAllString(l, "ttyS0")
			if strings.Contains(lines[i], "ttyS0") {
				serial = true
			}
		}
		if !serial && c.d.Type != config.HVM && c.g.Major <= 5 {
			lines = append(lines, "S0:2345:respawn:/sbin/agetty ttyS0 115200 vt100-nav")
		}
		if err := c.write(inittab, joinLines(lines, final || len(lines) > 0), 0o644, "the login console moves from the Xen console xvc0 to the serial port ttyS0"); err != nil {
			return err
		}
	}
	const securetty = "etc/securetty"
	data, ok, err = c.read(securetty)
	if err != nil || !ok {
		return err
	}
	lines, _ := splitLines(data)
	if slices.Contains(lines, "ttyS0") {
		return nil
	}
	lines = append(lines, "ttyS0")
	xen := "the Xen console"
	for _, name := range []string{"hvc0", "xvc0"} {
		if slices.Contains(lines, name) {
			xen = name
			break
		}
	}
	return c.write(securetty, joinLines(lines, true), 0o600, "root may log in on the serial console ttyS0, as on "+xen+" before")
}

var xorgDriverRe = regexp.MustCompile(`(?m)^(\s*Driver\s+")(xenfb|fbdev)(")`)

func (c *planner) xorg() error {
	for _, f := range []string{"etc/X11/xorg.conf", "etc/X11/XF86Config"} {
		data, ok, err := c.read(f)
		if err != nil {
			return err
		}
		if !ok || !xorgDriverRe.Match(data) {
			continue
		}
		out := xorgDriverRe.ReplaceAll(data, []byte("${1}vesa${3}"))
		if err := c.write(f, out, 0o644, "the Xen framebuffer is gone; vesa drives KVM's emulated VGA"); err != nil {
			return err
		}
	}
	return nil
}
