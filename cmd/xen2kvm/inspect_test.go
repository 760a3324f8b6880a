package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
)

// inspectCLI runs the CLI in-process.
func inspectCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runWith(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

const inspectDir = "testdata/inspect"

// The images of web01 "moved" into testdata/inspect/images: xvda is
// there, xvdb is not.
var inspectMap = "/var/lib/xen/images=" + inspectDir + "/images"

func TestInspectTextGolden(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"web01", []string{"inspect", "--disk-map", inspectMap, inspectDir + "/web01"}},
		{"two-configs", []string{"inspect", inspectDir + "/web01", inspectDir + "/win2k3.sxp"}},
		{"show-passwords", []string{"inspect", "--show-passwords", inspectDir + "/web01"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, stderr := inspectCLI(t, tc.args...)
			if code != exitOK {
				t.Fatalf("exit %d, stderr %q", code, stderr)
			}
			// --disk-map's NEW is made absolute: the golden files hold
			// paths relative to this folder.
			wd, err := os.Getwd()
			if err != nil {
				t.Fatal(err)
			}
			out = strings.ReplaceAll(out, wd+"/", "")
			golden := filepath.Join(inspectDir, tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (go test -run TestInspect -update creates it)", err)
			}
			if out != string(want) {
				t.Errorf("output differs from %s:\n%s", golden, out)
			}
		})
	}
}

// The golden files hold the whole summary; these check the facts the
// summary must carry, so that -update cannot bless a wrong one.
func TestInspectTextFacts(t *testing.T) {
	code, out, _ := inspectCLI(t, "inspect", "--disk-map", inspectMap, inspectDir+"/web01")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"web01 (" + inspectDir + "/web01, xm)",
		"PV, bootloader /usr/bin/pygrub",
		"1024 MiB (max 2048 MiB)", // the second memory = wins
		"xvda  disk   w  tap:aio  /var/lib/xen/images/web01.img\n",
		"/var/lib/xen/images/web01-data.img  (missing)",
		"(empty drive)",
		"00:16:3e:12:34:56",
		"web01:5: memory is set again (first at line 4)",
		"unknown setting cpu_weight = 512 kept but not used",
		"/" + inspectDir + "/images/web01-data.img (mapped from /var/lib/xen/images/web01-data.img) does not exist",
		"password set",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "hunter3") {
		t.Error("a password is printed without --show-passwords")
	}
}

func TestInspectJSON(t *testing.T) {
	code, out, stderr := inspectCLI(t, "inspect", "--json", "--disk-map", inspectMap, inspectDir+"/web01")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	var obj map[string]any
	if err := json.Unmarshal([]byte(out), &obj); err != nil {
		t.Fatalf("one config gives one JSON object: %v\n%s", err, out)
	}
	for _, key := range []string{"name", "uuid", "type", "memory_mib", "max_memory_mib", "vcpus", "disks", "nics"} {
		if _, ok := obj[key]; !ok {
			t.Errorf("JSON lacks %q", key)
		}
	}
	var d config.Domain
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "web01" || d.Type != config.PV || d.MemoryMiB != 1024 || d.MaxMemoryMiB != 2048 || d.VCPUs != 2 {
		t.Errorf("domain %+v", d)
	}
	if len(d.Disks) != 3 || d.Disks[0].Exists == nil || !*d.Disks[0].Exists || d.Disks[1].Exists == nil || *d.Disks[1].Exists || d.Disks[2].Exists != nil {
		t.Errorf("disks (exists: xvda yes, xvdb no, empty CD-ROM unknown): %+v", d.Disks)
	}
	if d.Disks[0].Backend != "tap:aio" || d.Disks[0].Mode != "w" || d.Disks[2].Device != "cdrom" || d.Disks[2].Mode != "r" {
		t.Errorf("disk fields: %+v", d.Disks)
	}
	nic := obj["nics"].([]any)[0].(map[string]any)
	for _, key := range []string{"mac", "bridge", "model", "script"} {
		if _, ok := nic[key]; !ok {
			t.Errorf("nic JSON lacks %q: %v", key, nic)
		}
	}
	if strings.Contains(out, "hunter2") || strings.Contains(out, "hunter3") {
		t.Error("a password is in the JSON without --show-passwords")
	}

	// Several configs: an array, in argument order.
	code, out, _ = inspectCLI(t, "inspect", "--json", inspectDir+"/web01", inspectDir+"/win2k3.sxp")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	var arr []config.Domain
	if err := json.Unmarshal([]byte(out), &arr); err != nil {
		t.Fatalf("several configs give an array: %v", err)
	}
	if len(arr) != 2 || arr[0].Name != "web01" || arr[1].Name != "win2k3" || arr[1].Type != config.HVM || arr[1].Source.Format != config.FormatSXP {
		t.Errorf("array: %+v", arr)
	}
}

