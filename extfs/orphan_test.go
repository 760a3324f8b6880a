package extfs

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// An image left with orphans (as after a crash with files deleted or
// truncated while open) is cleaned up on a writable open, as the kernel
// does at mount, and then passes e2fsck.
func TestOrphansProcessed(t *testing.T) {
	testutil.NeedTool(t, "debugfs")
	for _, k := range []fsKind{fsKinds[1], fsKinds[3]} {
		t.Run(k.name, func(t *testing.T) {
			img := mkfs(t, k, buildTreeOpts(t, 0, false), 16)
			ro, err := Open(openDev(t, img, false), ReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			ino := func(p string) string {
				fi, err := ro.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				return strconv.FormatUint(fi.Sys().(*guestfs.Stat).Ino, 10)
			}
			deleted, truncated := ino("data/indirect"), ino("data/odd")
			script := strings.Join([]string{
				"unlink /data/indirect",
				"sif <" + deleted + "> links_count 0",
				"sif <" + deleted + "> dtime " + truncated,
				"sif <" + truncated + "> size 100",
				"sif <" + truncated + "> dtime 0",
				"ssv last_orphan " + deleted,
			}, "\n") + "\n"
			cmd := exec.Command("debugfs", "-w", "-f", "-", img)
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("debugfs: %v\n%s", err, out)
			}
			if err := exec.Command("e2fsck", "-fn", img).Run(); err == nil {
				t.Fatal("e2fsck finds nothing to fix before the orphans are processed; the test proves nothing")
			}
			fsys, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			fsys.Close()
			e2fsck(t, img)
			if got := debugfsCat(t, img, "data/odd"); string(got) != string(pattern(4097, 3)[:100]) {
				t.Errorf("truncated orphan reads %d bytes", len(got))
			}
		})
	}
}
