package xenhost

import (
	"bufio"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
)

// HashMethod is what program hashes a disk's blocks on the host.
type HashMethod string

const (
	// HashAuto uses python (2.4's md5 and sha modules, or hashlib) when
	// the host has it, else dd and md5sum or sha1sum.
	HashAuto HashMethod = ""
	// HashPython requires python.
	HashPython HashMethod = "python"
	// HashDD uses coreutils dd and md5sum (or sha1sum), one pair of
	// processes per block: slower, but needs nothing beyond coreutils.
	HashDD HashMethod = "dd"
)

// HashAlgo is the hash function of the block hashes. Either serves to
// tell a changed block from an unchanged one (nothing here defends
// against someone forging collisions, only against chance); which is
// faster depends on the host: python 2.4 on a RHEL 5 dom0 hashes MD5
// faster, a newer python's OpenSSL SHA-1 (with the CPU's SHA
// instructions) two or three times faster than MD5. ProbeHash asks.
type HashAlgo string

const (
	HashMD5  HashAlgo = "md5" // also the zero value's meaning
	HashSHA1 HashAlgo = "sha1"
)

func (a HashAlgo) name() string {
	if a == "" {
		return string(HashMD5)
	}
	return string(a)
}

// Hashing is how the host hashes blocks: the program and the function.
// The zero value is python or dd, MD5.
type Hashing struct {
	Method HashMethod
	Algo   HashAlgo
}

func (hs Hashing) check() error {
	switch hs.Method {
	case HashAuto, HashPython, HashDD:
	default:
		return fmt.Errorf("unknown block-hash method %q (want python or dd)", hs.Method)
	}
	switch hs.Algo {
	case "", HashMD5, HashSHA1:
	default:
		return fmt.Errorf("unknown block hash %q (want md5 or sha1)", hs.Algo)
	}
	return nil
}

func (hs Hashing) methodName() string {
	if hs.Method == "" {
		return "auto"
	}
	return string(hs.Method)
}

// Sum is what the host's helper prints for a block p hashed with algo:
// its MD5, or the first 128 bits of its SHA-1.
func Sum(algo HashAlgo, p []byte) BlockHash {
	if algo == HashSHA1 {
		s := sha1.Sum(p)
		return BlockHash(s[:16])
	}
	return md5.Sum(p)
}

// DefaultHashBlock is the block size of HashBlocks when none is given.
const DefaultHashBlock = 1 << 20

