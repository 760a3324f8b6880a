package convert

import "strings"

// compareVersions compares two kernel releases the way rpm compares
// versions: runs of digits numerically, runs of letters as strings, a
// digit run newer than a letter run; other characters only separate.
func compareVersions(a, b string) int {
	for {
		a = strings.TrimLeftFunc(a, isSep)
		b = strings.TrimLeftFunc(b, isSep)
		if a == "" || b == "" {
			switch {
			case a == b:
				return 0
			case a == "":
				return -1
			default:
				return 1
			}
		}
		da, db := isDigit(rune(a[0])), isDigit(rune(b[0]))
		if da != db {
			if da {
				return 1
			}
			return -1
		}
		var sa, sb string
		sa, a = run(a, da)
		sb, b = run(b, db)
		if da {
			sa = strings.TrimLeft(sa, "0")
			sb = strings.TrimLeft(sb, "0")
			if len(sa) != len(sb) {
				if len(sa) > len(sb) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(sa, sb); c != 0 {
			return c
		}
	}
}

func isDigit(r rune) bool { return r >= '0' && r <= '9' }
func isAlpha(r rune) bool { return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' }
func isSep(r rune) bool   { return !isDigit(r) && !isAlpha(r) }

func run(s string, digits bool) (string, string) {
	i := 0
	for i < len(s) && (digits && isDigit(rune(s[i])) || !digits && isAlpha(rune(s[i]))) {
		i++
	}
	return s[:i], s[i:]
}
