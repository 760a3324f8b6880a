package convert

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func seedFiles(f *testing.F, pattern string) {
	ms, _ := filepath.Glob(filepath.Join("testdata", "*", "root", pattern))
	if len(ms) == 0 {
		f.Fatalf("no seeds for %s", pattern)
	}
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func FuzzParseFstab(f *testing.F) {
	seedFiles(f, "etc/fstab")
	f.Add([]byte("/dev/xvda1 /mnt\\040point ext3\n#c\n\n/dev/x / ext3 defaults 1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := ParseFstab(data)
		if err != nil {
			return
		}
		lines := strings.Split(string(data), "\n")
		for _, e := range es {
			if e.Line < 1 || e.Line > len(lines) {
				t.Fatalf("line %d out of range", e.Line)
			}
			if e.Spec == "" || e.VFSType == "" || e.Freq < 0 || e.PassNo < 0 {
				t.Fatalf("entry %+v", e)
			}
		}
	})
}

func FuzzParseModprobe(f *testing.F) {
	seedFiles(f, "etc/modprobe.conf")
	seedFiles(f, "etc/modprobe.d/*")
	f.Add([]byte("install foo \\\n /bin/true\n# x\noptions a b=c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ls := parseModprobe(data)
		if want := len(strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")); len(ls) != want {
			t.Fatalf("%d directives for %d lines", len(ls), want)
		}
		for _, l := range ls {
			if l.Cmd == "" && len(l.Args) > 0 || strings.HasPrefix(l.Cmd, "#") {
				t.Fatalf("directive %+v", l)
			}
		}
	})
}

// FuzzRemap checks that renaming never touches what it must leave alone
// and is stable: a renamed name is not renamed again.
func FuzzRemap(f *testing.F) {
	for _, s := range []string{"/dev/xvda2", "xvdb", "/dev/hda", "LABEL=/", "/dev/VolGroup00/LogVol00", "/dev/sdaa12", "sda1"} {
		f.Add(s)
	}
	r := newRemapper(map[string]string{"xvda": "vda", "xvdb": "vdb", "sda1": "vdc"})
	f.Fuzz(func(t *testing.T, dev string) {
		nd, ok := r.remap(dev)
		if !ok {
			if nd != dev {
				t.Fatalf("remap(%q) = %q but not ok", dev, nd)
			}
			return
		}
		if strings.Contains(dev, "=") || strings.Contains(strings.TrimPrefix(dev, "/dev/"), "/") {
			t.Fatalf("remap(%q) = %q: must be left alone", dev, nd)
		}
		if again, ok2 := r.remap(nd); ok2 {
			t.Fatalf("remap(%q) = %q, then %q", dev, nd, again)
		}
	})
}
