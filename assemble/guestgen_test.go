package assemble

import (
	"context"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestGuestgen assembles the realistic guests guestgen builds (the ones
// the demo and the migration tests use).
func TestGuestgen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds guest images (slow)")
	}
	cache, err := testkernel.CacheDir()
	if err != nil {
		testutil.Unavailable(t, "no cache directory for guest images: %v", err)
	}
	tests := []struct {
		spec    guestgen.Spec
		targets []string
		root    string   // the root filesystem's first device name
		mounts  []string // mount points
		files   []string // read through Root
	}{
		{guestgen.CentOS5PV, []string{"xvda"}, "/dev/xvda2", []string{"/", "/boot"},
			[]string{"etc/redhat-release", "boot/grub/grub.conf", "etc/inittab"}},
		{guestgen.CentOS5LVM, []string{"xvda"}, "/dev/VolGroup00/LogVol00", []string{"/", "/boot"},
			[]string{"etc/redhat-release", "boot/grub/grub.conf"}},
		{guestgen.TwoDisks, []string{"xvda", "xvdb"}, "/dev/xvda2", []string{"/", "/boot", "/data"},
			[]string{"etc/redhat-release", "boot/grub/grub.conf"}},
		{guestgen.Windows2003HVM, []string{"hda"}, "", nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.spec.Name, func(t *testing.T) {
			g, err := guestgen.BuildCached(context.Background(), filepath.Join(cache, "guests"), tc.spec)
			if err != nil {
				testutil.Unavailable(t, "building guest %s: %v", tc.spec.Name, err)
			}
			if len(g.Images) != len(tc.targets) {
				t.Fatalf("%d images, want %d", len(g.Images), len(tc.targets))
			}
			var disks []Disk
			for i, img := range g.Images {
				disks = append(disks, Disk{Target: tc.targets[i], Dev: openFile(t, img)})
			}
			guest, err := Open(context.Background(), disks, ReadOnly())
			if err != nil {
				t.Fatal(err)
			}
			defer guest.Close()
			for _, f := range guest.Filesystems {
				t.Logf("%s %s label=%q uuid=%s mount=%s", strings.Join(f.Devices, ","), f.Type, f.Label, f.UUID, f.MountPoint)
			}
			if len(guest.Warnings) > 0 {
				t.Errorf("warnings: %q", guest.Warnings)
			}
			if tc.root == "" {
				if guest.Root != nil {
					t.Errorf("root %v found on a Windows guest", guest.RootFS.Devices)
				}
				if len(guest.Filesystems) == 0 || guest.Filesystems[0].Type != "ntfs" {
					t.Errorf("no NTFS filesystem found: %v", guest.Filesystems)
				}
				return
			}
			if guest.RootFS == nil || guest.RootFS.Devices[0] != tc.root {
				t.Fatalf("root = %v, want %s", guest.RootFS, tc.root)
			}
			var dirs []string
			for _, m := range guest.Mounts {
				dirs = append(dirs, m.Dir)
			}
			if !slices.Equal(dirs, tc.mounts) {
				t.Errorf("mounts = %v, want %v", dirs, tc.mounts)
			}
			for _, name := range tc.files {
				if _, err := fs.ReadFile(guest.Root, name); err != nil {
					t.Errorf("reading %s: %v", name, err)
				}
			}
			// Every fstab device the guest mounts or swaps on is found.
			fstab, err := fs.ReadFile(guest.Root, "etc/fstab")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range parseFstab(string(fstab)) {
				if strings.HasPrefix(e.spec, "/dev/") || strings.HasPrefix(e.spec, "LABEL=") || strings.HasPrefix(e.spec, "UUID=") {
					if guest.Lookup(e.spec) == nil {
						t.Errorf("fstab device %s (%s) not found", e.spec, e.dir)
					}
				}
			}
		})
	}
}
