package guestgen_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
)

// TestBuildWindows checks the Windows fixtures with the ntfs-3g tools and
// hivex, independently of xen2kvm's own NTFS and hive readers.
func TestBuildWindows(t *testing.T) {
	for _, tc := range []struct {
		spec    guestgen.WindowsSpec
		config  string // the config folder on the volume
		boot    string
		service string // a PV driver service
	}{
		{guestgen.WindowsSpec{Name: "w2k3", Version: "2003", Arch: "x86", PV: "gplpv"}, "WINDOWS/system32/config", "boot.ini", "xenpci"},
		{guestgen.WindowsSpec{Name: "w2k8", Version: "2008", Arch: "x64", PV: "citrix"}, "Windows/System32/config", "Boot/BCD", "xenfilt"},
		{guestgen.WindowsSpec{Name: "w2k3rh", Version: "2003", Arch: "x64", PV: "redhat"}, "WINDOWS/system32/config", "boot.ini", "rhelfltr"},
		{guestgen.WindowsSpec{Name: "w2k8r2", Version: "2008R2", Arch: "x64", PV: "gplpv"}, "Windows/System32/config", "Boot/BCD", "xenvbd"},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			g := wintest.Build(t, tc.spec)
			img, err := os.ReadFile(g.Images[0])
			if err != nil {
				t.Fatal(err)
			}
			start := int64(63 * 512)
			if tc.spec.Version != "2003" {
				start = 2048 * 512
			}
			out := testutil.Run(t, "sfdisk", "--dump", g.Images[0])
			if !strings.Contains(string(out), "type=7, bootable") {
				t.Errorf("partition table:\n%s", out)
			}
			vol := filepath.Join(t.TempDir(), "vol")
			if err := os.WriteFile(vol, img[start:start+24<<20], 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("ntfsfix", "-n", vol).CombinedOutput(); err != nil {
				t.Errorf("ntfsfix -n: %v\n%s", err, out)
			}
			for _, f := range []string{tc.boot, tc.config + "/SOFTWARE"} {
				if _, err := exec.Command("ntfscat", vol, f).Output(); err != nil {
					t.Errorf("ntfscat %s: %v", f, err)
				}
			}
			sys := filepath.Join(t.TempDir(), "SYSTEM")
			b := testutil.Run(t, "ntfscat", vol, tc.config+"/SYSTEM")
			if err := os.WriteFile(sys, b, 0o644); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSpace(string(testutil.Run(t, "hivexget", sys, `\Select`, "Current"))); got != "1" {
				t.Errorf("Select\\Current = %q", got)
			}
			if got := strings.TrimSpace(string(testutil.Run(t, "hivexget", sys, `\ControlSet002\Services\`+tc.service, "Start"))); got != "0" {
				t.Errorf("%s Start = %q", tc.service, got)
			}
			// The slack key merged to leave free cells is gone again.
			for k := range testutil.RegExport(t, sys) {
				if strings.HasPrefix(k, "slack") {
					t.Errorf("SYSTEM hive has %s", k)
				}
			}
			// The product as the SOFTWARE hive holds it (hivexget).
			soft := filepath.Join(t.TempDir(), "SOFTWARE")
			if err := os.WriteFile(soft, testutil.Run(t, "ntfscat", vol, tc.config+"/SOFTWARE"), 0o644); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"2003": "5.2", "2008": "6.0", "2008R2": "6.1"}[tc.spec.Version]
			if got := strings.TrimSpace(string(testutil.Run(t, "hivexget", soft, `\Microsoft\Windows NT\CurrentVersion`, "CurrentVersion"))); got != want {
				t.Errorf("CurrentVersion = %q, want %q", got, want)
			}
			cfg, _ := os.ReadFile(g.Config)
			if !strings.Contains(string(cfg), `builder = "hvm"`) {
				t.Errorf("config:\n%s", cfg)
			}
		})
	}
}
