package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunUnknownPreset(t *testing.T) {
	err := run(context.Background(), []string{"-o", t.TempDir(), "rhel9"})
	if err == nil || !strings.Contains(err.Error(), `no preset "rhel9"`) || !strings.Contains(err.Error(), "centos5-lvm") {
		t.Fatalf("got %v, want an error naming the presets", err)
	}
}

func TestRunHVM(t *testing.T) {
	dir := t.TempDir()
	if err := run(context.Background(), []string{"-o", dir, "win2003"}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"win2003/etc/xen/win2003", "win2003/images/win2003.img"} {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Error(err)
		}
	}
}