// helperScript is the read-only helper that hashes or maps a disk on the
// host: a POSIX shell script (RHEL 5's bash, Debian's dash) run as
//
//	sh -c SCRIPT xen2kvm-blockhash hash [wait] METHOD ALGO PATH BLOCK FIRST COUNT
//	sh -c SCRIPT xen2kvm-blockhash diff [wait] METHOD ALGO PATH BLOCK FIRST COUNT
//	sh -c SCRIPT xen2kvm-blockhash zero METHOD PATH BLOCK FIRST COUNT
//	sh -c SCRIPT xen2kvm-blockhash probe METHOD
//
// It only ever opens PATH, for reading. hash prints, for blocks
// FIRST..FIRST+COUNT-1 of BLOCK bytes, one line each: the block's hash in
// hex, MD5 or the first 32 digits of SHA-1 (a block past the end hashes
// the empty string, the last block what there is); a block of zeros
// (found by comparing it with one, far cheaper than hashing it) is given
// the hash of zeros without hashing it again, so sparse and zero-filled
// parts of a disk cost the host only their read. diff first reads COUNT
// lines from its standard input, the hashes (as hash prints them) the
// blocks had, and then answers each block with "s" (the same hash), "z"
// (all zeros now, and not before) or "d HASH LENGTH" followed by the
// block's LENGTH bytes, each line ending in a newline: the blocks that
// changed come with their data, read once, hashed and sent from the same
// buffer, and nothing else crosses the network. With wait it starts its
// interpreter (and reads diff's hashes), then waits for a line "go" on
// its standard input (PrepareHashBlocks) and opens nothing before; any
// other line, or none, ends it. zero prints one character a block, "z"
// for zeros (or past the end), "d" for data, then a newline: no hashing
// at all. probe prints the hash function the host computes faster, md5
// or sha1, timed on 4 MiB, and the number of CPUs online (0 when it
// cannot tell). zero and diff need python; without one, or
// without what METHOD asks for, the script exits with status 3. The
// Python runs on 2.4 (no with, no b"" literals, no print function, no
// conditional expressions) and on 3, where it reads into one buffer
// instead of a new string a block; it must not contain a single quote.
const helperScript = `PY='
import sys
def hasher(algo):
    if algo == "sha1":
        try:
            from hashlib import sha1
            return sha1
        except ImportError:
            from sha import new
            return new
    try:
        from hashlib import md5
        return md5
    except ImportError:
        from md5 import new
        return new
mode = sys.argv[1]
args = sys.argv[2:]
out = sys.stdout
if mode == "probe":
    import time
    d = "x".encode("latin-1") * (1 << 20)
    best = None
    for algo in ["md5", "sha1", "md5", "sha1"]:
        new = hasher(algo)
        t = time.time()
        for i in range(4):
            new(d).digest()
        t = time.time() - t
        if best is None or t < best[0]:
            best = (t, algo)
    cpus = 0
    try:
        import os
        cpus = int(os.sysconf("SC_NPROCESSORS_ONLN"))
    except Exception:
        cpus = 0
    out.write("%s %d\n" % (best[1], cpus))
    sys.exit(0)
wait = 0
if args[0] == "wait":
    wait = 1
    args = args[1:]
if mode != "zero":
    new = hasher(args[0])
    args = args[1:]
path = args[0]
bs = int(args[1])
first = int(args[2])
count = int(args[3])
def enc(s):
    return s.encode("latin-1")
if mode == "diff":
    out = getattr(sys.stdout, "buffer", sys.stdout)
    want = []
    k = 0
    while k < count:
        want.append(sys.stdin.readline()[:32])
        k = k + 1
if wait:
    if sys.stdin.readline().strip() != "go":
        sys.exit(0)
zero = enc("\0") * bs
def iszero(d):
    if len(d) == bs:
        return d == zero
    return d == zero[:len(d)]
if mode != "zero":
    zerosum = new(zero).hexdigest()[:32]
if mode == "zero":
    every = 64
else:
    every = 16
fast = sys.version_info[0] >= 3
if fast:
    f = open(path, "rb", 0)
    buf = bytearray(bs)
    mv = memoryview(buf)
else:
    f = open(path, "rb")
f.seek(first * bs)
def read():
    if fast:
        n = 0
        while n < bs:
            k = f.readinto(mv[n:])
            if not k:
                break
            n = n + k
        if n == bs:
            return [buf]
        return [mv[:n]]
    left = bs
    parts = []
    while left > 0:
        d = f.read(left)
        if not d:
            break
        parts.append(d)
        left = left - len(d)
    return parts
same = enc("s\n")
zeroed = enc("z\n")
i = 0
while i < count:
    parts = read()
    if mode == "zero":
        d = enc("").join(parts)
        if d == zero[:len(d)]:
            out.write("z")
        else:
            out.write("d")
    elif len(parts) == 1 and iszero(parts[0]):
        s = zerosum
        if len(parts[0]) != bs:
            s = new(parts[0]).hexdigest()[:32]
        if mode == "hash":
            out.write(s + "\n")
        elif want[i] == s:
            out.write(same)
        else:
            out.write(zeroed)
    else:
        h = new()
        n = 0
        for d in parts:
            h.update(d)
            n = n + len(d)
        s = h.hexdigest()[:32]
        if mode == "hash":
            out.write(s + "\n")
        elif want[i] == s:
            out.write(same)
        else:
            out.write(enc("d %s %d\n" % (s, n)))
            for d in parts:
                out.write(d)
            out.flush()
    i = i + 1
    if i % every == 0:
        out.flush()
if mode == "zero":
    out.write("\n")
out.flush()
f.close()
'
mode=$1; shift
wait=
if [ "$1" = wait ]; then
	wait=wait
	shift
fi
method=$1; shift
if [ "$method" != dd ]; then
	for py in python python2 python3; do
		if command -v $py >/dev/null 2>&1; then
			exec $py -c "$PY" $mode $wait "$@"
		fi
	done
	if [ "$method" = python ]; then
		echo "xen2kvm-blockhash: no python on this host" >&2
		exit 3
	fi
fi
case $mode in
zero|diff)
	echo "xen2kvm-blockhash: no python on this host" >&2
	exit 3
	;;
esac
command -v dd >/dev/null 2>&1 || { echo "xen2kvm-blockhash: neither python nor dd on this host" >&2; exit 3; }
if [ "$mode" = probe ]; then
	for sum in md5 sha1; do
		command -v ${sum}sum >/dev/null 2>&1 && { echo $sum $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0); exit 0; }
	done
	echo "xen2kvm-blockhash: neither python nor md5sum on this host" >&2
	exit 3
fi
sum=$1sum; shift
case $sum in
md5sum|sha1sum) ;;
*) echo "xen2kvm-blockhash: unknown hash $sum" >&2; exit 2 ;;
esac
command -v $sum >/dev/null 2>&1 || { echo "xen2kvm-blockhash: neither python nor $sum on this host" >&2; exit 3; }
if [ -n "$wait" ]; then
	read go || exit 0
	[ "$go" = go ] || exit 0
fi
[ -r "$1" ] || { echo "xen2kvm-blockhash: cannot read $1" >&2; exit 2; }
i=$3
end=$(($3 + $4))
while [ $i -lt $end ]; do
	dd if="$1" bs=$2 skip=$i count=1 2>/dev/null | $sum || exit 1
	i=$(($i + 1))
done
`

