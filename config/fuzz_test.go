package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// seedCorpus adds the native files of one corpus folder (and extra
// inline seeds) to a fuzz target. The corpus may be missing locally; the
// inline seeds and testdata/fuzz keep the target useful then.
func seedCorpus(f *testing.F, pattern string, extra ...string) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, pattern))
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range extra {
		f.Add([]byte(s))
	}
}

// checkParse runs one fuzz input through Parse and the KVM mapping and
// checks what must hold for any input: no panic, errors that name the
// file, and a sane model when the input is accepted.
func checkParse(t *testing.T, data []byte, format Format) {
	d, err := Parse(data, "fuzz.cfg", WithFormat(format))
	if err != nil {
		if !strings.HasPrefix(err.Error(), "fuzz.cfg") {
			t.Fatalf("error does not name the file: %v", err)
		}
		return
	}
	if d.VCPUs < 1 || d.MaxVCPUs < d.VCPUs || d.MemoryMiB < 1 || d.MaxMemoryMiB < d.MemoryMiB {
		t.Fatalf("defaults not applied: vcpus %d/%d memory %d/%d", d.VCPUs, d.MaxVCPUs, d.MemoryMiB, d.MaxMemoryMiB)
	}
	if d.Disks == nil || d.NICs == nil || d.Source.Format != format {
		t.Fatalf("model: disks %v nics %v format %q", d.Disks, d.NICs, d.Source.Format)
	}
	for _, disk := range d.Disks {
		if disk.Target == "" || (disk.Device != "disk" && disk.Device != "cdrom") || (disk.Mode != "r" && disk.Mode != "w" && disk.Mode != "w!") {
			t.Fatalf("disk %+v", disk)
		}
	}
	for _, virtio := range []bool{false, true} {
		k, err := ToKVM(d, KVMOptions{Virtio: virtio})
		if err != nil {
			continue
		}
		if _, err := k.LibvirtXML(); err != nil && d.Name != "" {
			t.Fatalf("LibvirtXML: %v", err)
		}
	}
}

func FuzzXM(f *testing.F) {
	seedCorpus(f, "xmconfigdata/*.cfg",
		"name = 'a'\nmemory = '512'\ndisk = [ 'phy:/dev/a,xvda,w', ]\n",
		"x = '''multi\nline''' # c\nvcpus = 0x2; acpi = True\n",
		"name = \"VM%d\" % vmid\n",
		"disk = [[[['a']]]]\n")
	f.Fuzz(func(t *testing.T, data []byte) { checkParse(t, data, FormatXM) })
}

func FuzzXL(f *testing.F) {
	seedCorpus(f, "xlconfigdata/*.cfg",
		"type = 'hvm'\ndisk = [ 'format=raw,vdev=hda,access=rw,target=/a,b' ]\ndisk += [ '/b,qcow2,hdb' ]\n")
	f.Fuzz(func(t *testing.T, data []byte) { checkParse(t, data, FormatXL) })
}

func FuzzSXP(f *testing.F) {
	seedCorpus(f, "sexpr2xmldata/*.sexpr",
		"(vm (name a) (memory 64) (image (linux (kernel /k))) (device (vbd (dev xvda) (uname file:/a) (mode w))))",
		"(domain (name 'a\\\n b')(memory 1)",
		"(domain (name a)))")
	f.Fuzz(func(t *testing.T, data []byte) { checkParse(t, data, FormatSXP) })
}

func FuzzLibvirtXML(f *testing.F) {
	seedCorpus(f, "*/*.xml")
	f.Fuzz(func(t *testing.T, data []byte) { checkParse(t, data, FormatLibvirt) })
}

// FuzzKVMXML reads KVM domain XML back; what it accepts must write again.
func FuzzKVMXML(f *testing.F) {
	for _, name := range []string{"pv-pygrub", "pv-kernel", "hvm-windows-cdrom"} {
		data, err := os.ReadFile(filepath.Join("testdata", "kvm", name+".golden"))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := ParseKVMXML(data)
		if err != nil {
			return
		}
		if k.Disks == nil || k.NICs == nil {
			t.Fatalf("nil device lists: %+v", k)
		}
		if k.Name != "" && k.MemoryMiB > 0 {
			if _, err := k.LibvirtXML(); err != nil {
				t.Fatalf("LibvirtXML of a domain ParseKVMXML accepted: %v", err)
			}
		}
	})
}
