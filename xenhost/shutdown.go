package xenhost

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrShutdownTimeout: the guest did not stop within the time given.
var ErrShutdownTimeout = errors.New("the guest did not shut down in time")

// Shutdown asks the host to shut guest name down cleanly and waits until
// it is off (xm shutdown -w NAME), at most timeout (10 minutes when 0).
// It is the one command that changes anything on the host, and only
// warm migration with --shutdown-source runs it.
func (h *Host) Shutdown(ctx context.Context, name string, timeout time.Duration) error {
	if err := checkName(name); err != nil {
		return err
	}
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	argv := []string{"xm", "shutdown", "-w", name}
	c, err := h.conn()
	if err != nil {
		return err
	}
	if c == nil {
		return &ConnError{Host: h.URL.Addr(), Err: errClosed}
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		if c, err = h.reconnect(ctx, c.gen); err != nil {
			return err
		}
		if s, err = c.ssh.NewSession(); err != nil {
			return fmt.Errorf("xm shutdown on %s: %w", h.URL.Addr(), err)
		}
	}
	defer s.Close()
	var stdout, stderr limitedBuffer
	stdout.max, stderr.max = 64<<10, 64<<10
	s.Stdout, s.Stderr = &stdout, &stderr
	stop := context.AfterFunc(ctx, func() { s.Close() })
	defer stop()
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	err = s.Run(strings.Join(quoted, " "))
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return fmt.Errorf("%s on %s: %w (waited %s)", strings.Join(argv, " "), h.URL.Addr(), ErrShutdownTimeout, timeout)
		}
		return ctx.Err()
	}
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return &ExecError{Host: h.URL.Addr(), Argv: argv, Status: ee.ExitStatus(), Stderr: stderr.String(), Err: err}
		}
		return &ExecError{Host: h.URL.Addr(), Argv: argv, Stderr: stderr.String(), Err: err}
	}
	return nil
}
