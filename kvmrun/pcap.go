package kvmrun

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strings"
)

// ErrPcap: a packet capture that is not a pcap file of Ethernet frames.
var ErrPcap = errors.New("not a pcap capture of Ethernet frames")

// Frame is one Ethernet frame of a packet capture, decoded as far as a
// network proof needs.
type Frame struct {
	Src, Dst  net.HardwareAddr
	EtherType uint16
	// ARP: Op 1 request, 2 reply; SenderIP is the address the sender
	// claims.
	ARPOp    uint16
	SenderIP net.IP
	// IPv4: source address, protocol, and for ICMP its type, for TCP its
	// source port and flags.
	SrcIP    net.IP
	Proto    uint8
	ICMPType uint8
	SrcPort  uint16
	TCPFlags uint8
}

// TCP flags.
const (
	tcpSYN = 0x02
	tcpRST = 0x04
	tcpACK = 0x10
)

// ParsePcap decodes a libpcap capture (as QEMU's filter-dump writes it:
// link type Ethernet, either byte order). A capture cut short in its
// last record, as one read while QEMU still writes it is, yields the
// frames before it.
func ParsePcap(data []byte) ([]Frame, error) {
	if len(data) < 24 {
		return nil, fmt.Errorf("%w: %d bytes", ErrPcap, len(data))
	}
	var bo binary.ByteOrder
	switch binary.LittleEndian.Uint32(data) {
	case 0xa1b2c3d4, 0xa1b23c4d:
		bo = binary.LittleEndian
	case 0xd4c3b2a1, 0x4d3cb2a1:
		bo = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: magic %#x", ErrPcap, binary.LittleEndian.Uint32(data))
	}
	if lt := bo.Uint32(data[20:]); lt != 1 {
		return nil, fmt.Errorf("%w: link type %d", ErrPcap, lt)
	}
	var frames []Frame
	for off := 24; off+16 <= len(data); {
		n := int(bo.Uint32(data[off+8:]))
		off += 16
		if n < 0 || n > len(data)-off {
			break
		}
		if f, ok := decodeFrame(data[off : off+n]); ok {
			frames = append(frames, f)
		}
		off += n
	}
	return frames, nil
}

func decodeFrame(b []byte) (Frame, bool) {
	if len(b) < 14 {
		return Frame{}, false
	}
	f := Frame{Dst: net.HardwareAddr(b[0:6]), Src: net.HardwareAddr(b[6:12]), EtherType: binary.BigEndian.Uint16(b[12:])}
	p := b[14:]
	switch f.EtherType {
	case 0x0806:
		if len(p) >= 28 && binary.BigEndian.Uint16(p[2:]) == 0x0800 && p[4] == 6 && p[5] == 4 {
			f.ARPOp = binary.BigEndian.Uint16(p[6:])
			f.SenderIP = net.IP(p[14:18])
		}
	case 0x0800:
		if len(p) < 20 || p[0]>>4 != 4 {
			break
		}
		ihl := int(p[0]&0x0f) * 4
		f.SrcIP = net.IP(p[12:16])
		f.Proto = p[9]
		if ihl < 20 || len(p) < ihl {
			break
		}
		l4 := p[ihl:]
		switch f.Proto {
		case 1:
			if len(l4) >= 1 {
				f.ICMPType = l4[0]
			}
		case 6:
			if len(l4) >= 14 {
				f.SrcPort = binary.BigEndian.Uint16(l4[0:])
				f.TCPFlags = l4[13]
			}
		}
	}
	return f, true
}

// guestAnswers summarises what a capture shows of the guest at mac with
// address ip: the frames it sent, and whether it answered ARP for ip, an
// ICMP echo, or a TCP connection to port with SYN-ACK.
type guestAnswers struct {
	sent   int
	arp    bool
	icmp   bool
	synAck bool
	rst    bool     // the guest reset a connection to the port: closed, but its stack answered
	ips    []string // source addresses the guest used
}

func answers(frames []Frame, mac net.HardwareAddr, ip net.IP, port int) guestAnswers {
	var a guestAnswers
	seen := map[string]bool{}
	for _, f := range frames {
		if mac != nil && !strings.EqualFold(f.Src.String(), mac.String()) {
			continue
		}
		a.sent++
		if f.SrcIP != nil && !f.SrcIP.IsUnspecified() && !seen[f.SrcIP.String()] {
			seen[f.SrcIP.String()] = true
			a.ips = append(a.ips, f.SrcIP.String())
		}
		fromIP := ip == nil || f.SrcIP.Equal(ip)
		switch {
		case f.ARPOp == 2 && (ip == nil || f.SenderIP.Equal(ip)):
			a.arp = true
		case f.Proto == 1 && f.ICMPType == 0 && fromIP:
			a.icmp = true
		case f.Proto == 6 && fromIP && int(f.SrcPort) == port && f.TCPFlags&(tcpSYN|tcpACK) == tcpSYN|tcpACK:
			a.synAck = true
		case f.Proto == 6 && fromIP && int(f.SrcPort) == port && f.TCPFlags&tcpRST != 0:
			a.rst = true
		}
	}
	return a
}
