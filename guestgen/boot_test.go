package guestgen

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/internal/testkernel"
	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// handConversion says which parts of a Xen-to-KVM conversion
// convertByHand leaves out, to show that the guest depends on each.
type handConversion struct {
	KeepFstab   bool // leave /etc/fstab on xvda
	KeepInittab bool // leave the getty on xvc0
}

var (
	loginRe    = regexp.MustCompile(`login: `)
	runlevelRe = regexp.MustCompile(`INIT: Entering runlevel: 3|Kernel panic|Give root password`)
	panicRe    = regexp.MustCompile(`Kernel panic`)
)

// convertByHand converts a copy of a built PV guest's system disk as
// xen2kvm should, without the convert package: the non-Xen kernel becomes
// grub's default with console=ttyS0, its initrd is rebuilt to load the
// virtio drivers and mount the root from vda, fstab moves to vda, the
// console getty to ttyS0 (which securetty then allows).
func convertByHand(t *testing.T, g *Guest, s Spec, c handConversion) string {
	t.Helper()
	p, err := plan(s.withDefaults(), ids{s.Name})
	if err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(t.TempDir(), filepath.Base(g.Images[0]))
	copySparse(t, g.Images[0], img)
	vd := strings.NewReplacer("/dev/xvd", "/dev/vd")
	bootOff := p.Boot.Offset()

	conf := readGuestFile(t, img, bootOff, "/grub/grub.conf")
	_, es := parseGrub(t, conf)
	kvm := -1
	for i, e := range es {
		if !IsXen(strings.TrimPrefix(e.Kernel, "/vmlinuz-")) {
			kvm = i
			break
		}
	}
	if kvm < 0 {
		t.Fatalf("%s has no non-Xen kernel to convert to", s.Name)
	}
	rel := strings.TrimPrefix(es[kvm].Kernel, "/vmlinuz-")
	var out []string
	entry := -1
	for _, line := range strings.Split(vd.Replace(conf), "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "default="):
			line = "default=" + string(rune('0'+kvm))
		case len(f) > 0 && f[0] == "title":
			entry++
		case len(f) > 0 && f[0] == "kernel" && entry == kvm:
			line += " console=ttyS0"
		}
		out = append(out, line)
	}

	k := testkernel.ForTest(t)
	mods, err := kernelModules(k.ModulesDir, rel)
	if err != nil {
		t.Fatal(err)
	}
	names := []string{"crc32c_generic", "ext4", "virtio_pci", "virtio_blk"}
	if s.LVM {
		names = append(names, "dm_mod")
	}
	order, err := loadOrder(mods, names...)
	if err != nil {
		t.Fatal(err)
	}
	var initrd bytes.Buffer
	is := initrdSpec{Release: rel, Modules: order, LVM: s.LVM, RootDev: vd.Replace(p.Layout.rootDev), SwapDev: vd.Replace(p.Layout.swapDev)}
	bb := run(t, "sh", "-c", "command -v busybox")
	if err := buildInitrd(context.Background(), &initrd, is, strings.TrimSpace(bb)); err != nil {
		t.Fatal(err)
	}
	writeGuestFiles(t, img, bootOff, map[string]string{
		"/grub/grub.conf":         strings.Join(out, "\n"),
		"/initrd-" + rel + ".img": initrd.String(),
	})

	root := p.Root.Offset
	files := map[string]string{
		"/etc/securetty":     readGuestFile(t, img, root, "/etc/securetty") + "ttyS0\n",
		"/etc/modprobe.conf": "alias eth0 virtio_net\nalias scsi_hostadapter virtio_blk\n",
	}
	if !c.KeepFstab {
		files["/etc/fstab"] = vd.Replace(readGuestFile(t, img, root, "/etc/fstab"))
	}
	if !c.KeepInittab {
		files["/etc/inittab"] = strings.ReplaceAll(readGuestFile(t, img, root, "/etc/inittab"),
			"agetty xvc0 9600", "agetty ttyS0 115200")
	}
	writeGuestFiles(t, img, root, files)
	return img
}

func needBoot(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under TCG; skipped with -short")
	}
}

// TestBootPlain boots the plain-partition PV guest under QEMU: as built it
// never reaches a login prompt; converted by hand it does; converted
// without fstab or without inittab it does not.
func TestBootPlain(t *testing.T) {
	needBoot(t)
	testBoot(t, CentOS5PV, true)
}

