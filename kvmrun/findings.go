package kvmrun

import (
	"regexp"
	"strings"
	"time"
)

// Finding is a line of the guest's serial console that reports a
// problem of its own: an init script's [FAILED], a kernel panic, a root
// device not found, a filesystem check that failed, a read-only
// filesystem.
type Finding struct {
	// Kind names the problem: one of the Finding* constants.
	Kind string `json:"kind"`
	// Line is the line's number in the serial log, from 1.
	Line int `json:"line"`
	// Seconds is when the line appeared, from QEMU's start.
	Seconds float64 `json:"seconds"`
	// Text is the line, trimmed.
	Text string `json:"text"`
}

// Kinds of Finding.
const (
	FindingFailed   = "failed"    // an init script printed [FAILED], or a device it wants is not there
	FindingPanic    = "panic"     // Kernel panic
	FindingRoot     = "root"      // the root device was not found
	FindingFsck     = "fsck"      // a filesystem check failed
	FindingReadOnly = "read-only" // a write hit a read-only filesystem
	FindingOops     = "oops"      // a kernel oops or BUG
	FindingRespawn  = "respawn"   // init gave up on a respawning program
	// FindingXen: a line naming a Xen PV driver module or a Xen disk
	// (/dev/xvd*): on KVM, something in the guest still expects Xen.
	FindingXen = "xen"
	// FindingDebugKernel: the kernel announced the lock dependency
	// validator, which only debug kernels (kernel-debug) carry.
	FindingDebugKernel = "debug-kernel"
)

// findingPatterns recognise the findings, most specific first.
var findingPatterns = []struct {
	kind string
	re   *regexp.Regexp
}{
	{FindingPanic, regexp.MustCompile(`Kernel panic`)},
	{FindingRoot, regexp.MustCompile(`VFS: Cannot open root device|VFS: Unable to mount root|Unable to mount root|No root device|Gave up waiting for root`)},
	{FindingFsck, regexp.MustCompile(`(?i)fsck\S*: .*(error|fail|No such file)|An error occurred during the file system check|UNEXPECTED INCONSISTENCY|Give root password for maintenance|FILE SYSTEM WAS MODIFIED`)},
	{FindingXen, xenLeftoverRe},
	{FindingDebugKernel, regexp.MustCompile(`Lock dependency validator: Copyright`)},
	{FindingReadOnly, regexp.MustCompile(`Read-only file system`)},
	{FindingOops, regexp.MustCompile(`\bOops\b|\bBUG: |general protection fault|Segmentation fault`)},
	{FindingRespawn, regexp.MustCompile(`respawning too fast`)},
	{FindingFailed, regexp.MustCompile(`\[ *FAILED *\]|does not seem to be present|has different MAC address than expected`)},
}

// xenLeftoverRe matches what names Xen's PV devices: their disks
// (/dev/xvda1) and their drivers' modules as RHEL ships them (xenblk,
// xennet, kmod-xenpv's xen-vbd, xen-vnif, xen-platform-pci, xen-balloon)
// and as mainline names them (xen-blkfront, xen-netfront).
var xenLeftoverRe = regexp.MustCompile(`/dev/xvd[a-z]|\bxen[-_](vbd|vnif|platform[-_]pci|balloon|blkfront|netfront)\b|\bxen(blk|net)\.ko\b`)

// maxFindings bounds the findings kept: a guest in a loop repeats them.
const maxFindings = 200

// classify returns the kind of finding a serial line is, or "".
func classify(line string) string {
	for _, p := range findingPatterns {
		if p.re.MatchString(line) {
			return p.kind
		}
	}
	return ""
}

// lineScanner numbers the serial console's lines as they come and keeps
// the findings among them.
type lineScanner struct {
	start    time.Time
	partial  []byte
	line     int
	findings []Finding
}

func (s *lineScanner) add(p []byte, now time.Time) {
	data := append(s.partial, p...)
	for {
		i := indexNL(data)
		if i < 0 {
			break
		}
		s.line++
		l := strings.TrimSpace(strings.TrimRight(string(data[:i]), "\r"))
		data = data[i+1:]
		if kind := classify(l); kind != "" && len(s.findings) < maxFindings {
			s.findings = append(s.findings, Finding{Kind: kind, Line: s.line, Seconds: now.Sub(s.start).Seconds(), Text: l})
		}
	}
	// Keep the unfinished line, within reason (a guest printing no
	// newline at all must not grow it without bound).
	if len(data) > 64<<10 {
		data = data[len(data)-64<<10:]
	}
	s.partial = append(s.partial[:0], data...)
}

func indexNL(b []byte) int {
	for i, c := range b {
		if c == '\n' {
			return i
		}
	}
	return -1
}
