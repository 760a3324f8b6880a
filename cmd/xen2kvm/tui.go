package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/xen2kvm/xen2kvm/pipeline"
	"github.com/xen2kvm/xen2kvm/report"
	"golang.org/x/term"
)

// console is the terminal UI of the commands that copy disks (migrate,
// batch, disk convert): a progress bar per disk on a terminal, log lines
// scrolling above them, and plain log lines otherwise.
type console struct {
	mu    sync.Mutex
	w     io.Writer
	tty   bool
	bars  []*diskBar
	index map[string]*diskBar
}

type diskBar struct {
	c    *console
	i    int
	bar  *progressbar.ProgressBar
	line string
	step int64 // last 10% step logged, without a terminal

	// Network throughput, for disks read off a Xen host.
	netStart time.Time
	net      string // "network 1.2 GiB at 95.0 MiB/s"
}

func newConsole(w io.Writer) *console {
	c := &console{w: w, index: map[string]*diskBar{}}
	if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		c.tty = true
	}
	return c
}

// logger returns a slog.Logger that prints "xen2kvm: message key=value"
// lines through the console.
func (c *console) logger() *slog.Logger {
	return slog.New(&lineHandler{c: c, level: slog.LevelInfo})
}

// Write prints log lines above the progress bars.
func (c *console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.tty || len(c.bars) == 0 {
		return c.w.Write(p)
	}
	fmt.Fprintf(c.w, "\x1b[%dA\r\x1b[J", len(c.bars))
	c.w.Write(p)
	for _, b := range c.bars {
		fmt.Fprintf(c.w, "%s\n", b.line)
	}
	return len(p), nil
}

// progress shows how far the copy of a migration's disk is.
func (c *console) progress(p pipeline.Progress) {
	key := p.Guest + "/" + p.Disk
	if p.Network > 0 {
		c.network(key, p.Network)
	}
	c.update(key, p.Done, p.Total, p.Finish)
	if p.Network > 0 && p.Done == 0 {
		c.network(key, p.Network) // the bar exists now
	}
}

// network records how much a disk read off a Xen host has read so far
// and shows the throughput beside its bar (or in its log lines).
func (c *console) network(key string, n int64) {
	c.mu.Lock()
	b := c.index[key]
	if b == nil {
		c.mu.Unlock()
		return // shown from the next call on
	}
	if b.netStart.IsZero() {
		b.netStart = time.Now()
	}
	note := "network " + report.Bytes(n)
	if secs := time.Since(b.netStart).Seconds(); secs >= 0.5 {
		note += fmt.Sprintf(" at %s/s", report.Bytes(int64(float64(n)/secs)))
	}
	b.net = note
	bar := b.bar
	c.mu.Unlock()
	if bar != nil {
		bar.Describe(fmt.Sprintf("%-16s %s", key, note))
	}
}

// update shows how far the work named key is: done of total bytes;
// finish says it is complete. Each key gets its own bar on a terminal,
// and a log line every 10% otherwise.
func (c *console) update(key string, done, total int64, finish bool) {
	c.mu.Lock()
	b := c.index[key]
	if b == nil {
		b = &diskBar{c: c, i: len(c.bars), step: -1}
		c.index[key] = b
		if c.tty {
			c.bars = append(c.bars, b)
			fmt.Fprintln(c.w)
			b.bar = progressbar.NewOptions64(total,
				progressbar.OptionSetWriter(b),
				progressbar.OptionSetDescription(fmt.Sprintf("%-16s", key)),
				progressbar.OptionShowBytes(true),
				progressbar.OptionSetWidth(30),
				progressbar.OptionThrottle(100*time.Millisecond),
				progressbar.OptionSetPredictTime(true),
			)
		}
	}
	c.mu.Unlock()
	if b.bar != nil {
		b.bar.Set64(done)
		if finish {
			b.bar.Finish()
		}
		return
	}
	if total <= 0 {
		return
	}
	c.mu.Lock()
	step := done * 10 / total
	changed := step > b.step
	if changed {
		b.step = step
	}
	c.mu.Unlock()
	if changed {
		line := fmt.Sprintf("xen2kvm: %s: %d%% (%s of %s", key, step*10, report.Bytes(done), report.Bytes(total))
		c.mu.Lock()
		if b.net != "" {
			line += "; " + b.net
		}
		c.mu.Unlock()
		c.Write([]byte(line + ")\n"))
	}
}

// Write receives the bar's rendering and redraws its line.
func (b *diskBar) Write(p []byte) (int, error) {
	s := strings.TrimRight(strings.NewReplacer("\r", "", "\n", "").Replace(string(p)), " ")
	if s == "" {
		return len(p), nil
	}
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	b.line = s
	up := len(c.bars) - b.i
	fmt.Fprintf(c.w, "\x1b[%dA\r\x1b[2K%s\x1b[%dB\r", up, s, up)
	return len(p), nil
}

// done leaves the bars as they are and ends their block.
func (c *console) done() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bars = nil
}

// lineHandler is a slog.Handler for people: "xen2kvm: msg k=v ...".
type lineHandler struct {
	c     *console
	level slog.Level
	attrs []slog.Attr
}

func (h *lineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level }

func (h *lineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString("xen2kvm: ")
	if r.Level >= slog.LevelWarn {
		b.WriteString(strings.ToLower(r.Level.String()) + ": ")
	}
	b.WriteString(r.Message)
	add := func(a slog.Attr) bool {
		v := a.Value.String()
		if strings.ContainsAny(v, " \t\"") {
			v = fmt.Sprintf("%q", v)
		}
		fmt.Fprintf(&b, " %s=%s", a.Key, v)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	b.WriteString("\n")
	_, err := h.c.Write([]byte(b.String()))
	return err
}

func (h *lineHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &lineHandler{c: h.c, level: h.level, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h *lineHandler) WithGroup(string) slog.Handler { return h }