// TestBootLVM does the same for the LVM guest, whose initrds run the
// host's lvm to activate VolGroup00: as built it does not reach login:,
// converted it does (only those two, to keep the test short).
func TestBootLVM(t *testing.T) {
	needBoot(t)
	testBoot(t, CentOS5LVM, false)
}

func testBoot(t *testing.T, s Spec, all bool) {
	g := buildForTest(t, s)
	p, err := plan(s.withDefaults(), ids{s.Name})
	if err != nil {
		t.Fatal(err)
	}
	before := testutil.HashFile(t, g.Images[0])
	t.Cleanup(func() {
		if testutil.HashFile(t, g.Images[0]) != before {
			t.Errorf("the boot tests changed %s", g.Images[0])
		}
	})

	t.Run("unconverted", func(t *testing.T) {
		t.Parallel()
		e := defaultEntry(t, g.Images[0], p.Boot.Offset())
		if !strings.Contains(e.Args, "console=xvc0") {
			t.Fatalf("default entry %q is not the Xen kernel's", e.Args)
		}
		// panic=-1 makes the kernel reboot (QEMU exit, with -no-reboot) on
		// a panic instead of hanging. console=xvc0 leaves the serial
		// console silent: only the exit says the guest gave up.
		e.Args += " panic=-1"
		r := bootQEMU(t, e, g.Images, bootOpts{Want: loginRe, Until: panicRe, Grace: 5 * time.Second,
			Timeout: 4 * time.Minute, Snapshot: true})
		if r.Matched {
			t.Fatalf("the unconverted guest reached login:\n%s", tail(r.Log, 30))
		}
		if !r.Exited {
			t.Errorf("the unconverted guest did not panic within the timeout:\n%s", tail(r.Log, 40))
		}
	})
	if all {
		t.Run("unconverted-console", func(t *testing.T) {
			t.Parallel()
			// The same with the kernel's console on ttyS0, to see why.
			e := defaultEntry(t, g.Images[0], p.Boot.Offset())
			e.Args += " console=ttyS0 panic=-1"
			r := bootQEMU(t, e, g.Images, bootOpts{Want: loginRe, Until: panicRe, Grace: 5 * time.Second,
				Timeout: 4 * time.Minute, Snapshot: true})
			if r.Matched {
				t.Fatalf("the unconverted guest reached login:\n%s", tail(r.Log, 30))
			}
			if !strings.Contains(r.Log, "Kernel panic - not syncing: Attempted to kill init!") {
				t.Errorf("the unconverted guest did not stop in its initrd:\n%s", tail(r.Log, 40))
			}
		})
	}
	cases := []struct {
		name      string
		conv      handConversion
		nic       bool
		want      []string
		wantLogin bool
	}{
		{"converted", handConversion{}, true, []string{"Loading virtio_blk.ko module", "Mounting local filesystems:  [  OK  ]",
			"Enabling /etc/fstab swaps:  [  OK  ]", "Bringing up interface eth0:  [  OK  ]"}, true},
		{"fstab-unconverted", handConversion{KeepFstab: true}, false, []string{
			"fsck.ext3: No such file or directory while trying to open /dev/xvda",
			"Give root password for maintenance"}, false},
		{"inittab-unconverted", handConversion{KeepInittab: true}, false, []string{"INIT: Entering runlevel: 3"}, false},
	}
	for _, tc := range cases {
		if !all && tc.name != "converted" {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			img := convertByHand(t, g, s, tc.conv)
			e := defaultEntry(t, img, p.Boot.Offset())
			mac := ""
			if tc.nic {
				mac = g.MAC
			}
			if !strings.Contains(e.Args, "console=ttyS0") || IsXen(filepath.Base(e.Kernel)) {
				t.Fatalf("converted default entry: %s %s", e.Kernel, e.Args)
			}
			r := bootQEMU(t, e, []string{img}, bootOpts{Want: loginRe, Until: runlevelRe,
				Grace: 30 * time.Second, Timeout: 5 * time.Minute, MAC: mac})
			if r.Matched != tc.wantLogin {
				t.Errorf("reached login: %v, want %v:\n%s", r.Matched, tc.wantLogin, tail(r.Log, 40))
			}
			for _, want := range tc.want {
				if !strings.Contains(r.Log, want) {
					t.Errorf("boot log lacks %q:\n%s", want, tail(r.Log, 40))
				}
			}
		})
	}
}
