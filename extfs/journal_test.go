package extfs

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// debugfsBmap returns the physical block of a file's logical block.
func debugfsBmap(t *testing.T, img, path string, lb int) uint64 {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "bmap /"+path+" "+strconv.Itoa(lb), img).Output()
	if err != nil {
		t.Fatalf("debugfs bmap: %v", err)
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatalf("debugfs bmap %s: %q", path, out)
	}
	return n
}

// journalImage builds an ext3 image whose journal needs recovery: debugfs
// logs a new first block of etc/fstab, logs a block of etc/hosts and
// revokes it, and logs a free block.
func journalImage(t *testing.T, k fsKind) (img string, fstabBlk, hostsBlk, freeBlk uint64, newBlock []byte) {
	t.Helper()
	testutil.NeedTool(t, "debugfs")
	testutil.NeedTool(t, "dumpe2fs")
	img = mkfs(t, k, buildTreeOpts(t, 0, false), 16)
	fstabBlk = debugfsBmap(t, img, "etc/fstab", 0)
	hostsBlk = debugfsBmap(t, img, "etc/hosts", 0)
	dev := openDev(t, img, false)
	fsys, err := Open(dev, ReadOnly())
	if err != nil {
		t.Fatal(err)
	}
	freeBlk = fsys.sb.blocksCount - 20 // in the last group, which the small tree leaves free
	bs := fsys.BlockSize()
	newBlock = bytes.Repeat([]byte("J"), bs)
	dir := t.TempDir()
	blkFile := filepath.Join(dir, "blk")
	if err := os.WriteFile(blkFile, newBlock, 0o644); err != nil {
		t.Fatal(err)
	}
	script := strings.Join([]string{
		"jo",
		"jw -b " + strconv.FormatUint(fstabBlk, 10) + " " + blkFile,
		"jw -b " + strconv.FormatUint(hostsBlk, 10) + " " + blkFile,
		"jw -r " + strconv.FormatUint(hostsBlk, 10),
		"jw -b " + strconv.FormatUint(freeBlk, 10) + " " + blkFile,
		"jc",
	}, "\n") + "\n"
	cmd := exec.Command("debugfs", "-w", "-f", "-", img)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs journal write: %v\n%s", err, out)
	}
	out, _ := exec.Command("dumpe2fs", "-h", img).Output()
	if !strings.Contains(string(out), "needs_recovery") {
		t.Fatalf("debugfs did not leave a journal to recover:\n%s", out)
	}
	return img, fstabBlk, hostsBlk, freeBlk, newBlock
}

func readImageBlock(t *testing.T, img string, bs int, n uint64) []byte {
	t.Helper()
	fh, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	b := make([]byte, bs)
	if _, err := fh.ReadAt(b, int64(n)*int64(bs)); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestJournalReplay(t *testing.T) {
	for _, k := range []fsKind{fsKinds[1], fsKinds[4]} {
		t.Run(k.name, func(t *testing.T) {
			img, fstabBlk, hostsBlk, freeBlk, newBlock := journalImage(t, k)
			bs := len(newBlock)
			before := testutil.HashFile(t, img)
			origFstab := debugfsCat(t, img, "etc/fstab")

			// Read-only: the replay is seen but nothing is written.
			ro, err := Open(openDev(t, img, false), ReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			got, err := ro.ReadFile("etc/fstab")
			if err != nil {
				t.Fatal(err)
			}
			if want := newBlock[:len(origFstab)]; !bytes.Equal(got, want) {
				t.Errorf("read-only replay: etc/fstab = %q, want the journaled block", got[:min(len(got), 20)])
			}
			if got, _ := ro.ReadFile("etc/hosts"); string(got) != "127.0.0.1 localhost\n" {
				t.Errorf("revoked block was replayed: etc/hosts = %q", got)
			}
			if testutil.HashFile(t, img) != before {
				t.Fatal("read-only open changed the image")
			}

			// The oracle: e2fsck's own replay on a copy.
			oracle := filepath.Join(t.TempDir(), "oracle.img")
			data, _ := os.ReadFile(img)
			if err := os.WriteFile(oracle, data, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("e2fsck", "-fy", oracle)
			if out, err := cmd.CombinedOutput(); err != nil {
				var ee *exec.ExitError
				if !errors.As(err, &ee) || ee.ExitCode() > 1 {
					t.Fatalf("e2fsck -fy: %v\n%s", err, out)
				}
			}

			// Read-write: replayed into the image, which is then clean.
			rw, err := Open(openDev(t, img, true))
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range []uint64{fstabBlk, hostsBlk, freeBlk} {
				if !bytes.Equal(readImageBlock(t, img, bs, b), readImageBlock(t, oracle, bs, b)) {
					t.Errorf("block %d differs from e2fsck's replay", b)
				}
			}
			if err := rw.WriteFile("etc/after-replay", []byte("ok\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			rw.Close()
			e2fsck(t, img)
			out, _ := exec.Command("dumpe2fs", "-h", img).Output()
			if strings.Contains(string(out), "needs_recovery") {
				t.Error("needs_recovery still set after replay")
			}
			if got := debugfsCat(t, img, "etc/after-replay"); string(got) != "ok\n" {
				t.Errorf("debugfs cat etc/after-replay = %q", got)
			}
		})
	}
}

// A journal this package cannot replay makes Open fail, for reading and
// for writing, without touching the image.
func TestJournalUnreplayableRefused(t *testing.T) {
	img, _, _, _, newBlock := journalImage(t, fsKinds[1])
	bs := len(newBlock)
	// Mark the journal as holding fast commits, which are not replayed here.
	out, err := exec.Command("debugfs", "-R", "bmap <8> 0", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	jblk, _ := strconv.ParseUint(strings.TrimSpace(string(out)), 10, 64)
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 4)
	off := int64(jblk)*int64(bs) + 0x28
	if _, err := fh.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[3] |= jbdIncompatFastCommit
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	before := testutil.HashFile(t, img)
	for _, opts := range [][]Option{nil, {ReadOnly()}} {
		_, err := Open(openDev(t, img, true), opts...)
		var re *RecoveryError
		if !errors.Is(err, ErrNeedsRecovery) || !errors.As(err, &re) || re.Hint() == "" {
			t.Errorf("Open(%d options) = %v, want a RecoveryError", len(opts), err)
		}
	}
	if testutil.HashFile(t, img) != before {
		t.Fatal("the image was written")
	}
}
