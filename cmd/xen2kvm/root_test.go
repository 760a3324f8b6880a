package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/cli from the current commands")

// runCLI runs the CLI in-process and returns its exit code and outputs.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runWith(context.Background(), args, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "--version")
	if code != exitOK || !strings.Contains(out, version) {
		t.Fatalf("--version: code %d, output %q", code, out)
	}
}

func TestUsageErrorsExit2(t *testing.T) {
	for _, args := range [][]string{
		{"no-such-command"},
		{"--no-such-flag"},
		{"gen-docs"},
		{"disk", "convert", "only-src"},
		{"disk", "info", "--no-such-flag", "x"},
		{"boot", "a", "b"},
		{"completion", "bash", "extra"}, // cobra's own command
		{"migrate", "ssh://root@xen01/web01", "-o", "out", "--ssh-client", "putty"},
		{"migrate", "ssh://root@xen01/web01", "-o", "out", "--ssh-client", "go", "--ssh-compression"},
		{"inspect", "ssh://root@xen01", "--ssh-client", "go", "--ssh-compression"},
	} {
		code, _, stderr := runCLI(t, args...)
		if code != exitUsage {
			t.Errorf("%v: exit %d, want %d (stderr %q)", args, code, exitUsage, stderr)
		}
		if !strings.HasPrefix(stderr, "xen2kvm: error: ") {
			t.Errorf("%v: stderr %q lacks the error prefix", args, stderr)
		}
	}
}

func TestCompletion(t *testing.T) {
	code, out, stderr := runCLI(t, "completion", "bash")
	if code != exitOK || !strings.Contains(out, "xen2kvm") {
		t.Fatalf("completion bash: code %d, stderr %q", code, stderr)
	}
}

// TestDocsUpToDate checks that docs/cli matches the commands; run
// `go test ./cmd/xen2kvm -run TestDocsUpToDate -update` after changing them.
func TestDocsUpToDate(t *testing.T) {
	want := filepath.Join("..", "..", "docs", "cli")
	dir := t.TempDir()
	if *update {
		dir = want
		os.RemoveAll(want)
	}
	if code, _, stderr := runCLI(t, "gen-docs", dir); code != exitOK {
		t.Fatalf("gen-docs: %s", stderr)
	}
	if *update {
		return
	}
	got, _ := filepath.Glob(filepath.Join(dir, "*.md"))
	old, _ := filepath.Glob(filepath.Join(want, "*.md"))
	if len(got) != len(old) {
		t.Fatalf("docs/cli has %d pages, the commands give %d: run go test ./cmd/xen2kvm -run TestDocsUpToDate -update", len(old), len(got))
	}
	for _, g := range got {
		a, _ := os.ReadFile(g)
		b, err := os.ReadFile(filepath.Join(want, filepath.Base(g)))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("docs/cli/%s is stale: run go test ./cmd/xen2kvm -run TestDocsUpToDate -update", filepath.Base(g))
		}
	}
}
