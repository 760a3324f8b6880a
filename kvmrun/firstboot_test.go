package kvmrun

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/config"
)

// TestBootFollowsReboots: a guest that reboots once on its own is
// followed to its login prompt and the reboot is counted (QEMU runs
// without -no-reboot); one that keeps rebooting fails with ErrRebootLoop
// after the allowed number, long before the timeout; the serial
// console's problems are collected with their line numbers.
func TestBootFollowsReboots(t *testing.T) {
	t.Run("reboots once", func(t *testing.T) {
		dir := t.TempDir()
		argv := filepath.Join(dir, "argv")
		scenario(t, map[string]string{"FAKEQEMU_SERIAL": "testdata/serial/rhel5-relabel-reboot.txt", "FAKEQEMU_AFTER": "run",
			"FAKEQEMU_LINE_DELAY": "60ms", "FAKEQEMU_ARGV": argv})
		dom := testDomain()
		dom.OnReboot = "destroy" // the check follows the reboot all the same
		res, err := Boot(context.Background(), dom, WithQEMU(fakeQEMU), WithAccel(AccelTCG),
			WithTimeout(30*time.Second), WithShutdownGrace(300*time.Millisecond), WithMaxReboots(3))
		if err != nil {
			t.Fatal(err)
		}
		if res.Reboots != 1 {
			t.Errorf("reboots %d, want 1", res.Reboots)
		}
		b, _ := os.ReadFile(argv)
		if slices.Contains(strings.Fields(string(b)), "-no-reboot") {
			t.Errorf("QEMU ran with -no-reboot: %s", b)
		}
		want := []Finding{
			{Kind: FindingFailed, Line: 17, Text: "Bringing up interface eth0:  [FAILED]"},
			{Kind: FindingReadOnly, Line: 18, Text: "touch: /var/lock/subsys/network: Read-only file system"},
		}
		if len(res.Findings) != len(want) {
			t.Fatalf("findings %+v, want %+v", res.Findings, want)
		}
		for i, f := range res.Findings {
			if f.Kind != want[i].Kind || f.Line != want[i].Line || f.Text != want[i].Text || f.Seconds <= 0 || f.Seconds > 30 {
				t.Errorf("finding %d: %+v, want %+v", i, f, want[i])
			}
		}
		if res.Findings[1].Seconds < res.Findings[0].Seconds {
			t.Errorf("findings out of time order: %+v", res.Findings)
		}
	})
	t.Run("reboot loop", func(t *testing.T) {
		scenario(t, map[string]string{"FAKEQEMU_SERIAL": "testdata/serial/rhel5-reboot-loop.txt", "FAKEQEMU_AFTER": "run",
			"FAKEQEMU_LINE_DELAY": "450ms"}) // a reboot every 4 s, past resetBurst
		start := time.Now()
		res, err := Boot(context.Background(), testDomain(), WithQEMU(fakeQEMU), WithAccel(AccelTCG),
			WithTimeout(60*time.Second), WithShutdownGrace(300*time.Millisecond), WithMaxReboots(2))
		var be *BootError
		if !errors.As(err, &be) || !errors.Is(err, ErrRebootLoop) {
			t.Fatalf("got %v, want a *BootError wrapping ErrRebootLoop", err)
		}
		if took := time.Since(start); took > 30*time.Second {
			t.Errorf("took %v to see the loop", took)
		}
		if res == nil || res.Reboots != 3 {
			t.Errorf("result %+v, want 3 reboots counted", res)
		}
	})
	t.Run("no reboots allowed", func(t *testing.T) {
		dir := t.TempDir()
		argv := filepath.Join(dir, "argv")
		scenario(t, map[string]string{"FAKEQEMU_SERIAL": "testdata/serial/rhel5-login.txt", "FAKEQEMU_AFTER": "run", "FAKEQEMU_ARGV": argv})
		res, err := Boot(context.Background(), testDomain(), WithQEMU(fakeQEMU), WithAccel(AccelTCG),
			WithTimeout(30*time.Second), WithShutdownGrace(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(argv)
		if !slices.Contains(strings.Fields(string(b)), "-no-reboot") || res.Reboots != 0 || len(res.Findings) != 0 {
			t.Errorf("argv %q, result %+v: want -no-reboot, no reboots, no findings", b, res)
		}
	})
}

func TestClassify(t *testing.T) {
	for line, want := range map[string]string{
		"Bringing up interface eth0:  [FAILED]":                                     FindingFailed,
		"Starting sshd: [  OK  ]":                                                   "",
		"Kernel panic - not syncing: Attempted to kill init!":                       FindingPanic,
		"VFS: Cannot open root device \"xvda2\" or unknown-block(0,0): error -6":    FindingRoot,
		"fsck.ext3: No such file or directory while trying to open /dev/xvda1":      FindingFsck,
		"/dev/vda2: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.":                   FindingFsck,
		"touch: cannot touch '/var/lock/subsys/network': Read-only file system":     FindingReadOnly,
		"INIT: Id \"co\" respawning too fast: disabled for 5 minutes":               FindingRespawn,
		"BUG: unable to handle kernel NULL pointer dereference at 0000000000000000": FindingOops,
		"Checking filesystems": "",
		"insmod: can't insert '/lib/modules/2.6.18-164.el5/extra/xenpv/xen-vbd.ko': No such device": FindingXen,
		"mkdumprd: dump target /dev/xvda1 (ext3) is not a block device":                             FindingXen,
		"Loading xenblk.ko module": FindingXen,
		"Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar": FindingDebugKernel,
		"Bringing up interface eth0:  [  OK  ]":                                    "",
		"Starting xen2kvm-rpmdb:  [  OK  ]":                                        "",
		"xennet device eth0 does not seem to be present, delaying initialization.": FindingFailed,
		"Device eth0 has different MAC address than expected, ignoring.":           FindingFailed,
	} {
		if got := classify(line); got != want {
			t.Errorf("classify(%q) = %q, want %q", line, got, want)
		}
	}
}

// TestPlanNetCheck: the user network is shaped to a static guest's own
// address, with the host on its gateway and QEMU's DNS and DHCP
// addresses kept off both; a DHCP guest gets QEMU's default network.
func TestPlanNetCheck(t *testing.T) {
	dom := testDomain()
	for _, tc := range []struct {
		name    string
		c       NetCheck
		userNet string
		guestIP string
	}{
		{"static", NetCheck{GuestIP: "192.168.122.50", Prefix: 24, Gateway: "192.168.122.1"},
			"net=192.168.122.0/24,host=192.168.122.1,dns=192.168.122.3,dhcpstart=192.168.122.15,hostfwd=tcp:127.0.0.1:PORT-192.168.122.50:22", "192.168.122.50"},
		{"static on .3 and .15, gateway off the network", NetCheck{GuestIP: "10.1.0.15", Prefix: 16, Gateway: "10.2.0.1", Port: 80},
			"net=10.1.0.0/16,host=10.1.0.1,dns=10.1.0.3,dhcpstart=10.1.0.16,hostfwd=tcp:127.0.0.1:PORT-10.1.0.15:80", "10.1.0.15"},
		{"dhcp", NetCheck{}, "hostfwd=tcp:127.0.0.1:PORT-10.0.2.15:22", "10.0.2.15"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var qo config.QEMUOptions
			p := planNetCheck(tc.c, dom, &qo, "/run/x")
			if p.skip != "" {
				t.Fatal(p.skip)
			}
			want := strings.ReplaceAll(tc.userNet, "PORT", strconv.Itoa(p.hostPort))
			if len(qo.UserNet) != 1 || qo.UserNet[0] != want || p.guestIP.String() != tc.guestIP {
				t.Errorf("user net %q guest %s, want %q %s", qo.UserNet, p.guestIP, want, tc.guestIP)
			}
			argv := config.QEMUArgs(dom, qo)
			if !slices.Contains(argv, "filter-dump,id=xen2kvm-dump0,netdev=net0,file=/run/x/net0.pcap") {
				t.Errorf("no capture in %q", argv)
			}
		})
	}
	var qo config.QEMUOptions
	qo.Net = "bridge"
	if p := planNetCheck(NetCheck{}, dom, &qo, "/run/x"); p.skip == "" || qo.UserNet != nil {
		t.Errorf("bridge networking: want no plan, got %+v", p)
	}
	noNIC := testDomain()
	noNIC.NICs = nil
	if p := planNetCheck(NetCheck{}, noNIC, &config.QEMUOptions{}, "/run/x"); p.skip != "the guest has no NIC" {
		t.Errorf("no NIC: skip %q", p.skip)
	}
}

// pcapFile builds a little-endian pcap capture of Ethernet frames.
func pcapFile(frames ...[]byte) []byte {
	var b bytes.Buffer
	hdr := make([]byte, 24)
	binary.LittleEndian.PutUint32(hdr[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(hdr[4:], 2)
	binary.LittleEndian.PutUint16(hdr[6:], 4)
	binary.LittleEndian.PutUint32(hdr[16:], 65535)
	binary.LittleEndian.PutUint32(hdr[20:], 1)
	b.Write(hdr)
	for i, f := range frames {
		rec := make([]byte, 16)
		binary.LittleEndian.PutUint32(rec[0:], uint32(1700000000+i))
		binary.LittleEndian.PutUint32(rec[8:], uint32(len(f)))
		binary.LittleEndian.PutUint32(rec[12:], uint32(len(f)))
		b.Write(rec)
		b.Write(f)
	}
	return b.Bytes()
}

var (
	guestMAC = net.HardwareAddr{0x00, 0x16, 0x3e, 0x12, 0x34, 0x56}
	slirpMAC = net.HardwareAddr{0x52, 0x55, 0x0a, 0x00, 0x02, 0x02}
)

func ether(src, dst net.HardwareAddr, typ uint16, payload []byte) []byte {
	f := append(append(append([]byte{}, dst...), src...), byte(typ>>8), byte(typ))
	return append(f, payload...)
}

func arpFrame(src net.HardwareAddr, op uint16, sender net.IP) []byte {
	p := []byte{0, 1, 8, 0, 6, 4, byte(op >> 8), byte(op)}
	p = append(p, src...)
	p = append(p, sender.To4()...)
	p = append(p, make([]byte, 10)...)
	return ether(src, slirpMAC, 0x0806, p)
}

func ipFrame(src net.HardwareAddr, from net.IP, proto byte, l4 []byte) []byte {
	ip := make([]byte, 20)
	ip[0], ip[9] = 0x45, proto
	copy(ip[12:], from.To4())
	return ether(src, slirpMAC, 0x0800, append(ip, l4...))
}

func tcpSeg(srcPort uint16, flags byte) []byte {
	s := make([]byte, 20)
	binary.BigEndian.PutUint16(s[0:], srcPort)
	s[12], s[13] = 0x50, flags
	return s
}

func TestParsePcapAnswers(t *testing.T) {
	ip := net.ParseIP("192.168.122.50")
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   guestAnswers
	}{
		{"arp reply", [][]byte{arpFrame(slirpMAC, 1, net.ParseIP("192.168.122.1")), arpFrame(guestMAC, 2, ip)},
			guestAnswers{sent: 1, arp: true}},
		{"arp reply for another address", [][]byte{arpFrame(guestMAC, 2, net.ParseIP("10.0.2.15"))}, guestAnswers{sent: 1}},
		{"syn-ack on the port", [][]byte{ipFrame(guestMAC, ip, 6, tcpSeg(22, tcpSYN|tcpACK))},
			guestAnswers{sent: 1, synAck: true, ips: []string{"192.168.122.50"}}},
		{"rst on the port", [][]byte{ipFrame(guestMAC, ip, 6, tcpSeg(22, 0x14))}, guestAnswers{sent: 1, rst: true, ips: []string{"192.168.122.50"}}},
		{"rst from another port", [][]byte{ipFrame(guestMAC, ip, 6, tcpSeg(80, 0x14))}, guestAnswers{sent: 1, ips: []string{"192.168.122.50"}}},
		{"echo reply", [][]byte{ipFrame(guestMAC, ip, 1, []byte{0, 0, 0, 0})}, guestAnswers{sent: 1, icmp: true, ips: []string{"192.168.122.50"}}},
		{"only the host talks", [][]byte{arpFrame(slirpMAC, 1, net.ParseIP("192.168.122.1")), ipFrame(slirpMAC, net.ParseIP("192.168.122.1"), 6, tcpSeg(22, tcpSYN|tcpACK))},
			guestAnswers{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := pcapFile(tc.frames...)
			frames, err := ParsePcap(data)
			if err != nil {
				t.Fatal(err)
			}
			if len(frames) != len(tc.frames) {
				t.Fatalf("%d frames, want %d", len(frames), len(tc.frames))
			}
			got := answers(frames, guestMAC, ip, 22)
			if got.sent != tc.want.sent || got.arp != tc.want.arp || got.icmp != tc.want.icmp || got.synAck != tc.want.synAck || got.rst != tc.want.rst || !slices.Equal(got.ips, tc.want.ips) {
				t.Errorf("answers %+v, want %+v", got, tc.want)
			}
			// A capture cut inside its last record keeps the frames before.
			if cut, err := ParsePcap(data[:len(data)-3]); err != nil || len(cut) != len(tc.frames)-1 {
				t.Errorf("truncated capture: %d frames, %v", len(cut), err)
			}
		})
	}
	for _, bad := range [][]byte{nil, []byte("not a capture at all, no"), append(pcapFile()[:20], 105, 0, 0, 0)} {
		if _, err := ParsePcap(bad); !errors.Is(err, ErrPcap) {
			t.Errorf("ParsePcap(%q): %v, want ErrPcap", bad, err)
		}
	}
}

func FuzzParsePcap(f *testing.F) {
	ip := net.ParseIP("10.0.2.15")
	f.Add(pcapFile(arpFrame(guestMAC, 2, ip), ipFrame(guestMAC, ip, 6, tcpSeg(22, 0x12)), ipFrame(guestMAC, ip, 1, []byte{0})))
	f.Add(pcapFile([]byte{1, 2, 3}))
	f.Add([]byte{0xa1, 0xb2, 0xc3, 0xd4})
	f.Fuzz(func(t *testing.T, data []byte) {
		frames, err := ParsePcap(data)
		if err != nil {
			return
		}
		answers(frames, guestMAC, ip, 22)
		answers(frames, nil, nil, 22)
	})
}

func TestCountResets(t *testing.T) {
	at := func(s float64) time.Time {
		return time.Unix(1700000000, 0).Add(time.Duration(s * float64(time.Second)))
	}
	guest := []byte(`{"guest": true, "reason": "guest-reset"}`)
	host := []byte(`{"guest": false, "reason": "host-qmp-system-reset"}`)
	events := []QMPEvent{
		{Name: "RESET", Data: guest, Time: at(10)},
		{Name: "RESET", Data: guest, Time: at(10.2)}, // the firmware's own resets after the reboot
		{Name: "RESET", Data: guest, Time: at(10.4)},
		{Name: "POWERDOWN", Time: at(20)},
		{Name: "RESET", Data: host, Time: at(30)}, // not the guest's
		{Name: "RESET", Data: guest, Time: at(40)},
		{Name: "RESET", Time: at(60)}, // old QEMU: no data
	}
	if n := countResets(events); n != 3 {
		t.Errorf("countResets = %d, want 3", n)
	}
}