func TestInspectErrors(t *testing.T) {
	t.Run("python config", func(t *testing.T) {
		code, out, stderr := inspectCLI(t, "inspect", inspectDir+"/xmexample2")
		if code != exitFail || out != "" {
			t.Errorf("exit %d, stdout %q", code, out)
		}
		for _, want := range []string{"xen2kvm: error: " + inspectDir + "/xmexample2:3:8: function call int(...)", "xen2kvm: hint: ", "xm create --dryrun"} {
			if !strings.Contains(stderr, want) {
				t.Errorf("stderr lacks %q:\n%s", want, stderr)
			}
		}
	})
	t.Run("one of several bad", func(t *testing.T) {
		code, out, stderr := inspectCLI(t, "inspect", "--json", inspectDir+"/web01", inspectDir+"/xmexample2", inspectDir+"/no-such-file")
		if code != exitFail {
			t.Errorf("exit %d, want %d", code, exitFail)
		}
		var arr []map[string]any
		if err := json.Unmarshal([]byte(out), &arr); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		if len(arr) != 3 || arr[0]["name"] != "web01" || arr[1]["file"] != inspectDir+"/xmexample2" || arr[1]["error"] == nil || arr[2]["error"] == nil {
			t.Errorf("results: %v", arr)
		}
		if !strings.Contains(stderr, "2 of 3 configs could not be read") {
			t.Errorf("stderr %q", stderr)
		}
	})
	t.Run("forced wrong format", func(t *testing.T) {
		code, _, stderr := inspectCLI(t, "inspect", "--format", "sxp", inspectDir+"/web01")
		if code != exitFail || !strings.Contains(stderr, inspectDir+"/web01:") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	})
	for _, args := range [][]string{{"inspect"}, {"inspect", "--format", "ini", inspectDir + "/web01"}, {"inspect", "--disk-map", "nonsense", inspectDir + "/web01"}} {
		code, _, stderr := inspectCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
	}
}

// A disk image that exists but cannot be read: the guest inspection
// fails, and says so as a warning of that config rather than an error.
func TestInspectUnreadableDiskWarns(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "web01.img"), 0o755); err != nil { // a folder where the image should be
		t.Fatal(err)
	}
	code, out, stderr := inspectCLI(t, "inspect", "--json", "--disk-map", "/var/lib/xen/images="+dir, inspectDir+"/web01")
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if !strings.Contains(out, "guest inspection: disk xvda: ") || strings.Contains(out, `"guest"`) {
		t.Errorf("want a guest inspection warning and no guest section:\n%s", out)
	}
}

// inspect and migrate share one --disk-map parser: the same errors, and
// NEW made absolute in both.
func TestDiskMapSharedByInspectAndMigrate(t *testing.T) {
	cfg := inspectDir + "/web01"
	for _, bad := range []string{"nonsense", "rel/path=/x", "=/x", "/x="} {
		_, _, inspectErr := inspectCLI(t, "inspect", "--disk-map", bad, cfg)
		_, _, migrateErr := inspectCLI(t, "migrate", "--dry-run", "--disk-map", bad, cfg)
		if inspectErr == "" || inspectErr != migrateErr {
			t.Errorf("--disk-map %q: inspect says %q, migrate %q", bad, inspectErr, migrateErr)
		}
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := inspectCLI(t, "inspect", "--disk-map", inspectMap, cfg)
	want := "disk xvdb: " + filepath.Join(wd, inspectDir, "images/web01-data.img") + " (mapped from"
	if !strings.Contains(out, want) {
		t.Errorf("inspect output lacks %q (NEW made absolute):\n%s", want, out)
	}
}

func TestInspectStdin(t *testing.T) {
	data, err := os.ReadFile(inspectDir + "/win2k3.sxp")
	if err != nil {
		t.Fatal(err)
	}
	root := newRootCommand()
	var stdout, stderr bytes.Buffer
	root.SetArgs([]string{"inspect", "--json", "-"})
	root.SetIn(bytes.NewReader(data))
	root.SetOut(&stdout)
	root.SetErr(&stderr)
	if err := root.ExecuteContext(context.Background()); err != nil {
		t.Fatalf("%v (stderr %q)", err, stderr.String())
	}
	var d config.Domain
	if err := json.Unmarshal(stdout.Bytes(), &d); err != nil {
		t.Fatal(err)
	}
	if d.Name != "win2k3" || d.Source.File != "<stdin>" || d.Source.Format != config.FormatSXP {
		t.Errorf("got %+v", d)
	}
}
