// Package testkernel provides a real Linux kernel and its modules for boot
// tests: Debian's linux-image package, fetched with apt-get download and
// unpacked (never installed) into a cache directory.
//
//	k, err := testkernel.Get(ctx)
//	// k.Vmlinuz, k.ModulesDir ("…/lib/modules/6.1.0-56-amd64"), k.Release
package testkernel

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// Kernel is an unpacked kernel package.
type Kernel struct {
	Release    string // uname -r, e.g. 6.1.0-56-amd64
	Vmlinuz    string // path to the bzImage
	Config     string // path to the kernel's config file
	ModulesDir string // path to lib/modules/RELEASE
	Root       string // the unpacked package tree
}

// CacheDir is where fetched packages are unpacked: $XEN2KVM_CACHE, else
// the user cache directory's xen2kvm folder.
func CacheDir() (string, error) {
	if d := os.Getenv("XEN2KVM_CACHE"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(d, "xen2kvm"), nil
}

var pkgRe = regexp.MustCompile(`Depends: (linux-image-[0-9][^\s]*-amd64)\b`)

// Get returns the kernel of Debian's linux-image-amd64, downloading and
// unpacking it on first use. Concurrent callers (parallel tests, several
// test binaries) share one download through a lock file.
func Get(ctx context.Context) (*Kernel, error) {
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cache, "kernel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, fmt.Errorf("locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	if k, err := find(filepath.Join(dir, "root")); err == nil {
		return k, nil
	}
	out, err := command(ctx, "", "apt-cache", "depends", "linux-image-amd64")
	if err != nil {
		return nil, err
	}
	m := pkgRe.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("apt-cache depends linux-image-amd64: no kernel package in %q", out)
	}
	pkg := string(m[1])
	dl := filepath.Join(dir, "dl")
	os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o777); err != nil {
		return nil, err
	}
	if _, err := command(ctx, dl, "apt-get", "download", "-q", pkg); err != nil {
		return nil, err
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb in %s, found %d", pkg, dl, len(debs))
	}
	tmp := filepath.Join(dir, "root.tmp")
	os.RemoveAll(tmp)
	if _, err := command(ctx, "", "dpkg-deb", "-x", debs[0], tmp); err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "root")
	os.RemoveAll(root)
	if err := os.Rename(tmp, root); err != nil {
		return nil, err
	}
	os.RemoveAll(dl)
	return find(root)
}

func find(root string) (*Kernel, error) {
	vms, _ := filepath.Glob(filepath.Join(root, "boot", "vmlinuz-*"))
	if len(vms) != 1 {
		return nil, fmt.Errorf("no single kernel under %s", root)
	}
	rel := strings.TrimPrefix(filepath.Base(vms[0]), "vmlinuz-")
	k := &Kernel{
		Release:    rel,
		Vmlinuz:    vms[0],
		Config:     filepath.Join(root, "boot", "config-"+rel),
		ModulesDir: filepath.Join(root, "lib", "modules", rel),
		Root:       root,
	}
	if _, err := os.Stat(k.ModulesDir); err != nil {
		return nil, err
	}
	return k, nil
}

func command(ctx context.Context, dir, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out, nil
}

// ForTest returns the kernel, skipping the test when it cannot be had
// (failing under CI, where it must be).
func ForTest(t testing.TB) *Kernel {
	t.Helper()
	k, err := Get(context.Background())
	if err != nil {
		testutil.Unavailable(t, "no test kernel: %v", err)
	}
	return k
}
