package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/xen2kvm/xen2kvm/pipeline"
)

// TestConsolePlain: without a terminal, progress is a log line per 10%.
func TestConsolePlain(t *testing.T) {
	var buf bytes.Buffer
	c := newConsole(&buf)
	for done := int64(0); done <= 1000; done += 50 {
		c.progress(pipeline.Progress{Guest: "web01", Disk: "vda", Done: done, Total: 1000})
	}
	c.logger().Info("copied disk", "target", "vda", "seconds", 1.5)
	c.done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 12 || lines[0] != "xen2kvm: web01/vda: 0% (0 B of 1000 B)" || lines[10] != "xen2kvm: web01/vda: 100% (1000 B of 1000 B)" ||
		lines[11] != "xen2kvm: copied disk target=vda seconds=1.5" {
		t.Errorf("output:\n%s", buf.String())
	}
	if strings.Contains(buf.String(), "\x1b[") {
		t.Error("escape sequences without a terminal")
	}
}

// TestConsoleBars: on a terminal, each disk has its own bar line, and log
// lines are printed above the bars.
func TestConsoleBars(t *testing.T) {
	var buf bytes.Buffer
	c := newConsole(&buf)
	c.tty = true
	c.progress(pipeline.Progress{Guest: "g", Disk: "vda", Done: 0, Total: 1 << 20})
	c.progress(pipeline.Progress{Guest: "g", Disk: "vdb", Done: 0, Total: 2 << 20})
	c.progress(pipeline.Progress{Guest: "g", Disk: "vdb", Done: 2 << 20, Total: 2 << 20, Finish: true})
	c.logger().Info("copied disk", "target", "vdb")
	c.progress(pipeline.Progress{Guest: "g", Disk: "vda", Done: 1 << 20, Total: 1 << 20, Finish: true})
	c.done()
	out := buf.String()
	if len(c.index) != 2 || !strings.Contains(out, "g/vda") || !strings.Contains(out, "g/vdb") || !strings.Contains(out, "100%") {
		t.Errorf("bars: %q", out)
	}
	// The log line clears the bar block (2 lines up, clear to the end)
	// and redraws both bars below it.
	i := strings.Index(out, "\x1b[2A\r\x1b[Jxen2kvm: copied disk target=vdb\n")
	if i < 0 || !strings.Contains(out[i:], "g/vda") || !strings.Contains(out[i:], "g/vdb") {
		t.Errorf("log line not printed above the bars: %q", out)
	}
}

// TestConsoleNetwork: a disk read off a Xen host shows how much came over
// the network and how fast, on its bar and in its log lines.
func TestConsoleNetwork(t *testing.T) {
	var buf bytes.Buffer
	c := newConsole(&buf)
	c.progress(pipeline.Progress{Guest: "web01", Disk: "vda", Done: 0, Total: 1000, Network: 100})
	c.index["web01/vda"].netStart = c.index["web01/vda"].netStart.Add(-2 * time.Second)
	c.progress(pipeline.Progress{Guest: "web01", Disk: "vda", Done: 500, Total: 1000, Network: 4 << 20})
	c.done()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 || lines[1] != "xen2kvm: web01/vda: 50% (500 B of 1000 B; network 4.0 MiB at 2.0 MiB/s)" {
		t.Errorf("output:\n%s", buf.String())
	}
	var tty bytes.Buffer
	c = newConsole(&tty)
	c.tty = true
	c.progress(pipeline.Progress{Guest: "g", Disk: "vda", Done: 0, Total: 1 << 20, Network: 1 << 20})
	c.progress(pipeline.Progress{Guest: "g", Disk: "vda", Done: 1 << 20, Total: 1 << 20, Finish: true, Network: 3 << 20})
	c.done()
	if !strings.Contains(tty.String(), "network 3.0 MiB") {
		t.Errorf("the bar does not show the network bytes:\n%q", tty.String())
	}
}
