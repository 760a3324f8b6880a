// Package testutil holds small helpers shared by xen2kvm's tests.
package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// InCI tells whether the tests run under CI (CI=true), where every
// external tool is installed and a missing one is a failure, not a skip.
func InCI() bool { return os.Getenv("CI") == "true" }

// NeedTool returns the path of an external program the test needs. When it
// is missing the test is skipped with a message, or fails under CI.
func NeedTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Unavailable(t, "%s not found on PATH (scripts/test installs it)", name)
	}
	return p
}

// Unavailable skips the test with the message, or fails it under CI.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("required under CI: "+format, args...)
	}
	t.Skipf(format, args...)
}

// HashFile returns the SHA-256 of a file, for proving a source image was
// not written.
func HashFile(t testing.TB, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// TreeDigest describes every entry under root (not following symlinks):
// its path, type and permissions, a regular file's SHA-256 and a
// symlink's target, one line each, skipping the subtrees in exclude.
// Two digests differ when anything was created, removed or changed.
func TreeDigest(t testing.TB, root string, exclude ...string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		for _, x := range exclude {
			if p == x {
				return filepath.SkipDir
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %v", p, fi.Mode())
		switch {
		case fi.Mode().IsRegular():
			fmt.Fprintf(&b, " %s", HashFile(t, p))
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			fmt.Fprintf(&b, " -> %s", target)
		}
		b.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatalf("digest of %s: %v", root, err)
	}
	return b.String()
}

// WriteTree writes files (slash-separated path: content) under dir,
// creating the folders they need, with mode 0644.
func WriteTree(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
