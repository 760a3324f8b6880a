package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
	"github.com/xen2kvm/xen2kvm/internal/wintest"
)

// TestInspectLooksInsideDisks builds a one-filesystem guest with mke2fs -d
// and checks that inspect reports its distribution and filesystem, and
// leaves the image untouched.
func TestInspectLooksInsideDisks(t *testing.T) {
	mke2fs := testutil.NeedTool(t, "mke2fs")
	dir := t.TempDir()
	tree := filepath.Join(dir, "tree")
	files := map[string]string{
		"etc/redhat-release": "CentOS release 5.4 (Final)\n",
		"etc/fstab":          "/dev/xvda1 / ext3 defaults 1 1\nproc /proc proc defaults 0 0\n",
	}
	for name, content := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, "root.img")
	if out, err := exec.Command(mke2fs, "-q", "-F", "-t", "ext3", "-L", "/", "-d", tree, img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v: %s", err, out)
	}
	cfg := filepath.Join(dir, "guest")
	xm := "name = \"guest\"\nmemory = 512\nbootloader = \"/usr/bin/pygrub\"\ndisk = ['tap:aio:/var/lib/xen/images/root.img,xvda1,w']\n"
	if err := os.WriteFile(cfg, []byte(xm), 0o644); err != nil {
		t.Fatal(err)
	}
	before := testutil.HashFile(t, img)

	code, out, stderr := runCLI(t, "inspect", cfg, "--disk-map", "/var/lib/xen/images="+dir)
	if code != exitOK {
		t.Fatalf("inspect: exit %d: %s", code, stderr)
	}
	for _, want := range []string{"CentOS release 5.4 (Final)", "/dev/xvda1 ext3 label=/ on /"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	code, out, stderr = runCLI(t, "inspect", "--json", cfg, "--disk-map", "/var/lib/xen/images="+dir)
	if code != exitOK {
		t.Fatalf("inspect --json: exit %d: %s", code, stderr)
	}
	var got struct {
		Guest struct {
			Filesystems []struct{ Type, Label string }
			OS          struct {
				Distro string
				Major  int
			}
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if got.Guest.OS.Distro != "centos" || got.Guest.OS.Major != 5 || len(got.Guest.Filesystems) != 1 || got.Guest.Filesystems[0].Type != "ext3" {
		t.Errorf("inspect --json guest = %+v", got.Guest)
	}
	if after := testutil.HashFile(t, img); after != before {
		t.Error("inspect changed the disk image")
	}
}

// TestInspectWindows checks that inspect reads a Windows guest's NTFS
// volume and registry (a fixture made by mkntfs, ntfs-3g and hivex) and
// leaves the image untouched, for Server 2003 and 2008 R2.
func TestInspectWindows(t *testing.T) {
	for _, tc := range []struct {
		spec          guestgen.WindowsSpec
		want          []string // lines of the text output
		version, arch string
		pv            int
	}{
		{guestgen.WindowsSpec{Name: "w2k3", Version: "2003", Arch: "x86", PV: "redhat", Hostname: "FILES01"}, []string{
			"os:          Microsoft Windows Server 2003 Service Pack 2 (5.2.3790, x86)",
			"host name FILES01",
			"boot configuration boot.ini",
			"current control set ControlSet001",
			"RTC in local time",
			"rhelscsi (Red Hat, start 0 boot)",
			"atapi (start 3 on demand)",
		}, "5.2", "x86", 3},
		{guestgen.WindowsSpec{Name: "w2k8r2", Version: "2008R2", Arch: "x64", PV: "gplpv", Hostname: "APP03", UTC: true}, []string{
			"os:          Windows Server 2008 R2 Enterprise Service Pack 1 (6.1.7601, AMD64)",
			"host name APP03",
			"system volume hda1, Windows folder Windows, boot configuration Boot/BCD",
			"current control set ControlSet001",
			"RTC in UTC",
			"xenvbd (GPLPV/Citrix, start 0 boot)",
			"pciide (start 3 on demand)",
		}, "6.1", "AMD64", 5},
	} {
		t.Run(tc.spec.Name, func(t *testing.T) {
			g := wintest.Build(t, tc.spec)
			before := testutil.HashFile(t, g.Images[0])
			dm := g.XenImageDir + "=" + filepath.Dir(g.Images[0])
			code, out, stderr := runCLI(t, "inspect", g.Config, "--disk-map", dm)
			if code != exitOK {
				t.Fatalf("inspect: exit %d: %s", code, stderr)
			}
			for _, want := range tc.want {
				if !strings.Contains(out, want) {
					t.Errorf("inspect output lacks %q:\n%s", want, out)
				}
			}
			code, out, stderr = runCLI(t, "inspect", "--json", g.Config, "--disk-map", dm)
			if code != exitOK {
				t.Fatalf("inspect --json: exit %d: %s", code, stderr)
			}
			var got struct {
				Guest struct {
					Windows struct {
						Volume, Hostname, Version, Arch string
						PVDrivers                       []struct{ Name string } `json:"pv_drivers"`
					}
				}
			}
			if err := json.Unmarshal([]byte(out), &got); err != nil {
				t.Fatalf("inspect --json: %v\n%s", err, out)
			}
			w := got.Guest.Windows
			if w.Volume != "hda1" || w.Hostname != tc.spec.Hostname || w.Version != tc.version || w.Arch != tc.arch || len(w.PVDrivers) != tc.pv {
				t.Errorf("inspect --json windows = %+v", w)
			}
			if testutil.HashFile(t, g.Images[0]) != before {
				t.Error("inspect changed the disk image")
			}
		})
	}
}
