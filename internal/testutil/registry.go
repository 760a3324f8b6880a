package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// MergeReg writes the hive base to a file, merges the .reg text reg
// into it with hivexregedit --merge (a "Windows Registry Editor Version
// 5.00" header is added when reg has none) and returns the file's path.
func MergeReg(t testing.TB, base []byte, reg string) string {
	t.Helper()
	NeedTool(t, "hivexregedit")
	p := filepath.Join(t.TempDir(), "hive")
	if err := os.WriteFile(p, base, 0o644); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(reg, "Windows Registry Editor") {
		reg = "Windows Registry Editor Version 5.00\n\n" + reg
	}
	cmd := exec.Command("hivexregedit", "--merge", p)
	cmd.Stdin = strings.NewReader(reg)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("hivexregedit --merge: %v\n%s", err, out)
	}
	return p
}

// RegExport runs hivexregedit --export on a hive file and returns its
// keys and values: "key" -> "(key)" and "key\value" -> the exported data
// (dword:00000004, hex(1):...), keys and value names in lower case, "@"
// for a default value.
func RegExport(t testing.TB, hiveFile string) map[string]string {
	t.Helper()
	return ParseRegExport(string(Run(t, "hivexregedit", "--export", hiveFile, `\`)))
}

// ParseRegExport reads hivexregedit --export output as RegExport does.
func ParseRegExport(out string) map[string]string {
	out = strings.ReplaceAll(out, "\\\n", "")
	m := map[string]string{}
	var key string
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			key = strings.ToLower(strings.TrimPrefix(l[1:len(l)-1], `\`))
			m[key] = "(key)"
		case strings.HasPrefix(l, `"`) || strings.HasPrefix(l, "@="):
			name, data, _ := strings.Cut(l, "=")
			m[key+`\`+strings.ToLower(strings.Trim(name, `"`))] = data
		}
	}
	return m
}
