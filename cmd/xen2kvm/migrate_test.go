package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/convert"
	"github.com/xen2kvm/xen2kvm/pipeline"
)

func TestMigrateUsageErrors(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "web01")
	os.WriteFile(cfg, []byte("name = 'web01'\n"), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"migrate"}, "accepts 1 arg"},
		{[]string{"migrate", cfg}, "missing -o OUTDIR"},
		{[]string{"migrate", cfg, "-o", "x", "--format", "vmdk"}, `--format "vmdk"`},
		{[]string{"migrate", cfg, "-o", "x", "--disk-map", "nonsense"}, "want OLD=NEW"},
		{[]string{"migrate", cfg, "-o", "x", "--disk-map", "rel/path=/x"}, "OLD must be an absolute path"},
		{[]string{"migrate", cfg, "-o", "x", "--boot-check", "--no-boot-check"}, "exclude each other"},
		{[]string{"migrate", cfg, "-o", "x", "--accel", "hvf"}, `--accel "hvf"`},
		{[]string{"batch", "m.yaml", "--jobs", "0"}, "at least 1"},
		// Caught before the config or its disks are read (web01 has
		// none): a typo in a rule name is a usage error.
		{[]string{"migrate", cfg, "-o", "x", "--skip-rule", "kudzu,initrdd"}, `unknown conversion rule "initrdd"`},
		{[]string{"batch", "m.yaml", "--skip-rule", "nosuch"}, `unknown conversion rule "nosuch"`},
	} {
		code, _, stderr := runCLI(t, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

func TestMigrateFailuresExit1(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := runCLI(t, "migrate", filepath.Join(dir, "missing"), "-o", filepath.Join(dir, "out"))
	if code != exitFail || !strings.HasPrefix(stderr, "xen2kvm: error: ") || !strings.Contains(stderr, "missing") {
		t.Errorf("missing config: exit %d, stderr %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); err == nil {
		t.Error("a failed migration created the output folder")
	}
}

func TestBatchManifestErrorNamesLine(t *testing.T) {
	m := filepath.Join(t.TempDir(), "guests.yaml")
	os.WriteFile(m, []byte("defaults:\n  output: kvm\nguests:\n  - config: web01\n    fromat: raw\n"), 0o644)
	code, _, stderr := runCLI(t, "batch", m)
	if code != exitFail || !strings.Contains(stderr, "guests.yaml:5: unknown key \"fromat\"") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestHelpTeaches(t *testing.T) {
	for _, c := range []string{"migrate", "batch"} {
		code, out, _ := runCLI(t, c, "--help")
		if code != exitOK || !strings.Contains(out, "Examples:") || !strings.Contains(out, "xen2kvm "+c) {
			t.Errorf("%s --help: exit %d, %q", c, code, out)
		}
	}
}

func TestParseDiskMaps(t *testing.T) {
	maps, err := parseDiskMaps([]string{"/var/lib/xen/images=/srv/import", "/dev/vg0/=/srv/lvs"})
	if err != nil {
		t.Fatal(err)
	}
	want := []pipeline.PathMap{{Old: "/var/lib/xen/images", New: "/srv/import"}, {Old: "/dev/vg0", New: "/srv/lvs"}}
	if len(maps) != 2 || maps[0] != want[0] || maps[1] != want[1] {
		t.Errorf("got %+v, want %+v", maps, want)
	}
}

// TestSkipRuleListsEveryRule: --skip-rule's help names every conversion
// rule, the network rule included.
func TestSkipRuleListsEveryRule(t *testing.T) {
	for _, c := range []string{"migrate", "batch"} {
		code, out, _ := runCLI(t, c, "--help")
		if code != exitOK {
			t.Fatalf("%s --help: exit %d", c, code)
		}
		i := strings.Index(out, "--skip-rule")
		if i < 0 {
			t.Fatalf("%s --help has no --skip-rule: %q", c, out)
		}
		help := strings.Join(strings.Fields(out[i:]), " ")
		for _, r := range convert.Rules() {
			if !strings.Contains(help, " "+r.Name+",") && !strings.Contains(help, " "+r.Name+" (") {
				t.Errorf("%s --help: --skip-rule does not list rule %s", c, r.Name)
			}
		}
	}
}
