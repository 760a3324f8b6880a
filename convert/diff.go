package convert

// UnifiedDiff renders the change of a file from a to b as a unified
// diff with three lines of context, as the plan's edits are rendered
// (from and to name the two sides: "a/etc/fstab", "/dev/null").
func UnifiedDiff(from, to string, a, b []byte) string { return unifiedDiff(from, to, a, b) }

// IsText tells whether b reads as text (valid UTF-8 without NUL bytes),
// so that a change to it is shown as a diff rather than as a summary.
func IsText(b []byte) bool { return isText(b) }
