package pipeline

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/config"
)

// FuzzOutputNames drives whole config files from parsing through the
// guest-name check to every output name a migration or a batch builds
// from the name. It must never panic, a name CheckName refuses must stop
// every path builder before it touches the filesystem, and a name it
// accepts must only ever give plain file names directly inside OUTDIR
// (and a batch guest folder directly inside OUTPUT).
func FuzzOutputNames(f *testing.F) {
	for _, s := range []string{
		"name = 'web01'\nmemory = 512\ndisk = [ 'file:/srv/a.img,xvda,w', 'phy:/dev/vg/b,xvdb,w' ]\n",
		"name = '../../../../tmp/x/pwn'\ndisk = [ 'file:/a,xvda,w' ]\n",
		"name = '..'\n", "name = '.'\n", "name = '--force'\n", "name = 'a/b'\n", "name = '/etc'\n",
		"name = 'a\\x00b'\n", "name = 'a\\nb'\n", "name = '\xff\xfe'\n", "name = 'web01\\r'\n",
		"(domain (name ../x) (memory 64) (device (vbd (dev xvda) (uname file:/a) (mode w))))",
		"<domain type='xen'><name>../../x</name><memory>65536</memory><devices><disk type='file' device='disk'><source file='/a'/><target dev='hda'/></disk></devices></domain>",
		"builder = 'hvm'\nname = 'w'\ndisk = [ 'file:/a,hda,w', 'file:/b,hdb,w', 'file:/c,hdd,w', 'file:/i.iso,hdc:cdrom,r' ]\n",
	} {
		f.Add([]byte(s))
	}
	outDir := filepath.Join(f.TempDir(), "out")
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := config.Parse(data, "fuzz.cfg")
		if err != nil {
			return
		}
		err = d.CheckName()
		if err != nil {
			if !errors.Is(err, config.ErrBadName) {
				t.Fatalf("CheckName(%q) = %v, not a name error", d.Name, err)
			}
			// Every path builder refuses it before touching anything: the
			// output folder is never created.
			if _, lerr := lockGuest(outDir, d.Name); !errors.Is(lerr, config.ErrBadName) {
				t.Fatalf("lockGuest accepted %q: %v", d.Name, lerr)
			}
			if _, serr := newStaging(outDir, d.Name); !errors.Is(serr, config.ErrBadName) {
				t.Fatalf("newStaging accepted %q: %v", d.Name, serr)
			}
			return
		}
		name := d.Name
		inside := func(base string) {
			t.Helper()
			p, err := outPath(outDir, base)
			if err != nil || filepath.Dir(p) != outDir || filepath.Base(p) != base {
				t.Fatalf("name %q: output %q is not a file in OUTDIR (%q, %v)", name, base, p, err)
			}
		}
		fixed := []string{reportName(name), name + ".xml", virtioXMLName(name), name + ".sh", name + ".boot.log", name + "-vmlinuz", name + "-initrd.img"}
		for _, b := range fixed {
			inside(b)
			if !writes(name, b) || !belongs(name, b) {
				t.Fatalf("name %q: %q is not recognised as its output", name, b)
			}
		}
		for _, b := range []string{stagingName(name), ownedName(name), "." + name + ".xen2kvm-lock", name + ".boot-failed.log"} {
			inside(b)
		}
		for _, virtio := range []bool{false, true} {
			k, err := config.ToKVM(d, config.KVMOptions{Virtio: virtio})
			if err != nil {
				continue
			}
			seen := map[string]bool{}
			for _, kd := range k.Disks {
				if kd.Device == "cdrom" {
					continue
				}
				for _, format := range []string{"qcow2", "raw"} {
					b := name + "-" + kd.Target + "." + format
					inside(b)
					if !writes(name, b) || !belongs(name, b) {
						t.Fatalf("name %q: image %q is not recognised as its output", name, b)
					}
					if seen[b] {
						t.Fatalf("name %q: two disks written to %q", name, b)
					}
					seen[b] = true
				}
			}
		}
		// A batch writes the guest into OUTPUT/NAME.
		if dir := filepath.Join(outDir, name); filepath.Dir(dir) != outDir || strings.Contains(name, "/") {
			t.Fatalf("batch folder %q is not inside %q", dir, outDir)
		}
		if _, err := readOutput(filepath.Join(outDir, "absent"), name); err != nil {
			t.Fatalf("readOutput(%q): %v", name, err)
		}
	})
}
