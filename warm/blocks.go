package warm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/xen2kvm/xen2kvm/xenhost"
)

// DefaultBlockSize is the size of the blocks that are hashed and moved.
const DefaultBlockSize = xenhost.DefaultHashBlock

// Hasher hashes the blocks of a disk where the disk is (xenhost.Host).
type Hasher interface {
	HashBlocks(ctx context.Context, path string, blockSize, first, count int64, hs xenhost.Hashing, fn func(i int64, sum xenhost.BlockHash) error) error
}

// Differ compares the blocks of a disk with the hashes they had where the
// disk is, and sends those that changed (xenhost.Host). Both passes use
// it when the Hasher is one too, unless the host has no python
// (xenhost.ErrNeedsPython) or Options.Method is dd.
type Differ interface {
	DiffBlocks(ctx context.Context, path string, blockSize, first, count int64, hs xenhost.Hashing, was []xenhost.BlockHash, fn func(i int64, b xenhost.BlockDiff) error) error
}

// Stats are what one pass over one disk did.
type Stats struct {
	Blocks    int64  `json:"blocks"`         // blocks of the disk
	Changed   int64  `json:"changed_blocks"` // pass 2: blocks whose hash differed
	Zeroed    int64  `json:"zeroed_blocks"`  // blocks that are zero and were not moved (pass 2: holes punched)
	BytesRead int64  `json:"bytes_read"`     // bytes of data moved over the network
	Written   int64  `json:"bytes_written"`  // bytes written to the local copy
	Hashed    int64  `json:"hashed_blocks"`  // pass 2: block hashes received from the host
	Duration  Dur    `json:"duration"`       // wall time
	Method    string `json:"hash_method,omitempty"`
	// Prepared: pass 2's hash helpers that were started ahead
	// (Options.Prepared) and used.
	Prepared int `json:"prepared_helpers,omitempty"`
}

// Dur is a time.Duration that reads as seconds in JSON.
type Dur time.Duration

// MarshalJSON writes seconds.
func (d Dur) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf("%.3f", time.Duration(d).Seconds())), nil
}

// UnmarshalJSON reads seconds.
func (d *Dur) UnmarshalJSON(b []byte) error {
	var s float64
	if _, err := fmt.Sscanf(string(b), "%g", &s); err != nil {
		return fmt.Errorf("duration %s: %w", b, err)
	}
	*d = Dur(time.Duration(s * float64(time.Second)))
	return nil
}

// Options tune the block engine.
type Options struct {
	// BlockSize is the block size (DefaultBlockSize when 0); pass 2 must
	// use pass 1's.
	BlockSize int64
	// Workers is how many blocks are read from the host at once (8 when
	// 0).
	Workers int
	// Method is what hashes blocks on the host.
	Method xenhost.HashMethod
	// Algo is the block hash (MD5 when empty), in both passes and for
	// the local copy's sums: the host's fastest (xenhost.ProbeHash).
	Algo xenhost.HashAlgo
	// Streams is how many helpers hash the disk on the host at once,
	// each over its own contiguous part (DefaultStreams when 0): MD5
	// runs on one core, so one helper leaves a dom0's other cores idle
	// while the guest is down.
	Streams int
	// Progress, when set, is called with bytes done, bytes in all and
	// bytes of data moved over the network so far.
	Progress func(done, total, moved int64)
	// Prepared are helpers started ahead for pass 2 (Prepare); Sync uses
	// those for its ranges and closes the others.
	Prepared []*xenhost.PreparedHash
	// noSync leaves the fsync of dst to the caller (Session.Pass2, which
	// does it after the downtime).
	noSync bool
	// Mirror, when set, is given every block written into the local
	// copy, at the same offset, and zeros for every block punched out of
	// it, so that it ends up holding the same data: the output image,
	// written while the guest runs (see Session.OutputQCOW2).
	Mirror io.WriterAt
}

func (o Options) blockSize() int64 {
	if o.BlockSize > 0 {
		return o.BlockSize
	}
	return DefaultBlockSize
}

// DefaultStreams is how many block-hash helpers run on the host at once
// when Options.Streams is 0.
const DefaultStreams = 2

