package testutil

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// HoldOpen starts a process (sleep, its descriptor 3 opened by the shell
// with redirect: "<" to read, "<>" to read and write, ">>" to append) that
// keeps path open until the test ends, waits until it holds it, and
// returns its pid. A process that never holds it fails the test.
func HoldOpen(t testing.TB, redirect, path string) int {
	t.Helper()
	cmd := exec.Command("sh", "-c", "exec 3"+redirect+"\"$1\"; exec sleep 600", "sh", path)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// The shell has opened path once it has become sleep.
	comm := "/proc/" + strconv.Itoa(cmd.Process.Pid) + "/comm"
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if b, _ := os.ReadFile(comm); strings.TrimSpace(string(b)) == "sleep" {
			return cmd.Process.Pid
		}
	}
	t.Fatalf("the process holding %s open did not start", path)
	return 0
}
