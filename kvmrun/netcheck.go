package kvmrun

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
)

// NetCheck asks Boot to prove, once the login prompt is there, that the
// guest's network stack answers on its first NIC. That NIC is put on a
// QEMU user-mode network shaped to the guest's own configuration, a host
// port is forwarded to Port on the guest, and the network is captured
// (-object filter-dump). The proof is a TCP answer on the forwarded port,
// else an ARP or ICMP answer from the guest in the capture.
type NetCheck struct {
	// GuestIP is the guest's static address on the NIC, "" for a DHCP
	// guest (QEMU's user network then leases it DefaultGuestIP).
	GuestIP string
	// Prefix is the guest's network prefix length (from its NETMASK),
	// 24 when 0.
	Prefix int
	// Gateway is the guest's GATEWAY; it becomes the user network's
	// host address when it is on the guest's network.
	Gateway string
	// Port is the TCP port the guest listens on (DefaultNetCheckPort when 0).
	Port int
	// Timeout bounds the proof after the login prompt (DefaultNetCheckTimeout when 0).
	Timeout time.Duration
}

// Defaults of NetCheck.
const (
	DefaultNetCheckPort    = 22
	DefaultNetCheckTimeout = 90 * time.Second
	DefaultGuestIP         = "10.0.2.15"
)

// Network proofs, as NetProof.Method names them.
const (
	ProofTCP      = "tcp"     // the guest answered on the TCP port
	ProofTCPReset = "tcp-rst" // nothing listens on the port, but the guest's stack reset the connection
	ProofARP      = "arp"     // the guest answered ARP for its address
	ProofICMP     = "icmp"    // the guest answered an ICMP echo
)

// NetProof is the outcome of a NetCheck.
type NetProof struct {
	OK bool `json:"ok"`
	// Method is the proof that held: ProofTCP, ProofARP or ProofICMP.
	Method string `json:"method,omitempty"`
	// Detail says what was seen, or what was tried and not seen.
	Detail  string `json:"detail"`
	MAC     string `json:"mac,omitempty"`
	GuestIP string `json:"guest_ip"`
	Port    int    `json:"port"`
	// UserNet is the user-mode netdev's options the NIC ran with.
	UserNet string `json:"user_net,omitempty"`
	// Capture is the packet capture file; it is gone after Boot unless
	// WithDir named the runtime folder.
	Capture string `json:"capture,omitempty"`
	// Banner is what the guest sent first on the TCP connection.
	Banner string `json:"banner,omitempty"`
}

// WithNetCheck makes Boot prove the guest's network (see NetCheck). It
// needs a domain with a NIC and user-mode networking (QEMUOptions.Net
// "" or "user"); otherwise the result says why there was no proof.
func WithNetCheck(c NetCheck) Option { return func(s *settings) { s.netCheck = &c } }

// netPlan is a NetCheck laid out for one QEMU run.
type netPlan struct {
	check    NetCheck
	mac      net.HardwareAddr
	guestIP  net.IP
	hostPort int
	userNet  string
	capture  string
	skip     string // why there is no proof to try
}

// planNetCheck fills qo's user network and capture for c, in the
// runtime folder dir.
func planNetCheck(c NetCheck, dom *config.KVMDomain, qo *config.QEMUOptions, dir string) *netPlan {
	p := &netPlan{check: c}
	if p.check.Port == 0 {
		p.check.Port = DefaultNetCheckPort
	}
	if p.check.Timeout == 0 {
		p.check.Timeout = DefaultNetCheckTimeout
	}
	switch {
	case len(dom.NICs) == 0:
		p.skip = "the guest has no NIC"
		return p
	case qo.Net != "" && qo.Net != "user":
		p.skip = "the NIC is on " + qo.Net + " networking; the proof needs user-mode networking"
		return p
	}
	if mac, err := net.ParseMAC(dom.NICs[0].MAC); err == nil {
		p.mac = mac
	}
	var opts []string
	p.guestIP = net.ParseIP(DefaultGuestIP).To4()
	if ip := net.ParseIP(c.GuestIP).To4(); ip != nil {
		prefix := c.Prefix
		if prefix <= 0 || prefix > 30 {
			prefix = 24
		}
		ipnet := &net.IPNet{IP: ip.Mask(net.CIDRMask(prefix, 32)), Mask: net.CIDRMask(prefix, 32)}
		p.guestIP = ip
		opts = append(opts, "net="+ipnet.String())
		host := net.ParseIP(c.Gateway).To4()
		if host == nil || !ipnet.Contains(host) || host.Equal(ip) {
			// No usable gateway: the first address that is not the guest's.
			host = nextIP(ipnet.IP, 1)
			if host.Equal(ip) {
				host = nextIP(ipnet.IP, 2)
			}
		}
		opts = append(opts, "host="+host.String())
		// QEMU's DHCP and DNS addresses default to .15 and .3 of the
		// network: keep them off the guest's and the host's.
		for _, n := range []int{3, 4, 5} {
			dns := nextIP(ipnet.IP, n)
			if !dns.Equal(ip) && !dns.Equal(host) {
				opts = append(opts, "dns="+dns.String())
				break
			}
		}
		for _, n := range []int{15, 16, 17} {
			d := nextIP(ipnet.IP, n)
			if !d.Equal(ip) && !d.Equal(host) && ipnet.Contains(d) {
				opts = append(opts, "dhcpstart="+d.String())
				break
			}
		}
	}
	port, err := freePort()
	if err != nil {
		p.skip = "no free host port to forward: " + err.Error()
		return p
	}
	p.hostPort = port
	opts = append(opts, fmt.Sprintf("hostfwd=tcp:127.0.0.1:%d-%s:%d", port, p.guestIP, p.check.Port))
	p.userNet = strings.Join(opts, ",")
	un := make([]string, len(dom.NICs))
	un[0] = p.userNet
	qo.UserNet = un
	p.capture = filepath.Join(dir, "net0.pcap")
	qo.Extra = append(qo.Extra, "-object", "filter-dump,id=xen2kvm-dump0,netdev=net0,file="+strings.ReplaceAll(p.capture, ",", ",,"))
	return p
}

