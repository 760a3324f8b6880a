package convert

import (
	"fmt"
	"strconv"
	"strings"
)

// FstabEntry is one line of /etc/fstab.
type FstabEntry struct {
	Spec    string // device, LABEL=..., UUID=...
	File    string // mount point
	VFSType string
	Options string
	Freq    int
	PassNo  int
	Line    int // 1-based
}

// FstabError is a line of an fstab that does not parse.
type FstabError struct {
	Line int
	Msg  string
}

func (e *FstabError) Error() string { return fmt.Sprintf("fstab line %d: %s", e.Line, e.Msg) }

// ParseFstab parses an fstab. Comments and blank lines are skipped;
// missing options, freq and passno default as mount(8) does.
func ParseFstab(data []byte) ([]FstabEntry, error) {
	var out []FstabEntry
	for i, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if len(f) < 3 {
			return nil, &FstabError{Line: i + 1, Msg: fmt.Sprintf("want at least 3 fields, have %d", len(f))}
		}
		e := FstabEntry{Spec: unescape(f[0]), File: unescape(f[1]), VFSType: f[2], Options: "defaults", Line: i + 1}
		if len(f) > 3 {
			e.Options = f[3]
		}
		for j, p := range []*int{&e.Freq, &e.PassNo} {
			if len(f) > 4+j {
				n, err := strconv.Atoi(f[4+j])
				if err != nil || n < 0 {
					return nil, &FstabError{Line: i + 1, Msg: fmt.Sprintf("field %d %q is not a number", 5+j, f[4+j])}
				}
				*p = n
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// unescape decodes fstab's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) && isOctal(s[i+1:i+4]) {
			n, _ := strconv.ParseUint(s[i+1:i+4], 8, 8)
			b.WriteByte(byte(n))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 || s[0] > '3' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '7' {
			return false
		}
	}
	return true
}

// modprobeLine is one directive of modprobe.conf, modules.conf or a
// modprobe.d file.
type modprobeLine struct {
	Cmd  string   // alias, options, install, remove, blacklist, include, ...
	Args []string // the words after the command
}

// parseModprobe splits a modprobe configuration into directives, one per
// (joined) line; comments and blank lines give a zero modprobeLine so that
// indexes match lines. Backslash continuations are joined onto the first
// line and the continued lines give zero values.
func parseModprobe(data []byte) []modprobeLine {
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	out := make([]modprobeLine, len(lines))
	for i := 0; i < len(lines); i++ {
		l := strings.TrimRight(lines[i], " \t\r")
		start := i
		for strings.HasSuffix(l, "\\") && i+1 < len(lines) {
			i++
			l = strings.TrimSuffix(l, "\\") + " " + strings.TrimRight(lines[i], " \t\r")
		}
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		out[start] = modprobeLine{Cmd: f[0], Args: f[1:]}
	}
	return out
}
