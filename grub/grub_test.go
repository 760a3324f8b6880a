package grub_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/grub"
)

func read(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParse(t *testing.T) {
	tests := []struct {
		file string
		want grub.Config
	}{
		{"rhel5-xen.conf", grub.Config{
			Default: 0, DefaultRaw: "0", DefaultLine: 10, Timeout: 5, TimeoutLine: 11, Fallback: -1, Hidden: true,
			Entries: []grub.Entry{
				{Title: "Red Hat Enterprise Linux Server (2.6.18-164.el5xen)", Line: 14, End: 18,
					Root: "(hd0,0)", RootLine: 15, Kernel: "/xen.gz-2.6.18-164.el5", KernelLine: 16,
					Modules: []grub.Module{
						{Path: "/vmlinuz-2.6.18-164.el5xen", Args: "ro root=/dev/VolGroup00/LogVol00 console=xvc0", Line: 17},
						{Path: "/initrd-2.6.18-164.el5xen.img", Line: 18},
					}},
				{Title: "Red Hat Enterprise Linux Server (2.6.18-164.el5)", Line: 19, End: 22,
					Root: "(hd0,0)", RootLine: 20, Kernel: "/vmlinuz-2.6.18-164.el5", Args: "ro root=/dev/VolGroup00/LogVol00 rhgb quiet", KernelLine: 21,
					Initrd: "/initrd-2.6.18-164.el5.img", InitrdLine: 22},
			}}},
		{"rhel5-pv.conf", grub.Config{
			Default: 1, DefaultRaw: "1", DefaultLine: 3, Timeout: 5, TimeoutLine: 4, Fallback: -1,
			Entries: []grub.Entry{
				{Title: "CentOS (2.6.18-164.el5xen)", Line: 5, End: 8, Root: "(hd0,0)", RootLine: 6,
					Kernel: "/boot/vmlinuz-2.6.18-164.el5xen", Args: "ro root=LABEL=/ console=xvc0", KernelLine: 7,
					Initrd: "/boot/initrd-2.6.18-164.el5xen.img", InitrdLine: 8},
				{Title: "CentOS (2.6.18-164.el5)", Line: 9, End: 12, Root: "(hd0,0)", RootLine: 10,
					Kernel: "/boot/vmlinuz-2.6.18-164.el5", Args: "ro root=/dev/xvda1", KernelLine: 11,
					Initrd: "(hd0,0)/boot/initrd-2.6.18-164.el5.img", InitrdLine: 12},
			}}},
		{"crlf.conf", grub.Config{
			Default: 0, DefaultRaw: "saved", DefaultLine: 1, Timeout: 0, TimeoutLine: 2, Fallback: -1,
			Entries: []grub.Entry{{Title: "Windows", Line: 3, End: 5, Root: "(hd0,0)", RootLine: 4}}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			data := read(t, tc.file)
			c, err := grub.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			got := *c
			// Compare the exported fields only.
			want := tc.want
			if got.Default != want.Default || got.DefaultRaw != want.DefaultRaw || got.DefaultLine != want.DefaultLine ||
				got.Timeout != want.Timeout || got.TimeoutLine != want.TimeoutLine || got.Fallback != want.Fallback ||
				got.Hidden != want.Hidden {
				t.Errorf("globals = %+v", got)
			}
			if !reflect.DeepEqual(got.Entries, want.Entries) {
				t.Errorf("entries =\n%+v\nwant\n%+v", got.Entries, want.Entries)
			}
			if !bytes.Equal(c.Bytes(), data) {
				t.Errorf("Bytes() does not round-trip:\n%q\n%q", c.Bytes(), data)
			}
		})
	}
}

func TestLinuxKernel(t *testing.T) {
	c, err := grub.Parse(read(t, "rhel5-xen.conf"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.DefaultEntry()
	if err != nil {
		t.Fatal(err)
	}
	if !e.Xen() {
		t.Fatal("xen.gz entry: Xen() = false")
	}
	k, a, i := e.LinuxKernel()
	if k != "/vmlinuz-2.6.18-164.el5xen" || a != "ro root=/dev/VolGroup00/LogVol00 console=xvc0" || i != "/initrd-2.6.18-164.el5xen.img" {
		t.Errorf("LinuxKernel = %q %q %q", k, a, i)
	}
	if c.Entries[1].Xen() {
		t.Error("plain kernel entry: Xen() = true")
	}
	if d, p := grub.SplitDevice("(hd0,0)/boot/initrd.img"); d != "(hd0,0)" || p != "/boot/initrd.img" {
		t.Errorf("SplitDevice = %q %q", d, p)
	}
}

func TestEdit(t *testing.T) {
	tests := []struct {
		name string
		file string
		edit func(c *grub.Config) error
		want string // a line that must be in the output
	}{
		{"default in place", "rhel5-xen.conf", func(c *grub.Config) error { return c.SetDefault(1) }, "\ndefault=1\n"},
		{"default spaced", "rhel5-pv.conf", func(c *grub.Config) error { return c.SetDefault(0) }, "\ndefault = 0\n"},
		{"default saved crlf", "crlf.conf", func(c *grub.Config) error { return c.SetDefault(0) }, "default=0\r\n"},
		{"kernel args", "rhel5-xen.conf", func(c *grub.Config) error {
			return c.SetKernelArgs(1, "ro root=/dev/VolGroup00/LogVol00 console=ttyS0")
		}, "\n\tkernel /vmlinuz-2.6.18-164.el5 ro root=/dev/VolGroup00/LogVol00 console=ttyS0\n"},
		{"xen module args", "rhel5-xen.conf", func(c *grub.Config) error { return c.SetKernelArgs(0, "ro") }, "\n\tmodule /vmlinuz-2.6.18-164.el5xen ro\n"},
		{"kernel option kept", "rhel5-pv.conf", func(c *grub.Config) error { return c.SetKernelArgs(1, "ro root=/dev/vda1") },
			"\tkernel --no-mem-option /boot/vmlinuz-2.6.18-164.el5 ro root=/dev/vda1\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			data := read(t, tc.file)
			c, err := grub.Parse(data)
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.edit(c); err != nil {
				t.Fatal(err)
			}
			out := c.Bytes()
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
			// Only one line changed.
			a, b := strings.Split(string(data), "\n"), strings.Split(string(out), "\n")
			if len(a) != len(b) {
				t.Fatalf("line count %d -> %d", len(a), len(b))
			}
			diff := 0
			for i := range a {
				if a[i] != b[i] {
					diff++
				}
			}
			if diff != 1 {
				t.Errorf("%d lines changed, want 1", diff)
			}
			// The edit survives a re-parse.
			if _, err := grub.Parse(out); err != nil {
				t.Errorf("re-parse: %v", err)
			}
		})
	}
}

func TestSetDefaultAdds(t *testing.T) {
	c, err := grub.Parse([]byte("timeout=5\ntitle a\n\tkernel /a\ntitle b\n\tkernel /b\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SetDefault(1); err != nil {
		t.Fatal(err)
	}
	if got, want := string(c.Bytes()), "timeout=5\ndefault=1\ntitle a\n\tkernel /a\ntitle b\n\tkernel /b\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if e, _ := c.DefaultEntry(); e.Title != "b" {
		t.Errorf("default entry = %q", e.Title)
	}
	if err := c.SetDefault(2); err == nil {
		t.Error("SetDefault past the end: no error")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, data string
		line       int
	}{
		{"bad default", "default=x\ntitle a\n", 1},
		{"negative timeout", "timeout=-3\n", 1},
		{"kernel without path", "title a\n\tkernel\n", 2},
		{"nul", "title a\n\x00", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := grub.Parse([]byte(tc.data))
			var se *grub.SyntaxError
			if !errors.As(err, &se) || se.Line != tc.line {
				t.Fatalf("err = %v, want a SyntaxError on line %d", err, tc.line)
			}
		})
	}
	c, err := grub.Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.DefaultEntry(); !errors.Is(err, grub.ErrNoEntries) {
		t.Errorf("empty config DefaultEntry err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"rhel5-xen.conf", "rhel5-pv.conf", "crlf.conf"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("default=1\ntitle\n kernel= --x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := grub.Parse(data)
		if err != nil {
			return
		}
		if !bytes.Equal(c.Bytes(), data) {
			t.Fatalf("round trip: %q -> %q", data, c.Bytes())
		}
		for i := range c.Entries {
			e := &c.Entries[i]
			if e.Line < 1 || e.End < e.Line {
				t.Fatalf("entry %d lines %d-%d", i, e.Line, e.End)
			}
			if e.KernelLine > 0 && !strings.Contains(c.Line(e.KernelLine), e.Kernel) {
				t.Fatalf("kernel %q not on its line %q", e.Kernel, c.Line(e.KernelLine))
			}
			if err := c.SetKernelArgs(i, "ro root=/dev/vda1"); err == nil {
				k, a, _ := c.Entries[i].LinuxKernel()
				if a != "ro root=/dev/vda1" {
					t.Fatalf("after SetKernelArgs: %q %q", k, a)
				}
			}
		}
		if len(c.Entries) > 0 {
			if err := c.SetDefault(len(c.Entries) - 1); err != nil {
				t.Fatal(err)
			}
			if c.Default != len(c.Entries)-1 {
				t.Fatalf("SetDefault: Default = %d", c.Default)
			}
		}
	})
}

func TestAppend(t *testing.T) {
	c, err := grub.Parse([]byte("default=0\ntitle a\n\tkernel /a"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Append("title b", "\tkernel /b ro", "\tinitrd /b.img"); err != nil {
		t.Fatal(err)
	}
	if got, want := string(c.Bytes()), "default=0\ntitle a\n\tkernel /a\ntitle b\n\tkernel /b ro\n\tinitrd /b.img\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if len(c.Entries) != 2 || c.Entries[1].Initrd != "/b.img" || c.Entries[1].Line != 4 {
		t.Errorf("entries %+v", c.Entries)
	}
}
