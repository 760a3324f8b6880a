package pipeline

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestChoose(t *testing.T) {
	const mib = 1 << 20
	cands := []candidate{
		{URI: "a", FreeMem: 8000 * mib, PoolAvail: 10 * mib}, // most memory, pool too small
		{URI: "b", FreeMem: 4000 * mib, PoolAvail: 900 * mib},
		{URI: "c", FreeMem: 6000 * mib, PoolAvail: 900 * mib},
		{URI: "d", Err: errors.New("connection refused")},
		{URI: "e", FreeMem: 100 * mib, PoolAvail: 9000 * mib}, // too little memory
	}
	for _, tc := range []struct {
		name      string
		mem, disk int64
		want      string
		err       error
	}{
		{"most free memory with room", 512 * mib, 500 * mib, "c", nil},
		{"small disk fits the biggest host", 512 * mib, 5 * mib, "a", nil},
		{"no room anywhere", 512 * mib, 5000 * mib, "", errNoRoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			uri, why, err := choose(cands, tc.mem, tc.disk)
			if !errors.Is(err, tc.err) || uri != tc.want {
				t.Fatalf("choose: %q, %v; want %q, %v", uri, err, tc.want, tc.err)
			}
			if err == nil && (!strings.Contains(why, tc.want) || !strings.Contains(why, "connection refused")) {
				t.Errorf("explanation %q does not name the pick and the unreachable host", why)
			}
		})
	}
}

func TestParseManifestDestinations(t *testing.T) {
	dir := t.TempDir()
	m, err := ParseManifest([]byte(`defaults:
  output: kvm
  to: [qemu+ssh://root@kvm01/system, qemu+ssh://root@kvm02/system]
  pool: images
guests:
  - config: web01
  - config: db02
    to: qemu:///system
    pool: fast
`), filepath.Join(dir, "m.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if g := m.Guests[0]; !slices.Equal(g.To, []string{"qemu+ssh://root@kvm01/system", "qemu+ssh://root@kvm02/system"}) || g.Pool != "images" {
		t.Errorf("guest 0: to %v pool %q", g.To, g.Pool)
	}
	if g := m.Guests[1]; !slices.Equal(g.To, []string{"qemu:///system"}) || g.Pool != "fast" {
		t.Errorf("guest 1 (pinned): to %v pool %q", g.To, g.Pool)
	}
	_, err = ParseManifest([]byte("defaults:\n  output: kvm\n  to: {a: b}\nguests:\n  - config: x\n"), filepath.Join(dir, "m.yaml"))
	if err == nil || !strings.Contains(err.Error(), "m.yaml:3: to must be a libvirt URI or a list") {
		t.Errorf("to as a mapping: %v", err)
	}
}