// MaxStreams bounds the helpers hashing at once on a host, over all the
// disks of a guest: each is an SSH session, and OpenSSH's sshd allows ten
// on one connection (MaxSessions, since 5.1), the SFTP one among them.
const MaxStreams = 8

// HashStreams is how many helpers should hash each of a guest's disks
// at once on a host with cpus CPUs (0: unknown, taken as
// DefaultStreams): one a CPU, at most MaxStreams for all the disks, at
// least one a disk. While the guest is down its host has nothing else to
// do, and a RHEL 5 dom0 has all the machine's CPUs; MD5 in python 2.4
// hashes a few hundred MB/s a core.
func HashStreams(cpus, disks int) int {
	n := cpus
	if n <= 0 {
		n = DefaultStreams
	}
	return max(min(n, MaxStreams)/max(disks, 1), 1)
}

func (o Options) hashing() xenhost.Hashing {
	return xenhost.Hashing{Method: o.Method, Algo: o.Algo}
}

func (o Options) streams() int {
	if o.Streams > 0 {
		return o.Streams
	}
	return DefaultStreams
}

func (o Options) workers() int {
	if o.Workers > 0 {
		return o.Workers
	}
	return 8
}

func blocks(size, bs int64) int64 { return (size + bs - 1) / bs }

// Sums are the hashes (Options.Algo) of a local copy's blocks, kept from pass 1 so that
// pass 2 does not read the copy again.
type Sums []xenhost.BlockHash

