package xenhost

import (
	"bufio"
	"context"
	"crypto/md5"
	"errors"
	"fmt"
	"io"
	"strconv"

	"golang.org/x/crypto/ssh"

	"github.com/xen2kvm/xen2kvm/diskimg"
)

// ZeroMap says which fixed-size blocks of a disk on the host are all
// zeros (ZeroMap).
type ZeroMap struct {
	BlockSize int64
	Size      int64  // the disk's size in bytes
	Zero      []bool // by block index
	Method    string // python or dd: what scanned it
}

// ZeroBytes is how many of the disk's bytes lie in zero blocks.
func (z *ZeroMap) ZeroBytes() int64 {
	var n int64
	for i, zero := range z.Zero {
		if zero {
			n += min(z.BlockSize, z.Size-int64(i)*z.BlockSize)
		}
	}
	return n
}

// ZeroMap scans the file or block device at path on the host, size bytes,
// in blocks of blockSize bytes (DefaultHashBlock when 0), and says which
// blocks are all zeros. It runs the read-only helper of HashBlocks in a
// cheaper mode, one character per block and no hashing, with python
// (method HashPython or HashAuto); with HashDD, or HashAuto on a host
// without python, it takes HashBlocks' dd and md5sum hashes and compares
// them with the hash of a zero block. Nothing is written on the host; a
// dropped connection resumes after the last block received. The map is
// only as consistent as the disk: take it while nothing writes to it.
func (h *Host) ZeroMap(ctx context.Context, path string, size, blockSize int64, method HashMethod) (*ZeroMap, error) {
	if blockSize <= 0 {
		blockSize = DefaultHashBlock
	}
	if err := (Hashing{Method: method}).check(); err != nil {
		return nil, err
	}
	n := (size + blockSize - 1) / blockSize
	z := &ZeroMap{BlockSize: blockSize, Size: size, Zero: make([]bool, n)}
	if method != HashDD {
		err := h.zeroMapPython(ctx, path, z)
		if err == nil || method == HashPython || ctx.Err() != nil {
			return z, err
		}
		var ee *ExecError
		if !errors.As(err, &ee) || (ee.Status != 3 && ee.Status != 127) { // no python, or one that cannot run
			return nil, err
		}
	}
	// dd and md5sum: a block is zero when its hash is that of zeros of
	// its length (only the last block can be shorter).
	zs := md5.Sum(make([]byte, blockSize))
	lastLen := size - (n-1)*blockSize
	lastZs := md5.Sum(make([]byte, lastLen))
	empty := md5.Sum(nil)
	err := h.HashBlocks(ctx, path, blockSize, 0, n, Hashing{Method: HashDD}, func(i int64, sum BlockHash) error {
		if sum == empty {
			// The helper hashes dd's output without checking dd
			// ran: nothing read means no dd (or an unreadable disk).
			return fmt.Errorf("mapping the zero blocks of %s on %s: dd read nothing of block %d (is dd there?)", path, h.URL.Addr(), i)
		}
		z.Zero[i] = sum == zs || (i == n-1 && sum == lastZs)
		return nil
	})
	if err != nil {
		return nil, err
	}
	z.Method = string(HashDD)
	return z, nil
}

func (h *Host) zeroMapPython(ctx context.Context, path string, z *ZeroMap) error {
	next, end := int64(0), int64(len(z.Zero))
	display := []string{"xen2kvm-blockhash", "zero", path, strconv.FormatInt(z.BlockSize, 10)}
	err := h.retry(ctx, func(c *conn) error {
		if next >= end {
			return nil
		}
		s, err := c.ssh.NewSession()
		if err != nil {
			return err
		}
		defer s.Close()
		stdout, err := s.StdoutPipe()
		if err != nil {
			return err
		}
		stderr := &limitedBuffer{max: 64 << 10}
		s.Stderr = stderr
		if err := s.Start(helperArgv("zero", string(HashPython), path, strconv.FormatInt(z.BlockSize, 10), strconv.FormatInt(next, 10), strconv.FormatInt(end-next, 10))); err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { s.Close() })
		defer stop()
		r := bufio.NewReaderSize(stdout, 64<<10)
		var bad error
		for {
			b, err := r.ReadByte()
			if err == io.EOF {
				break
			}
			if err != nil {
				return err
			}
			if b == '\n' && next == end {
				continue
			}
			if next >= end || (b != 'z' && b != 'd') {
				bad = fmt.Errorf("unexpected output %q at block %d of %d", b, next, end)
				s.Close()
				break
			}
			z.Zero[next] = b == 'z'
			next++
		}
		werr := s.Wait()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if bad != nil {
			return &ExecError{Host: h.URL.Addr(), Argv: display, Stderr: stderr.String(), Err: bad}
		}
		if werr != nil {
			var ee *ssh.ExitError
			if errors.As(werr, &ee) {
				return &ExecError{Host: h.URL.Addr(), Argv: display, Status: ee.ExitStatus(), Stderr: stderr.String(), Err: werr}
			}
			return werr // the connection went away: retried
		}
		if next < end {
			return &ExecError{Host: h.URL.Addr(), Argv: display, Stderr: stderr.String(), Err: fmt.Errorf("the map stopped at block %d of %d", next, end)}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mapping the zero blocks of %s on %s: %w", path, h.URL.Addr(), err)
	}
	z.Method = string(HashPython)
	return nil
}

// Extent is a byte range of a disk (Disk.Extents).
type Extent = diskimg.Extent
