package scratch

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSweep(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	live, err := New("x2k-test-")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(live.Path, "vmlinuz"), []byte("k"), 0o644)
	// A killed process: the marker stays, its lock went with the process.
	killed, err := New("x2k-test-")
	if err != nil {
		t.Fatal(err)
	}
	killed.lock.Close()
	kept, err := New("x2k-test-")
	if err != nil {
		t.Fatal(err)
	}
	kept.Keep()
	foreign := filepath.Join(os.TempDir(), "x2k-test-foreign")
	os.Mkdir(foreign, 0o755) // no marker: not made by New
	other := filepath.Join(os.TempDir(), "x2k-other-1")
	os.Mkdir(other, 0o755)
	os.WriteFile(filepath.Join(other, marker), nil, 0o600) // another prefix

	next, err := New("x2k-test-")
	if err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string]bool{live.Path: true, killed.Path: false, kept.Path: true, foreign: true, other: true, next.Path: true} {
		if _, err := os.Stat(dir); (err == nil) != want {
			t.Errorf("%s: exists %v, want %v", dir, err == nil, want)
		}
	}
	for _, d := range []*Dir{live, next} {
		if err := d.Remove(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(d.Path); !os.IsNotExist(err) {
			t.Errorf("%s not removed", d.Path)
		}
	}
	if _, err := New("a/b"); err == nil {
		t.Error("a prefix with / accepted")
	}
}