func isZero(p []byte) bool {
	for len(p) >= 8 {
		if p[0]|p[1]|p[2]|p[3]|p[4]|p[5]|p[6]|p[7] != 0 {
			return false
		}
		p = p[8:]
	}
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// Copy is pass 1: it copies src (size bytes, read over the network) into
// dst block by block, Workers blocks at once, leaving zero blocks as
// holes, and returns the hash of every block as written. dst is truncated
// to size first.
func Copy(ctx context.Context, src io.ReaderAt, size int64, dst *os.File, opts Options) (Sums, Stats, error) {
	start := time.Now()
	bs := opts.blockSize()
	n := blocks(size, bs)
	st := Stats{Blocks: n}
	if err := dst.Truncate(0); err != nil {
		return nil, st, fmt.Errorf("truncating %s: %w", dst.Name(), err)
	}
	if err := dst.Truncate(size); err != nil {
		return nil, st, fmt.Errorf("sizing %s: %w", dst.Name(), err)
	}
	sums := make(Sums, n)
	var next, done, read, written, zero atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	for w := 0; w < opts.workers(); w++ {
		g.Go(func() error {
			buf := make([]byte, bs)
			for {
				if err := gctx.Err(); err != nil {
					return err
				}
				i := next.Add(1) - 1
				if i >= n {
					return nil
				}
				off := i * bs
				p := buf[:min(bs, size-off)]
				k, err := src.ReadAt(p, off)
				read.Add(int64(k))
				if err != nil && !(errors.Is(err, io.EOF) && k == len(p)) {
					return fmt.Errorf("reading block %d: %w", i, err)
				}
				sums[i] = xenhost.Sum(opts.Algo, p)
				if isZero(p) {
					zero.Add(1)
				} else {
					if _, err := dst.WriteAt(p, off); err != nil {
						return fmt.Errorf("writing %s: %w", dst.Name(), err)
					}
					if err := toMirror(opts, p, off); err != nil {
						return err
					}
					written.Add(int64(len(p)))
				}
				d := done.Add(int64(len(p)))
				if opts.Progress != nil {
					opts.Progress(d, size, read.Load())
				}
			}
		})
	}
	err := g.Wait()
	st.BytesRead, st.Written, st.Zeroed = read.Load(), written.Load(), zero.Load()
	st.Duration = Dur(time.Since(start))
	if err != nil {
		return nil, st, err
	}
	if err := dst.Sync(); err != nil {
		return nil, st, fmt.Errorf("syncing %s: %w", dst.Name(), err)
	}
	return sums, st, nil
}

// Sync is pass 2: the host hashes remotePath (src, size bytes) in blocks
// of the pass 1 block size; every block whose hash differs from sums (the
// hashes of dst's blocks, as Copy returned them) is written into dst, a
// block that is now all zeros is punched out of dst instead. When h is
// also a Differ (and python on the host can) the comparison is made on
// the host, which sends the changed blocks with its answers; otherwise
// the hashes come back and the changed blocks are read from src,
// Workers at once, and checked against their hash (a guest still
// writing fails it: ErrSourceChanging). sums is updated. Blocks past
// the end of sums (the disk grew) count as changed; dst is resized to
// size.
func Sync(ctx context.Context, h Hasher, remotePath string, src io.ReaderAt, size int64, dst *os.File, sums Sums, opts Options) (Sums, Stats, error) {
	return syncBlocks(ctx, h, remotePath, src, size, dst, sums, opts, false)
}

// CopySparse is pass 1 for a host that can hash: the host hashes the
// disk first, blocks whose hash is that of zeros are left as holes
// without being read over the network, the others are copied as Copy
// does; where the host compares blocks itself (h is a Differ, python
// there) its helper sends each block of data with its hash, read once.
// The guest may write meanwhile: a block hashed as zeros and written
// since is simply one that pass 2 finds changed. dst is truncated to size
// first.
func CopySparse(ctx context.Context, h Hasher, remotePath string, src io.ReaderAt, size int64, dst *os.File, opts Options) (Sums, Stats, error) {
	if err := dst.Truncate(0); err != nil {
		return nil, Stats{}, fmt.Errorf("truncating %s: %w", dst.Name(), err)
	}
	if err := dst.Truncate(size); err != nil {
		return nil, Stats{}, fmt.Errorf("sizing %s: %w", dst.Name(), err)
	}
	bs := opts.blockSize()
	sums := make(Sums, blocks(size, bs)) // all unknown: every block is looked at
	sums, st, err := syncBlocks(ctx, h, remotePath, src, size, dst, sums, opts, true)
	st.Changed = 0
	return sums, st, err
}

func syncBlocks(ctx context.Context, h Hasher, remotePath string, src io.ReaderAt, size int64, dst *os.File, sums Sums, opts Options, pass1 bool) (Sums, Stats, error) {
	start := time.Now()
	bs := opts.blockSize()
	n := blocks(size, bs)
	st := Stats{Blocks: n, Method: string(opts.Method)}
	if st.Method == "" {
		st.Method = "auto"
	}
	if fi, err := dst.Stat(); err != nil {
		return sums, st, err
	} else if fi.Size() != size {
		if err := dst.Truncate(size); err != nil {
			return sums, st, fmt.Errorf("resizing %s: %w", dst.Name(), err)
		}
	}
	if int64(len(sums)) > n {
		sums = sums[:n]
	}
	for int64(len(sums)) < n {
		sums = append(sums, xenhost.BlockHash{}) // never a hash (of what?): always differs
	}
	zeroSum := xenhost.Sum(opts.Algo, make([]byte, bs))
	lastLen := size - (n-1)*bs
	lastZero := xenhost.Sum(opts.Algo, make([]byte, max(lastLen, 0)))

	type job struct {
		i   int64
		sum xenhost.BlockHash
	}
	jobs := make(chan job, 256)
	var read, written, changed, zeroed, hashed, done atomic.Int64
	g, gctx := errgroup.WithContext(ctx)
	var mu sync.Mutex // guards sums
	zeroOf := func(i int64) xenhost.BlockHash {
		if i == n-1 {
			return lastZero
		}
		return zeroSum
	}
	// zero makes block i read as zeros in dst and the mirror (a fresh
	// copy, pass 1's, has holes there already); p, the block's length,
	// is cleared for the mirror.
	zero := func(i int64, p []byte) error {
		zeroed.Add(1)
		if pass1 {
			return nil
		}
		off := i * bs
		if err := punch(dst, off, int64(len(p))); err != nil {
			return err
		}
		clear(p)
		return toMirror(opts, p, off)
	}
	// store writes block i's bytes p into dst and the mirror.
	store := func(i int64, p []byte) error {
		if _, err := dst.WriteAt(p, i*bs); err != nil {
			return fmt.Errorf("writing %s: %w", dst.Name(), err)
		}
		if err := toMirror(opts, p, i*bs); err != nil {
			return err
		}
		written.Add(int64(len(p)))
		return nil
	}
	progress := func(n int64) {
		if opts.Progress != nil {
			opts.Progress(done.Add(n), size, read.Load())
		}
	}
	// record notes block i's sum, n bytes looked at.
	record := func(i int64, sum xenhost.BlockHash, n int64) {
		mu.Lock()
		sums[i] = sum
		mu.Unlock()
		progress(n)
	}
	for w := 0; w < opts.workers(); w++ {
		g.Go(func() error {
			buf := make([]byte, bs)
			for j := range jobs {
				off := j.i * bs
				p := buf[:min(bs, size-off)]
				sum := j.sum
				if j.sum == zeroOf(j.i) {
					if err := zero(j.i, p); err != nil {
						return err
					}
				} else {
					k, err := src.ReadAt(p, off)
					read.Add(int64(k))
					if err != nil && !(errors.Is(err, io.EOF) && k == len(p)) {
						return fmt.Errorf("reading block %d: %w", j.i, err)
					}
					// The guest is stopped, so what is read is what was
					// hashed; a mismatch means it is not.
					got := xenhost.Sum(opts.Algo, p)
					switch {
					case pass1:
						sum = got // the guest runs: what was read is what counts
					case got != j.sum:
						return fmt.Errorf("block %d changed between its hash and its read: %w", j.i, ErrSourceChanging)
					}
					if err := store(j.i, p); err != nil {
						return err
					}
				}
				record(j.i, sum, int64(len(p)))
			}
			return nil
		})
	}
	// The host hashes the disk in Streams contiguous ranges at once, each
	// its own helper; a hash is compared as it arrives and a differing
	// block is fetched while the hashing goes on.
	prepared := map[[2]int64]*xenhost.PreparedHash{}
	for _, p := range opts.Prepared {
		prepared[[2]int64{p.First(), p.Count()}] = p
	}
	var hashers sync.WaitGroup
	for _, rg := range hashRanges(n, opts.streams()) {
		first, count := rg[0], rg[1]
		p := prepared[rg]
		delete(prepared, rg)
		if p != nil {
			st.Prepared++
		}
		hashers.Add(1)
		g.Go(func() error {
			defer hashers.Done()
			if d, ok := h.(Differ); ok && opts.Method != xenhost.HashDD {
				// The host compares the blocks with their hashes and
				// sends those that changed: no hash lines, no requests.
				// In pass 1 every hash is unknown: the host sends every
				// block of data, hashed as sent (the guest runs: a
				// block read twice could differ), and zero blocks are
				// holes in the fresh copy already.
				mu.Lock()
				was := slices.Clone(sums[first : first+count])
				mu.Unlock()
				var zeros []byte
				diff := func(i int64, b xenhost.BlockDiff) error {
					hashed.Add(1)
					l := min(bs, size-i*bs)
					switch {
					case b.Same:
						progress(l)
						return nil
					case b.Zero:
						changed.Add(1)
						if zeros == nil {
							zeros = make([]byte, bs)
						}
						if err := zero(i, zeros[:l]); err != nil {
							return err
						}
						b.Sum = zeroOf(i)
					default:
						changed.Add(1)
						if int64(len(b.Data)) != l {
							return fmt.Errorf("block %d: the host sent %d bytes, not %d: %w", i, len(b.Data), l, ErrSourceChanging)
						}
						read.Add(l)
						if err := store(i, b.Data); err != nil {
							return err
						}
					}
					record(i, b.Sum, l)
					return nil
				}
				var err error
				if p != nil && p.Diff() {
					err = p.RunDiff(gctx, diff)
				} else {
					if p != nil {
						p.Close()
					}
					err = d.DiffBlocks(gctx, remotePath, bs, first, count, opts.hashing(), was, diff)
				}
				if !errors.Is(err, xenhost.ErrNeedsPython) {
					return err
				}
				p = nil // no python on the host: its hashes, by dd
			}
			if p != nil && p.Diff() {
				p.Close()
				p = nil
			}
			hash := func(fn func(int64, xenhost.BlockHash) error) error {
				if p != nil {
					return p.Run(gctx, fn)
				}
				return h.HashBlocks(gctx, remotePath, bs, first, count, opts.hashing(), fn)
			}
			return hash(func(i int64, sum xenhost.BlockHash) error {
				hashed.Add(1)
				mu.Lock()
				same := sums[i] == sum
				mu.Unlock()
				if same {
					progress(min(bs, size-i*bs))
					return nil
				}
				changed.Add(1)
				select {
				case jobs <- job{i, sum}:
					return nil
				case <-gctx.Done():
					return gctx.Err()
				}
			})
		})
	}
	for _, p := range prepared {
		p.Close() // for other ranges: the disk changed size
	}
	go func() { hashers.Wait(); close(jobs) }()
	err := g.Wait()
	st.BytesRead, st.Written, st.Changed, st.Zeroed, st.Hashed = read.Load(), written.Load(), changed.Load(), zeroed.Load(), hashed.Load()
	st.Duration = Dur(time.Since(start))
	if err != nil {
		return sums, st, err
	}
	if st.Hashed != n {
		return sums, st, fmt.Errorf("the host hashed %d blocks of %d", st.Hashed, n)
	}
	if opts.noSync {
		return sums, st, nil
	}
	if err := dst.Sync(); err != nil {
		return sums, st, fmt.Errorf("syncing %s: %w", dst.Name(), err)
	}
	return sums, st, nil
}

// hashRanges splits n blocks into at most k contiguous ranges (first,
// count) for as many helpers hashing at once.
func hashRanges(n int64, k int) [][2]int64 {
	kk := min(int64(k), n)
	var rs [][2]int64
	for r := int64(0); r < kk; r++ {
		first, last := r*n/kk, (r+1)*n/kk
		rs = append(rs, [2]int64{first, last - first})
	}
	return rs
}

// Prepare starts, on h, the helpers that Sync will run for a disk of
// size bytes at remotePath with opts, waiting (see
// xenhost.Host.PrepareHashBlocks): give them to Sync in Options.Prepared.
// With the copy's sums (and a method other than dd) they are the
// helpers that compare the blocks with them on the host
// (xenhost.Host.PrepareDiffBlocks), given them now.
func Prepare(ctx context.Context, h *xenhost.Host, remotePath string, size int64, sums Sums, opts Options) ([]*xenhost.PreparedHash, error) {
	var ps []*xenhost.PreparedHash
	n := blocks(size, opts.blockSize())
	for _, rg := range hashRanges(n, opts.streams()) {
		var p *xenhost.PreparedHash
		var err error
		if sums != nil && opts.Method != xenhost.HashDD {
			was := make([]xenhost.BlockHash, rg[1]) // blocks past the copy's end: unknown
			copy(was, sums[min(rg[0], int64(len(sums))):min(rg[0]+rg[1], int64(len(sums)))])
			p, err = h.PrepareDiffBlocks(ctx, remotePath, opts.blockSize(), rg[0], rg[1], opts.hashing(), was)
		} else {
			p, err = h.PrepareHashBlocks(ctx, remotePath, opts.blockSize(), rg[0], rg[1], opts.hashing())
		}
		if err != nil {
			for _, p := range ps {
				p.Close()
			}
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

func toMirror(opts Options, p []byte, off int64) error {
	if opts.Mirror == nil {
		return nil
	}
	if _, err := opts.Mirror.WriteAt(p, off); err != nil {
		return fmt.Errorf("writing the output image: %w", err)
	}
	return nil
}

// ErrSourceChanging: a block read in pass 2 is not the block the host
// hashed a moment before, so the guest (or something else) still writes
// its disk.
var ErrSourceChanging = errors.New("the source disk is still being written")

// punch makes a range of f read as zeros: a hole where the filesystem
// can punch one, written zeros otherwise.
func punch(f *os.File, off, n int64) error {
	err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return fmt.Errorf("punching a hole in %s: %w", f.Name(), err)
	}
	if _, err := f.WriteAt(make([]byte, n), off); err != nil {
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return nil
}
