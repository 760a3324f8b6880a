package pipeline

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseManifest(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "guests.yaml")
	m, err := ParseManifest([]byte(`defaults:
  output: kvm
  format: qcow2
  disk_map:
    /var/lib/xen/images: images
    /dev/vg0: /srv/lvs
  boot_check: true
guests:
  - config: etc-xen/web01
  - config: /srv/etc-xen/db02
    format: raw
    output: /srv/kvm-db
    boot_check: false
    allow_drift: true
    disk_map:
      /var/lib/xen/images: /mnt/db
    kernel_rpm: rpms/kernel.rpm
    virtio_win: iso/virtio-win.iso
`), path)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Guests) != 2 {
		t.Fatalf("%d guests", len(m.Guests))
	}
	g := m.Guests[0]
	if g.Config != filepath.Join(dir, "etc-xen/web01") || g.Output != filepath.Join(dir, "kvm") || g.Format != "qcow2" || !g.BootCheck || g.AllowDrift || g.Line != 9 {
		t.Errorf("guest 0: %+v", g)
	}
	if len(g.DiskMap) != 2 || g.DiskMap[0] != (PathMap{Old: "/var/lib/xen/images", New: filepath.Join(dir, "images")}) || g.DiskMap[1].New != "/srv/lvs" {
		t.Errorf("guest 0 disk map: %+v", g.DiskMap)
	}
	g = m.Guests[1]
	if g.Config != "/srv/etc-xen/db02" || g.Output != "/srv/kvm-db" || g.Format != "raw" || g.BootCheck || !g.AllowDrift || len(g.DiskMap) != 1 || g.DiskMap[0].New != "/mnt/db" || g.KernelRPM != filepath.Join(dir, "rpms/kernel.rpm") {
		t.Errorf("guest 1: %+v", g)
	}
	if g.VirtioWin != filepath.Join(dir, "iso/virtio-win.iso") || m.Guests[0].VirtioWin != "" {
		t.Errorf("virtio_win: %q, %q", m.Guests[0].VirtioWin, g.VirtioWin)
	}
}

func TestParseManifestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string // each must appear in the error
	}{
		{"unknown top key", "defaults: {output: o}\nguest:\n  - config: a\n", []string{"m.yaml:2: unknown key \"guest\"", "no guests list"}},
		{"unknown guest key", "guests:\n  - config: a\n    output: o\n    fromat: raw\n", []string{"m.yaml:4: unknown key \"fromat\""}},
		{"unknown default key", "defaults:\n  output: o\n  jobs: 3\nguests:\n  - config: a\n", []string{"m.yaml:3: unknown key \"jobs\""}},
		{"bad format", "guests:\n  - config: a\n    output: o\n    format: vmdk\n", []string{"m.yaml:4: format \"vmdk\""}},
		{"no output", "guests:\n  - config: a\n", []string{"m.yaml:2: guest", "has no output"}},
		{"no config", "defaults: {output: o}\nguests:\n  - format: raw\n", []string{"m.yaml:3: guest without config"}},
		{"duplicate", "defaults: {output: o}\nguests:\n  - config: a\n  - config: a\n", []string{"m.yaml:4:", "already listed on line 3"}},
		{"bad bool", "defaults: {output: o, boot_check: maybe}\nguests:\n  - config: a\n", []string{"boot_check must be true or false"}},
		{"bad allow_drift", "defaults: {output: o, allow_drift: 2}\nguests:\n  - config: a\n", []string{"allow_drift must be true or false"}},
		{"bad disk map", "defaults: {output: o, disk_map: [a, b]}\nguests:\n  - config: a\n", []string{"disk_map must be a mapping"}},
		{"syntax", "guests:\n  - config: a\n   output: b\n", []string{"m.yaml:1: did not find expected"}},
		{"tab", "guests:\n\t- config: a\n", []string{"m.yaml:2: found character that cannot start any token"}},
		{"not a mapping", "- a\n- b\n", []string{"must be a mapping"}},
		{"empty", "", []string{"empty manifest"}},
		{"empty list", "guests: []\n", []string{"the guests list is empty"}},
		{"config in defaults", "defaults: {config: x, output: o}\nguests:\n  - config: a\n", []string{"config belongs on a guest"}},
		{"kernel_rpm in defaults", "defaults: {kernel_rpm: x, output: o}\nguests:\n  - config: a\n", []string{"kernel_rpm belongs on a guest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.yaml), "m.yaml")
			if err == nil {
				t.Fatal("no error")
			}
			var me *ManifestError
			if !errors.As(err, &me) {
				t.Errorf("%T is not a *ManifestError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("defaults:\n  output: kvm\n  disk_map:\n    /a: b\nguests:\n  - config: x\n    format: raw\n"))
	f.Add([]byte("guests:\n  - config: a\n    output: o\n    boot_check: false\n"))
	f.Add([]byte("guests: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := ParseManifest(data, "/m/fuzz.yaml")
		if err != nil {
			return
		}
		for _, g := range m.Guests {
			if !filepath.IsAbs(g.Config) || !filepath.IsAbs(g.Output) || (g.Format != "qcow2" && g.Format != "raw") {
				t.Fatalf("accepted guest %+v", g)
			}
		}
	})
}

func TestLoadManifestMissing(t *testing.T) {
	if _, err := LoadManifest(filepath.Join(t.TempDir(), "nope.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

func TestParseManifestSSH(t *testing.T) {
	dir := t.TempDir()
	m, err := ParseManifest([]byte(`defaults:
  output: kvm
  source_host: ssh://root@xen01
guests:
  - config: web01
  - config: ssh://admin@xen02:2222/db02
  - config: etc-xen/app03
  - config: old04
    source_host: ssh://xen03
`), filepath.Join(dir, "m.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ssh://root@xen01/web01", "ssh://admin@xen02:2222/db02", filepath.Join(dir, "etc-xen/app03"), "ssh://xen03/old04"}
	for i, g := range m.Guests {
		if g.Config != want[i] {
			t.Errorf("guest %d: config %q, want %q", i, g.Config, want[i])
		}
	}
	for _, tc := range []struct{ yaml, want string }{
		{"defaults: {output: o, source_host: ssh://xen01/web01}\nguests:\n  - config: a\n", "m.yaml:1: source_host ssh://xen01/web01 names a guest"},
		{"defaults: {output: o, source_host: /etc/xen}\nguests:\n  - config: a\n", "m.yaml:1: source_host: bad ssh URL"},
		{"defaults: {output: o}\nguests:\n  - config: ssh://xen01\n", "m.yaml:3: config ssh://xen01 names a host"},
		{"defaults: {output: o}\nguests:\n  - config: ssh://xen01:0/a\n", "m.yaml:3: config: bad ssh URL"},
		{"defaults: {output: o, source_host: ssh://xen01}\nguests:\n  - config: .hidden\n", "m.yaml:3: config \".hidden\" on ssh://xen01"},
	} {
		_, err := ParseManifest([]byte(tc.yaml), "m.yaml")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
}
