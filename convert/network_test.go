package convert_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
	"github.com/xen2kvm/xen2kvm/convert"
)

// The network rule hands a NIC the config gives no MAC the HWADDR of the
// guest's ifcfg-ethN (ethN is the N-th NIC) and warns where no NIC will
// have the address a HWADDR names, or where no MAC is given anywhere.
func TestNetworkGuestMACs(t *testing.T) {
	const (
		eth0 = "/etc/sysconfig/network-scripts/ifcfg-eth0"
		eth1 = "/etc/sysconfig/network-scripts/ifcfg-eth1"
	)
	for _, tc := range []struct {
		name  string
		nics  []config.NIC
		files map[string]string // more ifcfg files, by name
		want  []convert.GuestMAC
		warns []string // each a warning must contain, in order
	}{
		{name: "config gives no MAC: the guest's HWADDR", nics: []config.NIC{{}},
			want: []convert.GuestMAC{{NIC: 0, MAC: "00:16:3e:4a:00:02", File: eth0}}},
		{name: "config gives the same MAC", nics: []config.NIC{{MAC: "00:16:3e:4a:00:02"}}},
		{name: "config gives another MAC", nics: []config.NIC{{MAC: "00:16:3e:4a:00:99"}},
			warns: []string{eth0 + " has HWADDR 00:16:3E:4A:00:02 but NIC 0 has MAC 00:16:3e:4a:00:99: the guest will not bring eth0 up"}},
		{name: "no NIC for the ifcfg", nics: nil,
			warns: []string{eth0 + " has HWADDR 00:16:3E:4A:00:02 but the config has no NIC 0"}},
		{name: "in NIC order", nics: []config.NIC{{}, {}},
			files: map[string]string{"ifcfg-eth1": "DEVICE=eth1\nHWADDR=\"00:16:3E:4A:00:11\"\n", "ifcfg-eth1.bak": "HWADDR=00:16:3E:4A:00:BB\n"},
			want:  []convert.GuestMAC{{NIC: 0, MAC: "00:16:3e:4a:00:02", File: eth0}, {NIC: 1, MAC: "00:16:3e:4a:00:11", File: eth1}}},
		{name: "no MAC anywhere", nics: []config.NIC{{}, {}},
			want:  []convert.GuestMAC{{NIC: 0, MAC: "00:16:3e:4a:00:02", File: eth0}},
			warns: []string{"neither the config nor the guest's /etc/sysconfig/network-scripts/ifcfg-eth1 gives NIC 1 a MAC: the KVM NIC gets a MAC of xen2kvm's making"}},
		{name: "HWADDR not a MAC", nics: []config.NIC{{}, {}},
			files: map[string]string{"ifcfg-eth1": "DEVICE=eth1\nHWADDR=00:16:3E\n"},
			want:  []convert.GuestMAC{{NIC: 0, MAC: "00:16:3e:4a:00:02", File: eth0}},
			warns: []string{eth1 + ` has HWADDR "00:16:3E", which is not a MAC address`, "neither the config nor the guest's"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root, rootDir, _ := guestTree(t, "rhel54-pv")
			for name, data := range tc.files {
				if err := os.WriteFile(filepath.Join(rootDir, "etc/sysconfig/network-scripts", name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			g, err := convert.Inspect(root)
			if err != nil {
				t.Fatal(err)
			}
			d := trees[treeIndex(t, "rhel54-pv")].dom
			d.NICs = tc.nics
			p, err := convert.MakePlan(g, root, &d, convert.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.GuestMACs, tc.want) {
				t.Errorf("GuestMACs %+v, want %+v", p.GuestMACs, tc.want)
			}
			var warns []string
			for _, w := range p.Warnings {
				if strings.Contains(w, "NIC") {
					warns = append(warns, w)
				}
			}
			if len(warns) != len(tc.warns) {
				t.Fatalf("NIC warnings %q, want %d", warns, len(tc.warns))
			}
			for i, w := range tc.warns {
				if !strings.Contains(warns[i], w) {
					t.Errorf("warning %q lacks %q", warns[i], w)
				}
			}
			for _, m := range tc.want {
				found := false
				for _, n := range p.Notes {
					found = found || strings.Contains(n, m.MAC) && strings.Contains(n, m.File)
				}
				if !found {
					t.Errorf("no note says NIC %d takes %s from %s: %q", m.NIC, m.MAC, m.File, p.Notes)
				}
			}
			// Left out, the rule hands out no MAC.
			off, err := convert.MakePlan(g, root, &d, convert.Options{Disable: []string{"network"}})
			if err != nil {
				t.Fatal(err)
			}
			if len(off.GuestMACs) != 0 {
				t.Errorf("network rule disabled, GuestMACs %+v", off.GuestMACs)
			}
		})
	}
}
