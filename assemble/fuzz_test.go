package assemble

import (
	"strings"
	"testing"
)

func FuzzParseFstab(f *testing.F) {
	f.Add(fstab)
	f.Add(lvmFstab)
	f.Add("/dev/x /mnt/a\\040b\\ ext3 defaults\n\\\\ \\0 \\777\n")
	f.Fuzz(func(t *testing.T, text string) {
		for _, e := range parseFstab(text) {
			if e.spec == "" || e.dir == "" || e.typ == "" || strings.ContainsAny(e.typ, " \t\n") {
				t.Fatalf("bad entry %+v", e)
			}
		}
	})
}
