package xenhost

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/xen2kvm/xen2kvm/config"
)

// ErrBadURL is matched by errors about an ssh:// URL that cannot be read.
var ErrBadURL = errors.New("bad ssh URL")

// URL is a Xen host, and optionally one guest on it:
// ssh://[USER@]HOST[:PORT][/NAME].
type URL struct {
	User string // "" means the local user name
	Host string // name or address, without brackets
	Port int    // 0 means 22
	Name string // the guest, "" for the whole host
}

// IsURL tells whether s names a source on a Xen host rather than a local
// config file.
func IsURL(s string) bool { return strings.HasPrefix(s, "ssh://") }

// ParseURL reads ssh://[USER@]HOST[:PORT][/NAME].
func ParseURL(s string) (*URL, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w %q: %s (want ssh://[USER@]HOST[:PORT][/NAME])", ErrBadURL, s, fmt.Sprintf(format, args...))
	}
	if !IsURL(s) {
		return nil, bad("it does not start with ssh://")
	}
	pu, err := url.Parse(s)
	if err != nil {
		return nil, bad("%v", errors.Unwrap(err))
	}
	if pu.RawQuery != "" || pu.Fragment != "" || pu.Opaque != "" {
		return nil, bad("query strings and fragments are not allowed")
	}
	if _, hasPass := pu.User.Password(); hasPass {
		return nil, bad("a password in the URL is not accepted (xen2kvm asks for it on the terminal)")
	}
	u := &URL{User: pu.User.Username(), Host: pu.Hostname()}
	if u.Host == "" {
		return nil, bad("no host")
	}
	if strings.Contains(u.Host, ":") {
		if net.ParseIP(u.Host) == nil {
			return nil, bad("host %q is not an IPv6 address", u.Host)
		}
	} else if strings.IndexFunc(u.Host, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_')
	}) >= 0 {
		return nil, bad("host %q is not a host name or address", u.Host)
	}
	if p := pu.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, bad("port %q is not a number from 1 to 65535", p)
		}
		u.Port = n
	}
	name := strings.TrimPrefix(pu.Path, "/")
	name = strings.TrimSuffix(name, "/")
	if strings.Contains(name, "/") {
		return nil, bad("the guest name %q contains a /", name)
	}
	if name != "" {
		if err := checkName(name); err != nil {
			return nil, bad("%v", err)
		}
	}
	u.Name = name
	return u, nil
}

// checkName refuses guest names that could not name files or would
// reach outside the host's config folder (config.CheckName).
func checkName(name string) error { return config.CheckName(name) }

// Addr is HOST:PORT for dialing.
func (u *URL) Addr() string {
	port := u.Port
	if port == 0 {
		port = 22
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(port))
}

// HostURL is the URL of the host alone, without the guest.
func (u *URL) HostURL() string {
	c := *u
	c.Name = ""
	return c.String()
}

// Guest returns the URL of guest name on the same host.
func (u *URL) Guest(name string) *URL {
	c := *u
	c.Name = name
	return &c
}

func (u *URL) String() string {
	var b strings.Builder
	b.WriteString("ssh://")
	if u.User != "" {
		b.WriteString(url.PathEscape(u.User))
		b.WriteByte('@')
	}
	if strings.Contains(u.Host, ":") {
		b.WriteString("[" + u.Host + "]")
	} else {
		b.WriteString(u.Host)
	}
	if u.Port != 0 {
		b.WriteString(":" + strconv.Itoa(u.Port))
	}
	if u.Name != "" {
		b.WriteString("/" + u.Name)
	}
	return b.String()
}
