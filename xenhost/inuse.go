package xenhost

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sync/errgroup"
)

// ErrDiskInUse: a process on the host has one of the guest's disks open
// for writing (see DiskInUseError). It also matches ErrRunning: copying
// the disk now gives a crash-consistent copy at best.
var ErrDiskInUse = errors.New("disk open for writing on the host")

// DiskInUseError is a disk that a process on the host has open for
// writing: a guest's device model or tapdisk (the guest runs although xm
// does not list it, or on another toolstack), or anything else writing
// into the image.
type DiskInUseError struct {
	Host, Guest, Disk string
	PID               int
	Command           string // the process's name, from /proc/PID/stat
}

func (e *DiskInUseError) Error() string {
	return fmt.Sprintf("disk %s of guest %s is open for writing on %s by process %d (%s): stop it first", e.Disk, e.Guest, e.Host, e.PID, e.Command)
}

func (e *DiskInUseError) Unwrap() []error { return []error{ErrDiskInUse, ErrRunning} }

// Hint says how to go on anyway.
func (e *DiskInUseError) Hint() string {
	return "--force-running copies it anyway; the copy is only crash-consistent and the report says so"
}

// procWorkers bounds the concurrent /proc reads of CheckDisksIdle.
const procWorkers = 64

// CheckDisksIdle looks for processes on the host that have one of the
// guest's disks open for writing, by reading /proc over SFTP (nothing is
// run): a process's /proc/PID/fd entries are symbolic links whose owner
// permission bits carry the open mode (w for O_WRONLY and O_RDWR, on
// every Linux since 2.6), so only the links of writable descriptors are
// read. It returns a *DiskInUseError per disk in use (joined), and
// warnings about what could not be checked (processes whose fds are
// unreadable without root). cdrom devices are not checked.
func (h *Host) CheckDisksIdle(ctx context.Context, g *Guest) (warnings []string, err error) {
	if g.Domain == nil {
		return nil, nil
	}
	// The paths as the kernel names an open file: symbolic links (a
	// /dev/VG/LV is one to /dev/dm-N or /dev/mapper/...) resolved.
	want := map[string]string{} // real path -> the config's path
	for _, d := range g.Domain.Disks {
		if d.Device == "cdrom" || d.Source == "" {
			continue
		}
		want[d.Source] = d.Source
		var real string
		rerr := h.retry(ctx, func(c *conn) error {
			var err error
			real, err = c.sftp.RealPath(d.Source)
			return err
		})
		if rerr == nil && real != "" {
			want[real] = d.Source
		}
	}
	if len(want) == 0 {
		return nil, nil
	}
	var procs []os.FileInfo
	if err := h.retry(ctx, func(c *conn) error {
		var err error
		procs, err = c.sftp.ReadDir("/proc")
		return err
	}); err != nil {
		if fatal(ctx, err) {
			return nil, err
		}
		// A chrooted SFTP server, a host without /proc: say so and go
		// on, xm list having had its say.
		return []string{fmt.Sprintf("could not list /proc on %s to see whether a process writes the guest's disks: %v", h.URL.Addr(), err)}, nil
	}

	var (
		mu     sync.Mutex
		inUse  []*DiskInUseError
		denied int
	)
	eg, ectx := errgroup.WithContext(ctx)
	eg.SetLimit(procWorkers)
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || !p.IsDir() {
			continue
		}
		eg.Go(func() error {
			fdDir := "/proc/" + p.Name() + "/fd"
			var fds []os.FileInfo
			err := h.retry(ectx, func(c *conn) error {
				var err error
				fds, err = c.sftp.ReadDir(fdDir)
				return err
			})
			switch {
			case errors.Is(err, os.ErrNotExist):
				return nil // the process ended
			case err != nil && fatal(ectx, err):
				return err
			case err != nil: // permission denied, mostly
				mu.Lock()
				denied++
				mu.Unlock()
				return nil
			}
			for _, fd := range fds {
				if fd.Mode().Perm()&0o200 == 0 {
					continue // open read-only
				}
				var target string
				err := h.retry(ectx, func(c *conn) error {
					var err error
					target, err = c.sftp.ReadLink(path.Join(fdDir, fd.Name()))
					return err
				})
				if err != nil {
					continue // closed meanwhile
				}
				disk, ok := want[target]
				if !ok {
					continue
				}
				e := &DiskInUseError{Host: h.URL.Addr(), Guest: g.Name, Disk: disk, PID: pid, Command: h.procName(ectx, p.Name())}
				mu.Lock()
				inUse = append(inUse, e)
				mu.Unlock()
			}
			return nil
		})
	}
	if err := eg.Wait(); err != nil {
		return nil, err
	}
	if denied > 0 {
		warnings = append(warnings, fmt.Sprintf("could not see the open files of %d processes on %s (connect as root to check them all): whether they write to the guest's disks is unknown", denied, h.URL.Addr()))
	}
	slices.SortFunc(inUse, func(a, b *DiskInUseError) int {
		if c := strings.Compare(a.Disk, b.Disk); c != 0 {
			return c
		}
		return a.PID - b.PID
	})
	var errs []error
	seen := map[string]bool{}
	for _, e := range inUse {
		key := e.Disk + "\x00" + strconv.Itoa(e.PID)
		if !seen[key] {
			seen[key] = true
			errs = append(errs, e)
		}
	}
	return warnings, errors.Join(errs...)
}

// fatal tells whether err ends the check: the connection is gone for
// good or ctx was cancelled, rather than one path being unreadable.
func fatal(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrUnreachable) || errors.Is(err, errClosed)
}

// procName is the command name of process pid, from /proc/PID/stat
// ("PID (NAME) STATE ..."), or "?".
func (h *Host) procName(ctx context.Context, pid string) string {
	var b []byte
	err := h.retry(ctx, func(c *conn) error {
		f, err := c.sftp.Open("/proc/" + pid + "/stat")
		if err != nil {
			return err
		}
		defer f.Close()
		buf := make([]byte, 512)
		n, err := f.Read(buf)
		if n > 0 {
			err = nil
		}
		b = buf[:n]
		return err
	})
	if err != nil {
		return "?"
	}
	s := string(b)
	i, j := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if i < 0 || j < i {
		return "?"
	}
	return s[i+1 : j]
}
