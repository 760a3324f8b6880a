package xenhost

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// HashMethod is how the host hashes a disk's blocks.
type HashMethod string

const (
	// HashAuto uses python (2.4's md5 module or hashlib) when the host has
	// it, else dd and md5sum.
	HashAuto HashMethod = ""
	// HashPython requires python.
	HashPython HashMethod = "python"
	// HashDD uses coreutils dd and md5sum, one pair of processes per
	// block: slower, but needs nothing beyond coreutils.
	HashDD HashMethod = "dd"
)

// DefaultHashBlock is the block size of HashBlocks when none is given.
const DefaultHashBlock = 1 << 20

// hashScript is the block-hash helper: a POSIX shell script (RHEL 5's
// bash, Debian's dash) run as `sh -c SCRIPT xen2kvm-blockhash [wait]
// METHOD PATH BLOCK FIRST COUNT`. With wait it starts its interpreter,
// then waits for a line "go" on its standard input (PrepareHashBlocks)
// and opens nothing before; any other line, or none, ends it. It only opens PATH for reading and prints, for
// blocks FIRST..FIRST+COUNT-1 of BLOCK bytes, one line each: the MD5 of
// the block in hex (a block past the end hashes the empty string, the
// last block hashes what there is). The Python runs on 2.4 (no with, no
// b” literals) and on 3; it must not contain a single quote. A block of
// zeros (found by comparing it with one, far cheaper than hashing it) is
// given the MD5 of zeros without hashing it again: sparse and
// zero-filled parts of a disk cost the host only their read.
const hashScript = `PY='
import sys
if sys.argv[1] == "wait":
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)
    del sys.argv[1]
try:
    from hashlib import md5
except ImportError:
    from md5 import new as md5
path = sys.argv[1]
bs = int(sys.argv[2])
first = int(sys.argv[3])
count = int(sys.argv[4])
zero = "\0".encode("latin-1") * bs
zerosum = md5(zero).hexdigest()
f = open(path, "rb")
f.seek(first * bs)
out = sys.stdout
i = 0
while i < count:
    want = bs
    parts = []
    while want > 0:
        d = f.read(want)
        if not d:
            break
        parts.append(d)
        want = want - len(d)
    if len(parts) == 1 and parts[0] == zero:
        out.write(zerosum + "\n")
    else:
        h = md5()
        for d in parts:
            h.update(d)
        out.write(h.hexdigest() + "\n")
    i = i + 1
    if i % 16 == 0:
        out.flush()
out.flush()
f.close()
'
wait=
if [ "$1" = wait ]; then
	wait=wait
	shift
fi
method=$1; shift
if [ "$method" != dd ]; then
	for py in python python2 python3; do
		if command -v $py >/dev/null 2>&1; then
			exec $py -c "$PY" $wait "$@"
		fi
	done
	if [ "$method" = python ]; then
		echo "xen2kvm-blockhash: no python on this host" >&2
		exit 3
	fi
fi
command -v md5sum >/dev/null 2>&1 || { echo "xen2kvm-blockhash: neither python nor md5sum on this host" >&2; exit 3; }
if [ -n "$wait" ]; then
	read go || exit 0
	[ "$go" = go ] || exit 0
fi
[ -r "$1" ] || { echo "xen2kvm-blockhash: cannot read $1" >&2; exit 2; }
i=$3
end=$(($3 + $4))
while [ $i -lt $end ]; do
	dd if="$1" bs=$2 skip=$i count=1 2>/dev/null | md5sum || exit 1
	i=$(($i + 1))
done
`

// errStopped is what the hashing returns inside retry when fn failed:
// a message that never reads as a lost connection.
var errStopped = errors.New("block hashes no longer wanted")

// BlockHash is the MD5 of one block of a disk.
type BlockHash [16]byte

// ParseHashLine reads one line of the block-hash helper: 32 hex digits,
// optionally followed by a space and more (md5sum's "HASH  -").
func ParseHashLine(line string) (BlockHash, error) {
	var sum BlockHash
	h := line
	if i := strings.IndexByte(h, ' '); i >= 0 {
		h = h[:i]
	}
	if len(h) != 32 {
		return sum, fmt.Errorf("bad hash line %q", line)
	}
	if _, err := hex.Decode(sum[:], []byte(h)); err != nil {
		return sum, fmt.Errorf("bad hash line %q", line)
	}
	return sum, nil
}

// HashBlocks hashes the file or block device at path on the host in
// blocks of blockSize bytes (DefaultHashBlock when 0), blocks first to
// first+count-1, and calls fn with each block's index and hash, in order,
// as they arrive. It runs a small read-only helper script, sent over the
// SSH session and never installed: python when the host has it (RHEL 5's
// python 2.4), else dd and md5sum (method forces one). Nothing is
// written on the host. A dropped connection is re-established and the
// hashing resumes after the last block received. An error from fn stops
// the hashing and is returned.
func (h *Host) HashBlocks(ctx context.Context, path string, blockSize, first, count int64, method HashMethod, fn func(i int64, sum BlockHash) error) error {
	p := &PreparedHash{h: h, path: path, bs: blockSize, first: first, count: count, method: method}
	if err := p.check(); err != nil {
		return err
	}
	return p.Run(ctx, fn)
}

