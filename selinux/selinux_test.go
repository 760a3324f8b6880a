package selinux

import (
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

func loadFixture(t testing.TB) *Contexts {
	t.Helper()
	b, err := os.ReadFile("testdata/file_contexts")
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("testdata/file_contexts", b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestLookup(t *testing.T) {
	c := loadFixture(t)
	tests := []struct {
		path string
		mode fs.FileMode
		want string // "" for not labelled
	}{
		{"/etc/fstab", 0, "system_u:object_r:etc_t:s0"},
		{"/etc", fs.ModeDir, "system_u:object_r:etc_t:s0"},
		{"/", fs.ModeDir, "system_u:object_r:root_t:s0"},
		// A later regex wins over an earlier, less specific one.
		{"/etc/modprobe.conf", 0, "system_u:object_r:modules_conf_t:s0"},
		{"/etc/modprobe.d/xen2kvm-xenpv.conf", 0, "system_u:object_r:modules_conf_t:s0"},
		{"/etc/modprobe.d", fs.ModeDir, "system_u:object_r:modules_conf_t:s0"},
		// A typed spec matches only its type: a directory named like
		// modprobe.conf.d falls through to etc_t.
		{"/etc/modprobe.conf.d", fs.ModeDir, "system_u:object_r:etc_t:s0"},
		{"/etc/lvm/lvm.conf", 0, "system_u:object_r:lvm_etc_t:s0"},
		{"/etc/lvm/cache/.cache", 0, "system_u:object_r:lvm_metadata_t:s0"},
		// Exact (no regex characters) specs take precedence over later
		// regex ones.
		{"/etc/rc.d/rc", 0, "system_u:object_r:initrc_exec_t:s0"},
		{"/etc/rc.d/init.d/xen2kvm-rpmdb", 0, "system_u:object_r:initrc_exec_t:s0"},
		{"/etc/sysconfig/network-scripts/ifcfg-eth0", 0, "system_u:object_r:net_conf_t:s0"},
		{"/boot/initrd-2.6.18-164.el5.img", 0, "system_u:object_r:boot_t:s0"},
		{"/boot/.journal", 0, ""},
		{"/.autorelabel", 0, ""},
		{"/lib/modules/2.6.18/kernel/drivers/virtio/virtio.ko", 0, "system_u:object_r:modules_object_t:s0"},
		{"/lib/modules/2.6.18/modules.dep", 0, "system_u:object_r:modules_dep_t:s0"},
		{"/lib/modules/2.6.18/modules.dep", fs.ModeDir, "system_u:object_r:modules_object_t:s0"},
		{"/var/run", fs.ModeSymlink, "system_u:object_r:var_run_t:s0"},
		{"/srv/data", 0, "system_u:object_r:default_t:s0"},
		{"/quota.user", 0, "system_u:object_r:quota_db_t:s0"},
		{"/dev/xvda", fs.ModeDevice, "system_u:object_r:fixed_disk_device_t:s0"},
		// Anchored: a longer path does not match /[^/]+.
		{"/etc2/x", 0, "system_u:object_r:default_t:s0"},
	}
	for _, tc := range tests {
		got, ok := c.Lookup(tc.path, tc.mode)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("Lookup(%s, %v) = %q, %v; want %q", tc.path, tc.mode, got, ok, tc.want)
		}
	}
}

func TestLoadLocalAndSubs(t *testing.T) {
	base, _ := os.ReadFile("testdata/file_contexts")
	dir := "etc/selinux/targeted/contexts/files/"
	root := fstest.MapFS{
		dir + "file_contexts":       {Data: base},
		dir + "file_contexts.local": {Data: []byte("/srv/www(/.*)?\tsystem_u:object_r:httpd_sys_content_t:s0\n/etc/fstab\t--\tsystem_u:object_r:local_t:s0\n")},
		dir + "file_contexts.subs":  {Data: []byte("/web /srv/www\n")},
	}
	c, err := Load(root, "targeted")
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]string{
		"/srv/www/index.html": "system_u:object_r:httpd_sys_content_t:s0",
		"/web/index.html":     "system_u:object_r:httpd_sys_content_t:s0",
		"/webx":               "system_u:object_r:etc_runtime_t:s0",
		"/etc/fstab":          "system_u:object_r:local_t:s0",
	} {
		if got, _ := c.Lookup(p, 0); got != want {
			t.Errorf("Lookup(%s) = %q, want %q", p, got, want)
		}
	}
	if len(c.Files) != 3 {
		t.Errorf("Files = %v", c.Files)
	}
	if _, err := Load(root, "mls"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("Load of a missing policy: %v, want ErrNoPolicy", err)
	}
	if _, err := Load(root, "../x"); !errors.Is(err, ErrNoPolicy) {
		t.Errorf("Load of a bad type: %v, want ErrNoPolicy", err)
	}
}

func TestParseErrors(t *testing.T) {
	_, err := Parse("fc", []byte("/ok\tsystem_u:object_r:etc_t:s0\n/bad(\tsystem_u:object_r:etc_t:s0\n/x -z system_u:object_r:etc_t:s0\n/y nolabel\n/a b c d\n"))
	var se *SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("Parse: %v, want *SyntaxError", err)
	}
	for _, want := range []string{"fc:2:", "fc:3:", "fc:4:", "fc:5:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestPolicy(t *testing.T) {
	mode, typ := Policy([]byte("# comment\nSELINUX=Enforcing\nSELINUXTYPE=\"mls\"\n"))
	if mode != "enforcing" || typ != "mls" {
		t.Errorf("Policy = %q, %q", mode, typ)
	}
	if _, typ := Policy([]byte("SELINUX=permissive\n")); typ != "targeted" {
		t.Errorf("default type %q", typ)
	}
}

func FuzzParse(f *testing.F) {
	b, _ := os.ReadFile("testdata/file_contexts")
	f.Add(b, "/etc/fstab")
	f.Add([]byte("/a(/.*)? -d <<none>>\n"), "/a/b")
	f.Fuzz(func(t *testing.T, data []byte, p string) {
		c, err := Parse("fuzz", data)
		if err != nil {
			var se *SyntaxError
			if !errors.As(err, &se) && !strings.Contains(err.Error(), "reading") {
				t.Fatalf("error without a line: %v", err)
			}
			return
		}
		if ctx, ok := c.Lookup(p, 0); ok && ctx == "" {
			t.Fatal("ok with an empty context")
		}
	})
}
