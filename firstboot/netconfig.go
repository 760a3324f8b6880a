package firstboot

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"path"
	"sort"
	"strconv"
	"strings"
)

// NetConfig is how a guest configures its first NIC, as its RHEL-style
// network scripts say.
type NetConfig struct {
	// File is the ifcfg file read, "" when none was found.
	File string
	// Device is the interface (DEVICE=, else the file's suffix).
	Device string
	// DHCP: BOOTPROTO=dhcp (or bootp), or no address at all.
	DHCP    bool
	IP      string
	Prefix  int
	Gateway string
}

func (c NetConfig) String() string {
	switch {
	case c.File == "":
		return "dhcp (no ifcfg file for the NIC)"
	case c.DHCP:
		return "dhcp from /" + c.File
	}
	s := fmt.Sprintf("static %s/%d", c.IP, c.Prefix)
	if c.Gateway != "" {
		s += " gateway " + c.Gateway
	}
	return s + " from /" + c.File
}

// ParseShellVars reads a RHEL sysconfig file: KEY=VALUE lines, values
// optionally in single or double quotes, # comments. Later keys win.
func ParseShellVars(data []byte) map[string]string {
	vars := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		line = strings.TrimPrefix(line, "export ")
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" || strings.HasPrefix(k, "#") || strings.ContainsAny(k, " \t") {
			continue
		}
		v = strings.TrimSpace(v)
		switch {
		case len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && strings.IndexByte(v[1:], v[0]) >= 0:
			v = v[1 : 1+strings.IndexByte(v[1:], v[0])]
		default:
			if i := strings.Index(v, " #"); i >= 0 {
				v = v[:i]
			}
			v = strings.TrimSpace(v)
		}
		vars[k] = v
	}
	return vars
}

const scriptsDir = "etc/sysconfig/network-scripts"

// ReadNetConfig finds the ifcfg file of the NIC with address mac
// (HWADDR=), else of eth0, in the guest's root and reads its address.
// GATEWAY may also come from /etc/sysconfig/network.
func ReadNetConfig(root fs.FS, mac string) NetConfig {
	entries, _ := fs.ReadDir(root, scriptsDir)
	var names []string
	for _, e := range entries {
		n := e.Name()
		if strings.HasPrefix(n, "ifcfg-") && n != "ifcfg-lo" && !strings.Contains(n, ".") && !strings.Contains(n, ":") {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	var chosen string
	var vars map[string]string
	for _, n := range names {
		data, err := fs.ReadFile(root, path.Join(scriptsDir, n))
		if err != nil {
			continue
		}
		v := ParseShellVars(data)
		if mac != "" && strings.EqualFold(v["HWADDR"], mac) {
			chosen, vars = n, v
			break
		}
		if n == "ifcfg-eth0" && chosen == "" {
			chosen, vars = n, v
		}
	}
	if chosen == "" {
		return NetConfig{DHCP: true, Device: "eth0"}
	}
	c := NetConfig{File: path.Join(scriptsDir, chosen), Device: vars["DEVICE"]}
	if c.Device == "" {
		c.Device = strings.TrimPrefix(chosen, "ifcfg-")
	}
	proto := strings.ToLower(vars["BOOTPROTO"])
	ip := net.ParseIP(vars["IPADDR"]).To4()
	if proto == "dhcp" || proto == "bootp" || ip == nil {
		c.DHCP = true
		return c
	}
	c.IP = ip.String()
	c.Prefix = 24
	if p, err := strconv.Atoi(vars["PREFIX"]); err == nil && p > 0 && p <= 32 {
		c.Prefix = p
	} else if m := net.ParseIP(vars["NETMASK"]).To4(); m != nil {
		if ones, bits := net.IPMask(m).Size(); bits == 32 && ones > 0 {
			c.Prefix = ones
		}
	}
	gw := vars["GATEWAY"]
	if gw == "" {
		if data, err := fs.ReadFile(root, "etc/sysconfig/network"); err == nil {
			gw = ParseShellVars(data)["GATEWAY"]
		}
	}
	if g := net.ParseIP(gw).To4(); g != nil {
		c.Gateway = g.String()
	}
	return c
}