// PreparedHash is a block-hash helper started on the host ahead of need
// (PrepareHashBlocks): its SSH session is open and the helper waits,
// without having opened the disk, until Run tells it to go. Starting a
// session and an interpreter costs round trips and, on a busy host,
// seconds: a warm migration pays them while the guest still runs.
type PreparedHash struct {
	h      *Host
	path   string
	bs     int64
	first  int64
	count  int64
	method HashMethod

	gen    int // connection the session is on
	s      *ssh.Session
	stdin  io.WriteCloser
	stdout io.Reader
	stderr *limitedBuffer
}

func (p *PreparedHash) check() error {
	if p.bs <= 0 {
		p.bs = DefaultHashBlock
	}
	switch p.method {
	case HashAuto, HashPython, HashDD:
		return nil
	}
	return fmt.Errorf("unknown block-hash method %q (want python or dd)", p.method)
}

// First and Count are the blocks the helper hashes.
func (p *PreparedHash) First() int64 { return p.first }
func (p *PreparedHash) Count() int64 { return p.count }

// PrepareHashBlocks starts the helper HashBlocks runs for the same
// arguments and leaves it waiting; Run has it hash, Close sends it away.
// Nothing is opened on the host before Run.
func (h *Host) PrepareHashBlocks(ctx context.Context, path string, blockSize, first, count int64, method HashMethod) (*PreparedHash, error) {
	p := &PreparedHash{h: h, path: path, bs: blockSize, first: first, count: count, method: method}
	if err := p.check(); err != nil {
		return nil, err
	}
	c, err := h.conn()
	if err != nil {
		return nil, err
	}
	if c == nil {
		return nil, &ConnError{Host: h.URL.Addr(), Err: errClosed}
	}
	if err := p.start(c, first, true); err != nil {
		return nil, fmt.Errorf("starting the block-hash helper on %s: %w", h.URL.Addr(), err)
	}
	return p, nil
}

// Close ends a helper that was not run (its standard input closes: it
// exits without opening anything).
func (p *PreparedHash) Close() {
	if p.s != nil {
		p.stdin.Close()
		p.s.Close()
		p.s = nil
	}
}

func (p *PreparedHash) display() []string {
	return []string{"xen2kvm-blockhash", p.methodName(), p.path, strconv.FormatInt(p.bs, 10)}
}

func (p *PreparedHash) methodName() string {
	if p.method == "" {
		return "auto"
	}
	return string(p.method)
}

// start opens a session on c running the helper for blocks from..end,
// waiting for "go" when wait is set.
func (p *PreparedHash) start(c *conn, from int64, wait bool) error {
	end := p.first + p.count
	argv := []string{"sh", "-c", hashScript, "xen2kvm-blockhash"}
	if wait {
		argv = append(argv, "wait")
	}
	argv = append(argv, p.methodName(), p.path, strconv.FormatInt(p.bs, 10), strconv.FormatInt(from, 10), strconv.FormatInt(end-from, 10))
	quoted := make([]string, len(argv))
	for i, a := range argv {
		quoted[i] = shellQuote(a)
	}
	s, err := c.ssh.NewSession()
	if err != nil {
		return err
	}
	stdin, err := s.StdinPipe()
	if err != nil {
		s.Close()
		return err
	}
	stdout, err := s.StdoutPipe()
	if err != nil {
		s.Close()
		return err
	}
	stderr := &limitedBuffer{max: 64 << 10}
	s.Stderr = stderr
	if err := s.Start(strings.Join(quoted, " ")); err != nil {
		s.Close()
		return err
	}
	p.gen, p.s, p.stdin, p.stdout, p.stderr = c.gen, s, stdin, stdout, stderr
	return nil
}

// Run hashes the blocks as HashBlocks does, with the prepared helper
// when its connection is still the host's (a new one otherwise).
func (p *PreparedHash) Run(ctx context.Context, fn func(i int64, sum BlockHash) error) error {
	h := p.h
	next := p.first
	end := p.first + p.count
	var fnErr error
	err := h.retry(ctx, func(c *conn) error {
		if fnErr != nil {
			return errStopped
		}
		if next >= end {
			return nil
		}
		if p.s != nil && (p.gen != c.gen || next != p.first) {
			p.Close()
		}
		if p.s != nil {
			if _, err := io.WriteString(p.stdin, "go\n"); err != nil {
				p.Close()
				return err
			}
		} else if err := p.start(c, next, false); err != nil {
			return err
		}
		s, stdout, stderr := p.s, p.stdout, p.stderr
		p.s = nil // used: a retry starts a new one
		defer s.Close()
		stop := context.AfterFunc(ctx, func() { s.Close() })
		defer stop()
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			sum, err := ParseHashLine(sc.Text())
			if err != nil {
				s.Close()
				return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Err: fmt.Errorf("block %d: %w", next, err)}
			}
			if next >= end {
				s.Close()
				return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Err: errors.New("more hashes than blocks")}
			}
			if fnErr = fn(next, sum); fnErr != nil {
				s.Close()
				return errStopped // not a lost connection, whatever fnErr says
			}
			next++
		}
		scanErr := sc.Err()
		werr := s.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if werr != nil {
			var ee *ssh.ExitError
			if errors.As(werr, &ee) {
				return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Status: ee.ExitStatus(), Stderr: stderr.String(), Err: werr}
			}
			return werr // the connection went away: retried
		}
		if scanErr != nil {
			return scanErr
		}
		if next < end {
			return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Stderr: stderr.String(), Err: fmt.Errorf("hashes stopped at block %d of %d", next, end)}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("hashing %s on %s: %w", p.path, h.URL.Addr(), err)
	}
	return nil
}
