// SELinux rules.

package convert

func (c *planner) selinux() error {
	if c.g.SELinux != "enforcing" && c.g.SELinux != "permissive" {
		return nil
	}
	if _, ok, err := c.read(".autorelabel"); err != nil || ok {
		return err
	}
	c.record(".autorelabel", Create, nil, []byte{}, 0o644, "SELinux is "+c.g.SELinux+": files written by xen2kvm get their labels at the first boot")
	return nil
}