// helperArgv is the command line of the helper in mode with args.
func helperArgv(mode string, args ...string) string {
	argv := append([]string{"sh", "-c", helperScript, "xen2kvm-blockhash", mode}, args...)
	for i, a := range argv {
		argv[i] = shellQuote(a)
	}
	return strings.Join(argv, " ")
}

// HashProbe is what the host says of its hashing (ProbeHash).
type HashProbe struct {
	Algo HashAlgo // the hash function its helper computes faster
	CPUs int      // its CPUs online; 0 when it could not tell
}

// ProbeHash asks the host which hash function its helper computes faster
// with method, and how many CPUs it has (the helper's probe mode: a few
// milliseconds of hashing, nothing opened). An *ExecError with status 3
// means the host has nothing to hash with.
func (h *Host) ProbeHash(ctx context.Context, method HashMethod) (HashProbe, error) {
	if err := (Hashing{Method: method}).check(); err != nil {
		return HashProbe{}, err
	}
	m := Hashing{Method: method}.methodName()
	display := []string{"xen2kvm-blockhash", "probe", m}
	out, err := h.run(ctx, display, helperArgv("probe", m))
	if err == nil {
		f := strings.Fields(string(out))
		if len(f) >= 1 {
			switch a := HashAlgo(f[0]); a {
			case HashMD5, HashSHA1:
				p := HashProbe{Algo: a}
				if len(f) >= 2 {
					p.CPUs, _ = strconv.Atoi(f[1])
				}
				return p, nil
			}
		}
		err = &ExecError{Host: h.URL.Addr(), Argv: display, Err: fmt.Errorf("unexpected answer %q", out)}
	}
	return HashProbe{}, fmt.Errorf("asking %s how to hash blocks: %w", h.URL.Addr(), err)
}

// errStopped is what the hashing returns inside retry when fn failed:
// a message that never reads as a lost connection.
var errStopped = errors.New("block hashes no longer wanted")

// BlockHash is the MD5 of one block of a disk.
type BlockHash [16]byte

