package libvirtdst

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	for _, tc := range []struct {
		uri, socket string
		err         bool
	}{
		{uri: "qemu:///system", socket: "/var/run/libvirt/libvirt-sock"},
		{uri: "qemu:///session", socket: "/run/user/1000/libvirt/libvirt-sock"},
		{uri: "qemu+unix:///system?socket=/tmp/s", socket: "/tmp/s"},
		{uri: "qemu+ssh://root@kvm01/system"},
		{uri: "qemu+ssh://root@kvm01:2222/system?keyfile=/k&no_verify=1"},
		{uri: "qemu+tcp://kvm01/system"},
		{uri: "xen:///system", err: true},
		{uri: "qemu:///embed?root=/x", err: true},
		{uri: "qemu+ssh:///system", err: true},
		{uri: "qemu+ftp://h/system", err: true},
		{uri: "qemu+ssh://h/system\x7f", err: true},
	} {
		u, err := parseURI(tc.uri)
		if tc.err {
			if !errors.Is(err, ErrURI) {
				t.Errorf("%q: %v, want ErrURI", tc.uri, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.uri, err)
			continue
		}
		if got := u.Query().Get("socket"); tc.socket != "" && got != tc.socket {
			t.Errorf("%q: socket %q, want %q", tc.uri, got, tc.socket)
		}
	}
}

func TestConnectErrorHint(t *testing.T) {
	_, err := Connect(context.Background(), "qemu+unix:///system?socket="+filepath.Join(t.TempDir(), "none"))
	var ce *ConnectError
	if !errors.As(err, &ce) {
		t.Fatalf("Connect to a missing socket: %v, want a ConnectError", err)
	}
	if !strings.Contains(ce.Hint(), "?socket=") {
		t.Errorf("hint %q does not say how to give the socket", ce.Hint())
	}
}

// FuzzParseURI: any string is accepted or refused with ErrURI, never a
// panic, and an accepted unix URI always names a socket.
func FuzzParseURI(f *testing.F) {
	for _, s := range []string{"qemu:///system", "qemu+ssh://root@h:22/system?keyfile=/k", "qemu+unix:///session?socket=/s", "qemu://h/system", "%zz"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := parseURI(s)
		if err != nil {
			if !errors.Is(err, ErrURI) {
				t.Fatalf("%q: %v is not ErrURI", s, err)
			}
			return
		}
		if (u.Scheme == "qemu" && u.Host == "" || u.Scheme == "qemu+unix") && u.Query().Get("socket") == "" {
			t.Fatalf("%q: no socket", s)
		}
	})
}
