package main

import (
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/report"
)

// TestPrintSummary pins the lines migrate prints after a guest is
// written locally or delivered to libvirt.
func TestPrintSummary(t *testing.T) {
	start := time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)
	guest := func(boot *report.Boot, dest *report.Destination) *report.Guest {
		return &report.Guest{
			Name: "web01", OutDir: "/srv/kvm/web01", Started: start, Finished: start.Add(75 * time.Second),
			Disks:       []report.Disk{{Target: "xvda", Output: "web01-vda.qcow2", Format: "qcow2", OutputSize: 3 << 30}},
			Warnings:    []string{"vnc password dropped"},
			Boot:        boot,
			Destination: dest,
		}
	}
	okBoot := &report.Boot{Ran: true, OK: true, Seconds: 12.4, Accel: "kvm"}
	tests := []struct {
		name string
		g    *report.Guest
		want string
	}{
		{
			name: "local, booted with first-boot proof",
			g: guest(&report.Boot{Ran: true, OK: true, Seconds: 12.4, Accel: "kvm", Reboots: 1,
				Network: &report.NetworkProof{OK: true, Proof: "tcp", Detail: "port 22 answered"}}, nil),
			want: `Migrated web01 to /srv/kvm/web01 in 75 s
  xvda -> web01-vda.qcow2 (qcow2, 3.0 GiB written)
  boot check: login prompt reached in 12 s (kvm)
  the guest rebooted 1 time(s) on its own first
  network: proven by tcp (port 22 answered)
  warning: vnc password dropped
  run it: /srv/kvm/web01/web01.sh
`,
		},
		{
			name: "local, boot skipped",
			g:    guest(&report.Boot{Skipped: "disabled (--no-boot-check)"}, nil),
			want: `Migrated web01 to /srv/kvm/web01 in 75 s
  xvda -> web01-vda.qcow2 (qcow2, 3.0 GiB written)
  boot check skipped: disabled (--no-boot-check)
  warning: vnc password dropped
  run it: /srv/kvm/web01/web01.sh
`,
		},
		{
			name: "delivered, booted there",
			g:    guest(okBoot, &report.Destination{URI: "qemu:///system", Pool: "default", DomainType: "kvm"}),
			want: `Migrated web01 to qemu:///system (pool default, domain type kvm) in 75 s
  xvda -> volume web01-vda.qcow2 (qcow2)
  boot check on the destination: login prompt reached in 12 s (kvm)
  warning: vnc password dropped
  start it: virsh -c qemu:///system start web01
  report: /srv/kvm/web01/web01.report.json
`,
		},
		{
			name: "delivered and started, boot skipped",
			g:    guest(&report.Boot{Skipped: "not a Linux guest"}, &report.Destination{URI: "qemu:///system", Pool: "p", DomainType: "qemu", Started: true}),
			want: `Migrated web01 to qemu:///system (pool p, domain type qemu) in 75 s
  xvda -> volume web01-vda.qcow2 (qcow2)
  boot check skipped: not a Linux guest
  warning: vnc password dropped
  started: virsh -c qemu:///system console web01
  report: /srv/kvm/web01/web01.report.json
`,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b strings.Builder
			printSummary(&b, tc.g)
			if got := b.String(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}
