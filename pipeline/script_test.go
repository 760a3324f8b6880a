package pipeline

import (
	"os/exec"
	"strings"
	"testing"
)

func TestShellArg(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"-m", "-m"},
		{"512M", "512M"},
		{"guest=web 01", "'guest=web 01'"},
		{"it's", `'it'\''s'`},
		{"", "''"},
		{dirMarker + "/g-vmlinuz", `"$dir"/g-vmlinuz`},
		{"file=" + dirMarker + "/g-vda.qcow2,format=qcow2", `file="$qdir"/g-vda.qcow2,format=qcow2`},
		{"file=" + dirMarker + "/my disk.qcow2", `file="$qdir"'/my disk.qcow2'`},
	} {
		if got := shellArg(tc.in); got != tc.want {
			t.Errorf("shellArg(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// TestShellArgRoundTrip runs the quoted words through sh: they come back
// as they went in, with the marker replaced by the folder.
func TestShellArgRoundTrip(t *testing.T) {
	words := []string{"plain", "two words", "it's", `back\slash`, "$HOME", "`id`", "a,b", "file=" + dirMarker + "/x y,z"}
	var script strings.Builder
	script.WriteString(`dir='/the dir,1'; qdir='/the dir,,1'; for a in`)
	for _, w := range words {
		script.WriteString(" " + shellArg(w))
	}
	script.WriteString(`; do printf '%s\n' "$a"; done`)
	out, err := exec.Command("sh", "-c", script.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	want := append(words[:len(words)-1:len(words)-1], "file=/the dir,,1/x y,z")
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestEstimateSize(t *testing.T) {
	for _, tc := range []struct {
		virtual, alloc int64
		format         string
		min, max       int64
	}{
		{8 << 30, 0, "raw", 0, 0},
		{8 << 30, 1 << 30, "raw", 1 << 30, 1 << 30},
		{8 << 30, 0, "qcow2", 64 << 10, 2 << 20},
		{8 << 30, 1 << 30, "qcow2", 1 << 30, 1<<30 + 2<<20},
		{256 << 20, 1, "qcow2", 64 << 10, 1 << 20},
	} {
		got := estimateSize(tc.virtual, tc.alloc, tc.format)
		if got < tc.min || got > tc.max {
			t.Errorf("estimateSize(%d, %d, %s) = %d, want %d..%d", tc.virtual, tc.alloc, tc.format, got, tc.min, tc.max)
		}
	}
}
