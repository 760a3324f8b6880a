package guestfs_test

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"
	"time"

	"github.com/xen2kvm/xen2kvm/guestfs"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// tree builds a host directory: files maps names to content, links names to
// symlink targets.
func tree(t *testing.T, files map[string]string, links map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	testutil.WriteTree(t, dir, files)
	for name, target := range links {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, p); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDirFSFSTest(t *testing.T) {
	dir := tree(t, map[string]string{
		"etc/fstab":           "/dev/xvda1 / ext3 defaults 1 1\n",
		"boot/grub/grub.conf": "default=0\n",
	}, map[string]string{
		"etc/grub.conf": "../boot/grub/grub.conf",
	})
	if err := fstest.TestFS(guestfs.DirFS(dir), "etc/fstab", "boot/grub/grub.conf", "etc/grub.conf"); err != nil {
		t.Fatal(err)
	}
}

// TestDirFSEscape proves that no guest name reaches a host file outside
// the root, whatever the symlinks inside the guest say.
func TestDirFSEscape(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret"), []byte("host"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := tree(t, map[string]string{
		"etc/passwd":    "guest\n",
		"secret":        "guest secret\n",
		"etc/shadow":    "guest shadow\n",
		"var/lib/empty": "",
	}, map[string]string{
		"abs":            "/etc/passwd",
		"up":             "../../../../../etc/passwd",
		"hostabs":        outside + "/secret", // means guest's <outside>/secret: absent
		"etc/rel":        "../../../secret",
		"loop1":          "loop2",
		"loop2":          "loop1",
		"dirlink":        "/etc",
		"deep/up":        "../../..",
		"missingthenup":  "nothere/../../../../secret",
		"var/lib/parent": "..",
	})
	fsys := guestfs.DirFS(dir)
	tests := []struct {
		name    string
		want    string
		wantErr error
	}{
		{"abs", "guest\n", nil},
		{"up", "guest\n", nil},
		{"etc/rel", "guest secret\n", nil},
		{"hostabs", "", fs.ErrNotExist},
		{"dirlink/shadow", "guest shadow\n", nil},
		{"deep/up/secret", "guest secret\n", nil},
		{"missingthenup", "", fs.ErrNotExist},
		{"var/lib/parent/lib/empty", "", nil},
		{"../secret", "", fs.ErrInvalid},
		{"/etc/passwd", "", fs.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b, err := fsys.ReadFile(tc.name)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ReadFile(%q) = %q, %v; want %v", tc.name, b, err, tc.wantErr)
				}
				return
			}
			if err != nil || string(b) != tc.want {
				t.Fatalf("ReadFile(%q) = %q, %v; want %q", tc.name, b, err, tc.want)
			}
		})
	}
	if _, err := fsys.ReadFile("loop1"); err == nil {
		t.Error("symlink loop: no error")
	}

	// Writing through an escaping symlink lands inside the guest.
	if err := fsys.WriteFile("hostabs", []byte("x"), 0o644); err == nil {
		t.Error("write through a link to a missing guest directory succeeded")
	}
	if err := fsys.WriteFile("etc/rel", []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(outside, "secret")); string(b) != "host" {
		t.Errorf("host file outside the root changed: %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "secret")); string(b) != "changed\n" {
		t.Errorf("guest /secret = %q, want the write", b)
	}
}

func TestDirFSWrite(t *testing.T) {
	dir := tree(t, map[string]string{"etc/fstab": "old\n"}, map[string]string{"etc/link": "fstab"})
	if err := os.Chmod(filepath.Join(dir, "etc/fstab"), 0o600); err != nil {
		t.Fatal(err)
	}
	fsys := guestfs.DirFS(dir)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(fsys.WriteFile("etc/link", []byte("new\n"), 0o644))
	fi, err := fsys.Stat("etc/fstab")
	must(err)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after rewrite = %v, want 0600 kept", fi.Mode())
	}
	if st, ok := fi.Sys().(*guestfs.Stat); !ok || st.Nlink != 1 {
		t.Errorf("Sys() = %#v, want *guestfs.Stat with Nlink 1", fi.Sys())
	}
	if fi, err := fsys.Lstat("etc/link"); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Errorf("Lstat(etc/link) = %v, %v; want a symlink", fi, err)
	}
	must(fsys.Mkdir("etc/modprobe.d", 0o755))
	must(fsys.WriteFile("etc/modprobe.d/virtio.conf", []byte("alias eth0 virtio_net\n"), 0o644))
	must(fsys.Symlink("/etc/fstab", "fstab.lnk"))
	if b, err := fsys.ReadFile("fstab.lnk"); err != nil || string(b) != "new\n" {
		t.Errorf("through new symlink: %q, %v", b, err)
	}
	if target, err := fsys.ReadLink("fstab.lnk"); err != nil || target != "/etc/fstab" {
		t.Errorf("ReadLink = %q, %v", target, err)
	}
	must(fsys.Rename("etc/fstab", "etc/fstab.orig"))
	if _, err := fsys.Stat("etc/fstab"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after rename, Stat(etc/fstab) err = %v", err)
	}
	must(fsys.Remove("fstab.lnk"))
	must(fsys.Chmod("etc/fstab.orig", 0o640))
	must(fsys.Chown("etc/fstab.orig", os.Getuid(), os.Getgid()))
	mt := time.Date(2009, 9, 2, 0, 0, 0, 0, time.UTC)
	must(fsys.Chtimes("etc/fstab.orig", mt, mt))
	fi, err = fsys.Stat("etc/fstab.orig")
	must(err)
	if fi.Mode().Perm() != 0o640 || !fi.ModTime().Equal(mt) || fi.Name() != "fstab.orig" {
		t.Errorf("Stat after chmod/chtimes: %v %v %q", fi.Mode(), fi.ModTime(), fi.Name())
	}
	if err := fsys.Remove("."); err == nil {
		t.Error("Remove(.) succeeded")
	}
}
