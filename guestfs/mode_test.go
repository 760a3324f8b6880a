package guestfs

import (
	"io/fs"
	"testing"
)

func TestFileMode(t *testing.T) {
	for _, tc := range []struct {
		unix uint32
		want fs.FileMode
	}{
		{0o100644, 0o644},
		{0o104755, fs.ModeSetuid | 0o755},
		{0o042775, fs.ModeDir | fs.ModeSetgid | 0o775},
		{0o041777, fs.ModeDir | fs.ModeSticky | 0o777},
		{0o120777, fs.ModeSymlink | 0o777},
		{0o020620, fs.ModeDevice | fs.ModeCharDevice | 0o620},
		{0o060660, fs.ModeDevice | 0o660},
		{0o010600, fs.ModeNamedPipe | 0o600},
		{0o140755, fs.ModeSocket | 0o755},
	} {
		if got := FileMode(tc.unix); got != tc.want {
			t.Errorf("FileMode(%#o) = %v, want %v", tc.unix, got, tc.want)
		}
	}
}
