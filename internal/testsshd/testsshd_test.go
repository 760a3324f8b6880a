package testsshd

import (
	"strings"
	"testing"
)

// TestExec: the OpenSSH client reaches the server with SSHArgs, the
// stand-in xm and extra programs are on the sessions' PATH, and killed
// sessions do not stop the server.
func TestExec(t *testing.T) {
	s := Start(t, Options{
		Guests:   []Guest{{Name: "web01", Config: []byte("name = \"web01\"\nmemory = 256\ndisk = [ \"file:/img,xvda,w\" ]\n"), Running: true}},
		Programs: map[string]string{"hello": "#!/bin/sh\necho hello \"$@\"\n"},
	})
	if out := s.Exec(t, "hello world"); out != "hello world\n" {
		t.Errorf("hello: %q", out)
	}
	// The sessions' PATH is the fixture's, whatever the user's shell
	// start-up files would make of it.
	if out := s.Exec(t, "echo $PATH"); !strings.HasPrefix(out, s.BinDir+":") || strings.Contains(out, ".pyenv") {
		t.Errorf("the sessions' PATH: %q", out)
	}
	list := s.Exec(t, "xm list")
	if !strings.Contains(list, "Domain-0") || !strings.Contains(list, "web01") || !strings.Contains(list, "-b----") {
		t.Errorf("xm list:\n%s", list)
	}
	if sxp := s.Exec(t, "xm list -l web01"); !strings.HasPrefix(sxp, "(domain") || !strings.Contains(sxp, "(uname file:/img)") {
		t.Errorf("xm list -l:\n%s", sxp)
	}
	s.KillSessions()
	if out := s.Exec(t, "hello again"); out != "hello again\n" {
		t.Errorf("after KillSessions: %q", out)
	}
}