func nextIP(base net.IP, n int) net.IP {
	ip := make(net.IP, 4)
	v := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	v += uint32(n)
	ip[0], ip[1], ip[2], ip[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
	return ip
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// prove tries the TCP port until it answers or the timeout passes, then
// looks for the guest's answers in the capture.
func (p *netPlan) prove(ctx context.Context, vm *VM) *NetProof {
	res := &NetProof{Port: p.check.Port, UserNet: p.userNet, Capture: p.capture}
	if p.mac != nil {
		res.MAC = p.mac.String()
	}
	if p.guestIP != nil {
		res.GuestIP = p.guestIP.String()
	}
	if p.skip != "" {
		res.Detail = "not tried: " + p.skip
		return res
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(p.hostPort))
	deadline := time.Now().Add(p.check.Timeout)
	var lastTCP string
tries:
	for attempt := 1; ; attempt++ {
		banner, accepted, err := tryTCP(ctx, addr)
		switch {
		case banner != "":
			res.OK, res.Method, res.Banner = true, ProofTCP, banner
			res.Detail = fmt.Sprintf("TCP port %d of %s answered through the host forward %s: %q", p.check.Port, res.GuestIP, addr, banner)
			return res
		case accepted:
			// The user network accepts the host side at once; whether the
			// guest accepted shows in the capture.
			a := p.captured()
			if a.synAck {
				res.OK, res.Method = true, ProofTCP
				res.Detail = fmt.Sprintf("TCP port %d of %s accepted the connection (SYN-ACK from the guest in the capture), sending nothing", p.check.Port, res.GuestIP)
				return res
			}
			lastTCP = "closed without an answer"
			if a.rst && attempt >= 3 {
				// Nothing listens (yet): give a service still starting
				// a few tries before settling for the reset.
				break tries
			}
		case err != nil:
			lastTCP = err.Error()
		}
		if time.Now().After(deadline) || ctx.Err() != nil || vm.exited() {
			break tries
		}
		select {
		case <-time.After(2 * time.Second):
		case <-ctx.Done():
		case <-vm.done:
		}
	}
	a := p.captured()
	switch {
	case a.rst:
		res.OK, res.Method = true, ProofTCPReset
		res.Detail = fmt.Sprintf("nothing listens on TCP port %d of %s, but the guest's network stack answered the connection with a reset (in the capture, %d frames from %s)", p.check.Port, res.GuestIP, a.sent, res.MAC)
	case a.arp:
		res.OK, res.Method = true, ProofARP
		res.Detail = fmt.Sprintf("no TCP answer on port %d (%s), but the guest answered ARP for %s (%d frames from %s in the capture)", p.check.Port, lastTCP, res.GuestIP, a.sent, res.MAC)
	case a.icmp:
		res.OK, res.Method = true, ProofICMP
		res.Detail = fmt.Sprintf("no TCP answer on port %d (%s), but the guest answered ICMP echo from %s", p.check.Port, lastTCP, res.GuestIP)
	default:
		res.Detail = fmt.Sprintf("no answer from the guest within %v: TCP port %d of %s: %s; no ARP or ICMP answer in the capture", p.check.Timeout, p.check.Port, res.GuestIP, lastTCP)
		if a.sent == 0 {
			res.Detail += fmt.Sprintf(" (not one frame from %s: is the NIC's driver loaded and the interface up?)", res.MAC)
		} else {
			res.Detail += fmt.Sprintf(" (%d frames from %s, source addresses %s)", a.sent, res.MAC, strings.Join(a.ips, ", "))
		}
	}
	return res
}

func (p *netPlan) captured() guestAnswers {
	data, err := os.ReadFile(p.capture)
	if err != nil {
		return guestAnswers{}
	}
	frames, err := ParsePcap(data)
	if err != nil {
		return guestAnswers{}
	}
	return answers(frames, p.mac, p.guestIP, p.check.Port)
}

// tryTCP connects to addr and reads what the other side sends first
// (accepted tells the connection was made, banner is "" when nothing
// came within 5 seconds or the other side closed).
func tryTCP(ctx context.Context, addr string) (banner string, accepted bool, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, _ := io.ReadAtLeast(c, buf, 1)
	line, _, _ := strings.Cut(string(buf[:n]), "\n")
	return strings.TrimSpace(line), true, nil
}
