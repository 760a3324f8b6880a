package pipeline_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/report"
)

// TestE2EGuestMAC migrates the plain guest from a config whose vif gives
// no MAC: its ifcfg-eth0 has HWADDR (the vif's MAC at install), and the
// guest's network scripts bring eth0 up only on a card with that
// address, so the KVM NIC takes it, in the libvirt XML (which
// virt-xml-validate accepts) and the launch script, and the report says
// where it came from. Nothing is booted: the boot with the guest's MAC
// is what TestE2EMigrateBoots proves for a config that gives it.
func TestE2EGuestMAC(t *testing.T) {
	needE2E(t)
	validate := testutil.NeedTool(t, "virt-xml-validate")
	g := guest(t, guestgen.CentOS5PV)
	out := filepath.Join(t.TempDir(), "kvm")
	code, stdout, stderr := run(t, "migrate", noVifMAC(t, g), "-o", out, "--disk-map", diskMap(g), "--no-boot-check", "--json")
	if code != 0 {
		t.Fatalf("migrate: exit %d\n%s", code, stderr)
	}
	var rep report.Guest
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("report: %v\n%s", err, stdout)
	}
	mac := strings.ToLower(g.MAC)
	if len(rep.Source.NICs) != 1 {
		t.Fatalf("report NICs %+v", rep.Source.NICs)
	}
	if n := rep.Source.NICs[0]; n.MAC != "" || n.NewMAC != mac || n.MACFrom != "HWADDR of /etc/sysconfig/network-scripts/ifcfg-eth0" {
		t.Errorf("report NIC %+v, want new MAC %s from ifcfg-eth0's HWADDR", n, mac)
	}
	for _, w := range rep.Warnings {
		if strings.Contains(w, "MAC") || strings.Contains(w, "HWADDR") {
			t.Errorf("warning %q", w)
		}
	}
	xml := filepath.Join(out, g.Name+".xml")
	data, err := os.ReadFile(xml)
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`<mac address=["']([0-9a-f:]+)["']`).FindAllSubmatch(data, -1); len(m) != 1 || string(m[0][1]) != mac {
		t.Errorf("the domain XML's MACs %q, want %s", m, mac)
	}
	if b, err := exec.Command(validate, xml, "domain").CombinedOutput(); err != nil {
		t.Errorf("virt-xml-validate: %v\n%s", err, b)
	}
	script, err := os.ReadFile(filepath.Join(out, g.Name+".sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "mac="+mac) {
		t.Errorf("the launch script does not give the NIC %s:\n%s", mac, script)
	}
}
