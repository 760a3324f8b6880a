package config

import (
	"errors"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	good := []string{"web01", "rhel5pv", "db_02", "a", "Web.Example.com", "x+y", "a-b", "a..b", strings.Repeat("n", MaxNameLen)}
	for _, n := range good {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q) = %v, want nil", n, err)
		}
	}
	bad := []string{
		"", ".", "..", "../x", "../../../../tmp/x/pwn", "/etc/passwd", "a/b", "a/", ".hidden", "-rf", "--force",
		"a\x00b", "a\nb", "a\rb", "a\tb", "\x7f", "web 01", "a\\b", "a:b", "a;b", "$(x)", "`x`", "a'b", "a\"b", "*", "?",
		"\xff\xfe", "caf\xc3\xa9", "日本", strings.Repeat("n", MaxNameLen+1),
	}
	for _, n := range bad {
		err := CheckName(n)
		var ne *NameError
		if !errors.Is(err, ErrBadName) || !errors.As(err, &ne) || ne.Reason == "" {
			t.Errorf("CheckName(%q) = %v, want a *NameError", n, err)
			continue
		}
		// The message quotes the name so that control bytes cannot
		// reshape the terminal or the log.
		if msg := err.Error(); strings.ContainsAny(msg, "\x00\n\r\t\x7f") || !strings.Contains(msg, "guest name") {
			t.Errorf("CheckName(%q) message %q", n, msg)
		}
	}
}

// TestDomainCheckNameLine: the error names the config file and the line
// the name is on, for every config syntax.
func TestDomainCheckNameLine(t *testing.T) {
	for _, tc := range []struct {
		file, data string
		line       int
	}{
		{"evil.cfg", "# hostile\nmemory = 64\nname = '../../../../tmp/x/pwn'\n", 3},
		{"evil.xl", "type = 'pv'\n\nname = \"--force\"\n", 3},
		{"evil.sxp", "(domain\n (memory 64)\n (name ..)\n)\n", 3},
		{"evil.xml", "<domain type='xen'>\n  <memory>65536</memory>\n  <name>a/b</name>\n</domain>\n", 3},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d, err := Parse([]byte(tc.data), tc.file)
			if err != nil {
				t.Fatal(err)
			}
			err = d.CheckName()
			var ne *NameError
			if !errors.As(err, &ne) {
				t.Fatalf("CheckName = %v, want a *NameError", err)
			}
			if ne.File != tc.file || ne.Line != tc.line {
				t.Errorf("error at %s:%d, want %s:%d (%v)", ne.File, ne.Line, tc.file, tc.line, err)
			}
			if want := tc.file + ":" + string(rune('0'+tc.line)) + ": guest name"; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("message %q does not start with %q", err, want)
			}
		})
	}
	// A config without a name is refused too (its files would be
	// ".xml", "-vda.qcow2").
	d, err := Parse([]byte("memory = 64\n"), "noname.cfg")
	if err != nil {
		t.Fatal(err)
	}
	if err := d.CheckName(); !errors.Is(err, ErrBadName) || !strings.HasPrefix(err.Error(), "noname.cfg: ") {
		t.Errorf("nameless config: %v", err)
	}
}

// TestDuplicateDiskTargets: two disks on one Xen target (or on targets
// Xen numbers alike) would be written to one output image; every syntax
// refuses them, naming the lines.
func TestDuplicateDiskTargets(t *testing.T) {
	for _, tc := range []struct {
		file, data string
		want       string
	}{
		{"twice.cfg", "name = 'a'\ndisk = [ 'file:/a.img,xvda,w',\n  'file:/b.img,xvda,w' ]\n", "twice.cfg:3:1: disk target xvda is given twice (first at line 2)"},
		{"alias.cfg", "name = 'a'\nbuilder = 'hvm'\ndisk = [ 'file:/a.img,hda,w', 'file:/b.img,xvda,w' ]\n", "alias.cfg:3:1: disk target xvda is the same Xen disk as hda (first at line 3)"},
		{"scsi.cfg", "name = 'a'\ndisk = [ 'phy:/dev/vg/root,sda1,w', 'phy:/dev/vg/other,xvda1,w' ]\n", "disk target xvda1 is the same Xen disk as sda1"},
		{"cdrom.cfg", "name = 'a'\ndisk = [ 'file:/a.img,hdc,w', 'file:/x.iso,hdc:cdrom,r' ]\n", "disk target hdc is given twice"},
		{"xl.cfg", "name = 'a'\ntype = 'hvm'\ndisk = [ 'format=raw,vdev=xvda,access=rw,target=/a' ]\ndisk += [ 'format=raw,vdev=hda,access=rw,target=/b' ]\n", "disk target hda is the same Xen disk as xvda"},
		{"dup.sxp", "(domain (name a)\n (device (vbd (dev xvdb) (uname file:/a) (mode w)))\n (device (vbd (dev xvdb:disk) (uname file:/b) (mode w))))\n", "dup.sxp:3:1: disk target xvdb is given twice (first at line 2)"},
		{"dup.xml", "<domain type='xen'><name>a</name><memory>65536</memory><devices>" +
			"<disk type='file' device='disk'><source file='/a'/><target dev='xvda'/></disk>" +
			"<disk type='file' device='disk'><source file='/b'/><target dev='sda'/></disk></devices></domain>", "disk target sda is the same Xen disk as xvda"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := Parse([]byte(tc.data), tc.file)
			var se *SyntaxError
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse = %v, want a *SyntaxError with %q", err, tc.want)
			}
		})
	}
	// Partitions of one disk given as separate Xen devices, the usual
	// RHEL 5 PV layout, are different targets.
	d, err := Parse([]byte("name = 'a'\ndisk = [ 'phy:/dev/vg/root,sda1,w', 'phy:/dev/vg/swap,sda2,w', 'file:/c.img,xvdb,w' ]\n"), "parts.cfg")
	if err != nil || len(d.Disks) != 3 {
		t.Fatalf("partition targets: %v", err)
	}
}
