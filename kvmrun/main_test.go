package kvmrun

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// fakeQEMU is the path of the fake qemu-system-x86_64 built by TestMain
// from internal/fakeqemu.
var fakeQEMU string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "kvmrun-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	fakeQEMU = filepath.Join(dir, "qemu-system-x86_64")
	// go test puts its own GOROOT/bin first on the test's PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		fmt.Fprintf(os.Stderr, "finding the go command to build the fake qemu: %v\n", err)
		return 1
	}
	cmd := exec.Command(gobin, "build", "-o", fakeQEMU, "./internal/fakeqemu")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "building the fake qemu: %v\n", err)
		return 1
	}
	return m.Run()
}

// scenario sets the fake qemu's environment for one test.
func scenario(t *testing.T, env map[string]string) {
	t.Helper()
	for _, k := range []string{"FAKEQEMU_KVM", "FAKEQEMU_TCG", "FAKEQEMU_SERIAL", "FAKEQEMU_LINE_DELAY", "FAKEQEMU_AFTER", "FAKEQEMU_POWERDOWN", "FAKEQEMU_ARGV", "FAKEQEMU_QMP_LOG"} {
		t.Setenv(k, env[k])
	}
}
