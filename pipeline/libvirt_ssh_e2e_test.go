package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xen2kvm/xen2kvm/guestgen"
	"github.com/xen2kvm/xen2kvm/internal/testlibvirtd"
	"github.com/xen2kvm/xen2kvm/internal/testsshd"
	"github.com/xen2kvm/xen2kvm/libvirtdst"
)

// TestE2EMigrateToOverSSH delivers the example guest to the private
// libvirt daemon through the test sshd on 127.0.0.1, as to a remote KVM
// host: qemu+ssh:// with the test key, libvirt's RPC tunnelled to the
// daemon's socket. The volumes, the domain and the boot check over the
// tunnelled console stream are as locally. The host key is checked: a
// qemu+libssh:// URI with the right known_hosts connects, one with
// another host's key is refused.
func TestE2EMigrateToOverSSH(t *testing.T) {
	needE2E(t)
	g := guest(t, guestgen.CentOS5PV)
	d := testlibvirtd.Start(t)
	d.DirPool(t, "default")
	srv := testsshd.Start(t, testsshd.Options{Modern: true})
	q := url.Values{"socket": {d.Socket}, "keyfile": {srv.KeyPath}, "no_verify": {"1"}}
	uri := fmt.Sprintf("qemu+ssh://%s@%s/session?%s", srv.User, srv.Addr, q.Encode())

	out := t.TempDir()
	code, _, stderr := run(t, "migrate", g.Config, "--to", uri, "-o", out, "--disk-map", diskMap(g), "--boot-check", "--boot-timeout", "4m")
	if code != 0 {
		t.Fatalf("migrate --to %s: exit %d\n%s\nsshd log:\n%s", uri, code, stderr, srv.Log())
	}
	if !strings.Contains(srv.Log(), "Accepted publickey for "+srv.User) {
		t.Errorf("the sshd log shows no login: the connection did not go through SSH\n%s", srv.Log())
	}
	vols := d.Volumes(t, "default")
	if len(vols) != 3 {
		t.Errorf("vol-list: %v", vols)
	}
	if xml := d.Virsh(t, "dumpxml", g.Name); !strings.Contains(xml, `<source pool='default' volume='`+g.Name+`-vda.qcow2'`) {
		t.Errorf("dumpxml:\n%s", xml)
	}
	if serial, _ := os.ReadFile(filepath.Join(out, g.Name+".boot.log")); !strings.Contains(string(serial), "login:") {
		t.Errorf("the console log read over SSH has no login prompt:\n%s", serial)
	}

	// Host key verification (libssh-style known_hosts).
	q = url.Values{"socket": {d.Socket}, "keyfile": {srv.KeyPath}, "known_hosts": {srv.KnownHostsPath}}
	good := fmt.Sprintf("qemu+libssh://%s@%s/session?%s", srv.User, srv.Addr, q.Encode())
	c, err := libvirtdst.Connect(context.Background(), good)
	if err != nil {
		t.Fatalf("connecting with the right known_hosts: %v", err)
	}
	if typ, err := c.DomainType(); err != nil || typ != "qemu" {
		t.Errorf("DomainType over libssh: %q, %v", typ, err)
	}
	c.Close()
	other := testsshd.Start(t, testsshd.Options{Modern: true})
	q.Set("known_hosts", other.KnownHostsPath)
	// other's known_hosts names other's port: give it this server's key
	// under this server's address to make it a changed host key.
	b, err := os.ReadFile(other.KnownHostsPath)
	if err != nil {
		t.Fatal(err)
	}
	wrong := filepath.Join(t.TempDir(), "known_hosts")
	line := strings.Replace(string(b), fmt.Sprintf("[127.0.0.1]:%d", other.Port), fmt.Sprintf("[127.0.0.1]:%d", srv.Port), 1)
	if err := os.WriteFile(wrong, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	q.Set("known_hosts", wrong)
	bad := fmt.Sprintf("qemu+libssh://%s@%s/session?%s", srv.User, srv.Addr, q.Encode())
	_, err = libvirtdst.Connect(context.Background(), bad)
	var ce *libvirtdst.ConnectError
	if !errors.As(err, &ce) || !strings.Contains(ce.Hint(), "not the one") {
		t.Errorf("connecting with another host's key in known_hosts: %v, want a ConnectError about a changed key", err)
	}
}
