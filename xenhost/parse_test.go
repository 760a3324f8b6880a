package xenhost

import (
	"errors"
	"testing"
)

func TestParseURL(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want URL
		addr string
	}{
		{"ssh://xen01", URL{Host: "xen01"}, "xen01:22"},
		{"ssh://root@xen01", URL{User: "root", Host: "xen01"}, "xen01:22"},
		{"ssh://root@xen01:2222/web01", URL{User: "root", Host: "xen01", Port: 2222, Name: "web01"}, "xen01:2222"},
		{"ssh://root@[fe80::1]:22/db-02.old", URL{User: "root", Host: "fe80::1", Port: 22, Name: "db-02.old"}, "[fe80::1]:22"},
		{"ssh://xen01/web01/", URL{Host: "xen01", Name: "web01"}, "xen01:22"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			u, err := ParseURL(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if *u != tc.want || u.Addr() != tc.addr {
				t.Errorf("got %+v %s, want %+v %s", *u, u.Addr(), tc.want, tc.addr)
			}
			again, err := ParseURL(u.String())
			if err != nil || *again != *u {
				t.Errorf("String %q reads back as %+v, %v", u.String(), again, err)
			}
		})
	}
	for _, bad := range []string{"/etc/xen/web01", "ssh://", "ssh://root@/web01", "ssh://h:99999/x", "ssh://h:x/y",
		"ssh://u:pw@h/x", "ssh://h/a/b", "ssh://h/..", "ssh://h/-rf", "ssh://h/a%20b", "ssh://h/x?y=1", "ssh://h/$(id)"} {
		if _, err := ParseURL(bad); !errors.Is(err, ErrBadURL) {
			t.Errorf("%q: %v, want ErrBadURL", bad, err)
		}
	}
}

func TestParseList(t *testing.T) {
	out := `Name                                      ID Mem(MiB) VCPUs State   Time(s)
Domain-0                                   0     1024     2 r-----  12345.6
web01                                      3      512     1 -b----    123.4
db02                                            1024     2            0.0
old                                              256     1 ------     0.0
`
	got, err := ParseList([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := []DomainState{
		{Name: "web01", ID: 3, MemoryMiB: 512, VCPUs: 1, State: "-b----"},
		{Name: "db02", ID: -1, MemoryMiB: 1024, VCPUs: 2},
		{Name: "old", ID: -1, MemoryMiB: 256, VCPUs: 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if !got[0].Running() || got[1].Running() {
		t.Error("Running")
	}
	for _, bad := range []string{"", "Error: Unable to connect to xend: No such file or directory.", "Name ID\nweb01 x 512 1 -b---- 1.0", "Name\na b", "Name\n'x' 1 2 3 4 5"} {
		if _, err := ParseList([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzParseList(f *testing.F) {
	f.Add([]byte("Name ID Mem VCPUs State Time(s)\nDomain-0 0 1024 2 r----- 1.0\nweb01 3 512 1 -b---- 2.0\n"))
	f.Add([]byte("Name\nx 1 2 3\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		states, err := ParseList(data)
		if err != nil {
			return
		}
		for _, s := range states {
			if s.Name == "Domain-0" || checkName(s.Name) != nil || s.MemoryMiB < 0 || s.VCPUs < 0 {
				t.Fatalf("bad state %+v", s)
			}
		}
	})
}

func FuzzParseURL(f *testing.F) {
	f.Add("ssh://root@xen01:22/web01")
	f.Add("ssh://[::1]/x")
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseURL(s)
		if err != nil {
			return
		}
		if u.Host == "" || (u.Name != "" && checkName(u.Name) != nil) {
			t.Fatalf("%q gave %+v", s, u)
		}
		again, err := ParseURL(u.String())
		if err != nil || *again != *u {
			t.Fatalf("%q: String %q reads back as %+v, %v", s, u.String(), again, err)
		}
	})
}