// ParseHashLine reads one line of the block-hash helper: 32 hex digits,
// or sha1sum's 40 of which the first 32 count, optionally followed by a
// space and more (md5sum's "HASH  -").
func ParseHashLine(line string) (BlockHash, error) {
	var sum BlockHash
	h := line
	if i := strings.IndexByte(h, ' '); i >= 0 {
		h = h[:i]
	}
	if len(h) != 32 && len(h) != 40 {
		return sum, fmt.Errorf("bad hash line %q", line)
	}
	var full [20]byte
	if _, err := hex.Decode(full[:], []byte(h)); err != nil {
		return sum, fmt.Errorf("bad hash line %q", line)
	}
	copy(sum[:], full[:])
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
func (h *Host) HashBlocks(ctx context.Context, path string, blockSize, first, count int64, hs Hashing, fn func(i int64, sum BlockHash) error) error {
	p := &PreparedHash{h: h, path: path, bs: blockSize, first: first, count: count, hs: hs}
	if err := p.check(); err != nil {
		return err
	}
	return p.Run(ctx, fn)
}

// BlockDiff is the host's answer for one block when it compares the
// blocks with the hashes they had (DiffBlocks).
type BlockDiff struct {
	// Same: the block's hash is the one it had.
	Same bool
	// Zero: the block is all zeros now, and its hash was another.
	Zero bool
	// Sum and Data: the block's new hash and its bytes (valid only
	// until the callback returns), when it changed and is not zeros.
	Sum  BlockHash
	Data []byte
}

// ErrNeedsPython: the host has no python, which DiffBlocks needs (the
// hashes can still be had from HashBlocks, by dd and md5sum).
var ErrNeedsPython = errors.New("comparing blocks on the host needs python")

// DiffBlocks compares the blocks first..first+count-1 of the file or
// block device at path on the host (blockSize bytes each) with the
// hashes they had, was[k] for block first+k (a zero BlockHash matches
// nothing), and calls fn with each block's index and answer, in order:
// the same, zeros now, or changed with its bytes. The hashes go to the
// host and the comparison is made there, by the helper of HashBlocks in
// its diff mode, so that unchanged blocks cost one hash on the host and
// a changed one a single read, hashed and sent from the same buffer,
// with no request for it. It needs python on the host (ErrNeedsPython);
// hs.Method HashDD is refused. Otherwise as HashBlocks: nothing is
// written on the host, a dropped connection is re-established and the
// comparison resumes after the last block received.
func (h *Host) DiffBlocks(ctx context.Context, path string, blockSize, first, count int64, hs Hashing, was []BlockHash, fn func(i int64, b BlockDiff) error) error {
	p, err := newDiff(h, path, blockSize, first, count, hs, was)
	if err != nil {
		return err
	}
	return p.RunDiff(ctx, fn)
}

func newDiff(h *Host, path string, blockSize, first, count int64, hs Hashing, was []BlockHash) (*PreparedHash, error) {
	if hs.Method == HashDD {
		return nil, fmt.Errorf("comparing blocks on %s with dd: %w", h.URL.Addr(), ErrNeedsPython)
	}
	if int64(len(was)) != count {
		return nil, fmt.Errorf("comparing %d blocks with %d hashes", count, len(was))
	}
	p := &PreparedHash{h: h, path: path, bs: blockSize, first: first, count: count, hs: hs, was: was, diff: true}
	return p, p.check()
}

// PreparedHash is a block-hash helper started on the host ahead of need
// (PrepareHashBlocks, PrepareDiffBlocks): its SSH session is open and the
// helper waits, without having opened the disk, until Run (or RunDiff)
// tells it to go. Starting a session and an interpreter costs round
// trips and, on a busy host, seconds: a warm migration pays them while
// the guest still runs.
type PreparedHash struct {
	h     *Host
	path  string
	bs    int64
	first int64
	count int64
	hs    Hashing
	diff  bool        // the helper's diff mode (DiffBlocks)
	was   []BlockHash // diff: the hashes the blocks had, from first on

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
	return p.hs.check()
}

// First and Count are the blocks the helper hashes.
func (p *PreparedHash) First() int64 { return p.first }
func (p *PreparedHash) Count() int64 { return p.count }

// Diff tells whether the helper compares (PrepareDiffBlocks, RunDiff)
// rather than hashes (PrepareHashBlocks, Run).
func (p *PreparedHash) Diff() bool { return p.diff }

// PrepareHashBlocks starts the helper HashBlocks runs for the same
// arguments and leaves it waiting; Run has it hash, Close sends it away.
// Nothing is opened on the host before Run.
func (h *Host) PrepareHashBlocks(ctx context.Context, path string, blockSize, first, count int64, hs Hashing) (*PreparedHash, error) {
	p := &PreparedHash{h: h, path: path, bs: blockSize, first: first, count: count, hs: hs}
	if err := p.check(); err != nil {
		return nil, err
	}
	return p, p.prepare()
}

// PrepareDiffBlocks starts the helper DiffBlocks runs for the same
// arguments, gives it the hashes, and leaves it waiting; RunDiff has it
// compare, Close sends it away. Nothing is opened on the host before
// RunDiff. A host without python is found out by RunDiff
// (ErrNeedsPython).
func (h *Host) PrepareDiffBlocks(ctx context.Context, path string, blockSize, first, count int64, hs Hashing, was []BlockHash) (*PreparedHash, error) {
	p, err := newDiff(h, path, blockSize, first, count, hs, was)
	if err != nil {
		return nil, err
	}
	return p, p.prepare()
}

func (p *PreparedHash) prepare() error {
	h := p.h
	c, err := h.conn()
	if err != nil {
		return err
	}
	if c == nil {
		return &ConnError{Host: h.URL.Addr(), Err: errClosed}
	}
	if err := p.start(c, p.first, true); err != nil {
		return fmt.Errorf("starting the block-hash helper on %s: %w", h.URL.Addr(), err)
	}
	return nil
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

func (p *PreparedHash) mode() string {
	if p.diff {
		return "diff"
	}
	return "hash"
}

func (p *PreparedHash) display() []string {
	return []string{"xen2kvm-blockhash", p.mode(), p.hs.methodName(), p.hs.Algo.name(), p.path, strconv.FormatInt(p.bs, 10)}
}

// start opens a session on c running the helper for blocks from..end,
// waiting for "go" when wait is set; a diff helper is given the hashes
// of those blocks first.
func (p *PreparedHash) start(c *conn, from int64, wait bool) error {
	end := p.first + p.count
	var args []string
	if wait {
		args = append(args, "wait")
	}
	args = append(args, p.hs.methodName(), p.hs.Algo.name(), p.path, strconv.FormatInt(p.bs, 10), strconv.FormatInt(from, 10), strconv.FormatInt(end-from, 10))
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
	if err := s.Start(helperArgv(p.mode(), args...)); err != nil {
		s.Close()
		return err
	}
	if p.diff {
		w := bufio.NewWriterSize(stdin, 64<<10)
		var line [33]byte
		line[32] = '\n'
		for _, sum := range p.was[from-p.first:] {
			hex.Encode(line[:32], sum[:])
			w.Write(line[:])
		}
		if err := w.Flush(); err != nil {
			s.Close()
			return err
		}
	}
	p.gen, p.s, p.stdin, p.stdout, p.stderr = c.gen, s, stdin, stdout, stderr
	return nil
}

// Run hashes the blocks as HashBlocks does, with the prepared helper
// when its connection is still the host's (a new one otherwise).
func (p *PreparedHash) Run(ctx context.Context, fn func(i int64, sum BlockHash) error) error {
	if p.diff {
		return errors.New("a helper prepared to compare blocks asked to hash them")
	}
	return p.run(ctx, func(br *bufio.Reader, i int64) error {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		sum, err := ParseHashLine(line)
		if err != nil {
			return badAnswer{err}
		}
		return stopWith(fn(i, sum))
	})
}

// RunDiff compares the blocks as DiffBlocks does, with the prepared
// helper when its connection is still the host's (a new one otherwise).
func (p *PreparedHash) RunDiff(ctx context.Context, fn func(i int64, b BlockDiff) error) error {
	if !p.diff {
		return errors.New("a helper prepared to hash blocks asked to compare them")
	}
	buf := make([]byte, p.bs)
	err := p.run(ctx, func(br *bufio.Reader, i int64) error {
		line, err := readLine(br)
		if err != nil {
			return err
		}
		switch {
		case line == "s":
			return stopWith(fn(i, BlockDiff{Same: true}))
		case line == "z":
			return stopWith(fn(i, BlockDiff{Zero: true}))
		case strings.HasPrefix(line, "d "):
		default:
			return badAnswer{fmt.Errorf("bad answer %q", line)}
		}
		f := strings.Fields(line)
		if len(f) != 3 {
			return badAnswer{fmt.Errorf("bad answer %q", line)}
		}
		sum, err := ParseHashLine(f[1])
		if err != nil {
			return badAnswer{err}
		}
		n, err := strconv.ParseInt(f[2], 10, 64)
		if err != nil || n < 0 || n > p.bs {
			return badAnswer{fmt.Errorf("bad block length in %q", line)}
		}
		if _, err := io.ReadFull(br, buf[:n]); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
		p.h.bytesRead.Add(n)
		return stopWith(fn(i, BlockDiff{Sum: sum, Data: buf[:n]}))
	})
	var ee *ExecError
	if errors.As(err, &ee) && ee.Status == 3 {
		return fmt.Errorf("%w: %w", ErrNeedsPython, err)
	}
	return err
}

// badAnswer is output of the helper that makes no sense: not retried.
type badAnswer struct{ err error }

func (b badAnswer) Error() string { return b.err.Error() }

// stopped carries an error of the caller's callback out of the reading.
type stopped struct{ err error }

func (s stopped) Error() string { return s.err.Error() }

func stopWith(err error) error {
	if err != nil {
		return stopped{err}
	}
	return nil
}

// readLine reads one line of the helper's output, without its newline;
// io.EOF when the output ended before it.
func readLine(br *bufio.Reader) (string, error) {
	line, err := br.ReadSlice('\n')
	switch {
	case err == io.EOF && len(line) > 0:
		err = io.ErrUnexpectedEOF // cut short
	case errors.Is(err, bufio.ErrBufferFull):
		return "", badAnswer{errors.New("a line too long")}
	}
	return strings.TrimRight(string(line), "\r\n"), err
}

// run runs the helper (the prepared one when its connection is still the
// host's, a new one otherwise) and has answer read each block's answer,
// in order, retrying from the next block when the connection is lost.
func (p *PreparedHash) run(ctx context.Context, answer func(br *bufio.Reader, i int64) error) error {
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
			// A helper already gone (it exits at once on a host without
			// what it needs) fails this write: its output then ends at
			// once and its exit status, below, says why.
			io.WriteString(p.stdin, "go\n")
		} else if err := p.start(c, next, false); err != nil {
			return err
		}
		s, stdout, stderr := p.s, p.stdout, p.stderr
		p.s = nil // used: a retry starts a new one
		defer s.Close()
		stop := context.AfterFunc(ctx, func() { s.Close() })
		defer stop()
		br := bufio.NewReaderSize(stdout, 256<<10)
		var readErr error
		for next < end {
			err := answer(br, next)
			var st stopped
			var bad badAnswer
			switch {
			case err == nil:
				next++
				continue
			case errors.As(err, &st):
				fnErr = st.err
				s.Close()
				return errStopped // not a lost connection, whatever fnErr says
			case errors.As(err, &bad):
				s.Close()
				return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Err: fmt.Errorf("block %d: %w", next, bad.err)}
			}
			readErr = err
			break
		}
		if readErr == nil {
			if _, err := br.ReadByte(); err != io.EOF {
				s.Close()
				return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Err: errors.New("more answers than blocks")}
			}
		}
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
		if readErr != nil && readErr != io.EOF && readErr != io.ErrUnexpectedEOF {
			return readErr
		}
		if next < end {
			return &ExecError{Host: h.URL.Addr(), Argv: p.display(), Stderr: stderr.String(), Err: fmt.Errorf("answers stopped at block %d of %d", next, end)}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		what := "hashing"
		if p.diff {
			what = "comparing the blocks of"
		}
		return fmt.Errorf("%s %s on %s: %w", what, p.path, h.URL.Addr(), err)
	}
	return nil
}
