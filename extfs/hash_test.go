package extfs

import (
	"encoding/binary"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"testing"

	"github.com/xen2kvm/xen2kvm/internal/testutil"
)

// TestDirHashMatchesDebugfs compares dirHash with debugfs's dx_hash.
func TestDirHashMatchesDebugfs(t *testing.T) {
	testutil.NeedTool(t, "debugfs")
	img := mkfs(t, fsKinds[0], "", 8)
	seedUUID := "43f7e2bf-5718-47f7-b437-90fec66bc99d"
	var seed [4]uint32
	raw := []byte{0x43, 0xf7, 0xe2, 0xbf, 0x57, 0x18, 0x47, 0xf7, 0xb4, 0x37, 0x90, 0xfe, 0xc6, 0x6b, 0xc9, 0x9d}
	for i := range 4 {
		seed[i] = binary.LittleEndian.Uint32(raw[4*i:])
	}
	re := regexp.MustCompile(`Hash of .* is 0x([0-9a-f]+)`)
	names := []string{"a", "file-1", "entry-04999", "über-ñame", "a-name-that-is-longer-than-thirty-two-bytes-for-sure", "\xff\xfe\x80"}
	for _, alg := range []struct {
		name    string
		version uint8
	}{{"legacy", hashLegacy}, {"half_md4", hashHalfMD4}, {"tea", hashTea}} {
		for _, n := range names {
			out, err := exec.Command("debugfs", "-R", fmt.Sprintf("dx_hash -h %s -s %s %s", alg.name, seedUUID, n), img).CombinedOutput()
			if err != nil {
				t.Fatalf("debugfs: %v\n%s", err, out)
			}
			m := re.FindSubmatch(out)
			if m == nil {
				t.Fatalf("debugfs dx_hash output: %s", out)
			}
			want, _ := strconv.ParseUint(string(m[1]), 16, 32)
			got, ok := dirHash([]byte(n), alg.version, seed)
			if !ok || got != uint32(want) {
				t.Errorf("dirHash(%q, %s) = %#x, want %#x", n, alg.name, got, want)
			}
		}
	}
}

// The unsigned variants differ from the signed ones only for bytes >= 0x80.
func TestDirHashUnsigned(t *testing.T) {
	seed := [4]uint32{1, 2, 3, 4}
	for _, v := range []uint8{hashLegacy, hashHalfMD4, hashTea} {
		s, _ := dirHash([]byte("plain-ascii"), v, seed)
		u, _ := dirHash([]byte("plain-ascii"), v+3, seed)
		if s != u {
			t.Errorf("version %d: ascii hash differs between signed (%#x) and unsigned (%#x)", v, s, u)
		}
		s, _ = dirHash([]byte("\xe9t\xe9"), v, seed)
		u, _ = dirHash([]byte("\xe9t\xe9"), v+3, seed)
		if s == u {
			t.Errorf("version %d: high-bit hash equal for signed and unsigned (%#x)", v, s)
		}
	}
}
