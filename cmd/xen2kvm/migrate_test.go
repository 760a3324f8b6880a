package main

import (
	"bytes"
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

// TestConsolePlain: without a terminal, progress is a log line per 10%.
func TestConsolePlain(t *testing.T) {
	var buf bytes.Buffer
	c := newConsole(&buf)
	for done := int64(0); done <= 1000; done += 50 {
		c.progress(pipeline.Progress{Guest: "web01", Disk: "vda", Done: done, Total: 1000})
	}
	c.logger().Info("copied disk", "target", "vda", "seconds", 1.5)
	c.done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 12 || lines[0] != "xen2kvm: web01/vda: 0% (0 B of 1000 B)" || lines[10] != "xen2kvm: web01/vda: 100% (1000 B of 1000 B)" ||
		lines[11] != "xen2kvm: copied disk target=vda seconds=1.5" {
		t.Errorf("output:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "\x1b[") {
		t.Error("escape sequences without a terminal")
	}
}

// TestConsoleBars: on a terminal, each disk has its own bar line, and log
// lines are printed above the bars.
func TestConsoleBars(t *testing.T) {
	var buf bytes.Buffer
	c := newConsole(&buf)
	c.tty = true
	c.progress(pipeline.Progress{Guest: "g", Disk: "vda", Done: 0, Total: 1 << 20})
	c.progress(pipeline.Progress{Guest: "g", Disk: "vdb", Done: 0, Total: 2 << 20})
	c.progress(pipeline.Progress{Guest: "g", Disk: "vdb", Done: 2 << 20, Total: 2 << 20, Finish: true})
	c.logger().Info("copied disk", "target", "vdb")
	c.progress(pipeline.Progress{Guest: "g", Disk: "vda", Done: 1 << 20, Total: 1 << 20, Finish: true})
	c.done()
	out := buf.String()
	if len(c.index) != 2 || !strings.Contains(out, "g/vda") || !strings.Contains(out, "g/vdb") || !strings.Contains(out, "100%") {
		t.Errorf("bars: %q", out)
	}
	// The log line clears the bar block (2 lines up, clear to the end)
	// and redraws both bars below it.
	i := strings.Index(out, "\x1b[2A\r\x1b[Jxen2kvm: copied disk target=vdb\n")
	if i < 0 || !strings.Contains(out[i:], "g/vda") || !strings.Contains(out[i:], "g/vdb") {
		t.Errorf("log line not printed above the bars: %q", out)
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
