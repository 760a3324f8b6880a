package kvmrun

import "testing"

func TestClue(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  string
	}{
		// LVM not finding the root VG explains the mount failure after it.
		{[]string{"Scanning logical volumes", `  Volume group "VolGroup00" not found`, "mount: error mounting /dev/root on /sysroot as ext3: No such file or directory", "Kernel panic - not syncing: Attempted to kill init!"},
			`Volume group "VolGroup00" not found`},
		{[]string{"ok", "VFS: Cannot open root device \"vda2\" or unknown-block(0,0)"}, `VFS: Cannot open root device "vda2" or unknown-block(0,0)`},
		{[]string{"all fine", "login:"}, ""},
	} {
		if got := clue(tc.lines); got != tc.want {
			t.Errorf("clue(%q) = %q, want %q", tc.lines, got, tc.want)
		}
	}
}
