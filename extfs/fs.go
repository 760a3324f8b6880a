package extfs

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/xen2kvm/xen2kvm/diskimg"
)

// Sentinel errors. Errors from Open and from reading corrupt structures wrap
// one of these; path errors are *fs.PathError.
var (
	// ErrNotExt means the device holds no ext2/3/4 superblock.
	ErrNotExt = errors.New("not an ext2/ext3/ext4 filesystem")
	// ErrCorrupt means an on-disk structure is inconsistent.
	ErrCorrupt = errors.New("filesystem structure is corrupt")
	// ErrUnsupported means the filesystem uses a feature this package
	// cannot read, or cannot write when opened for writing.
	ErrUnsupported = errors.New("unsupported filesystem feature")
	// ErrNeedsRecovery means the journal needs recovery and cannot be
	// replayed here.
	ErrNeedsRecovery = errors.New("journal needs recovery")
)

// FeatureError reports filesystem features this package cannot handle. It
// wraps ErrUnsupported.
type FeatureError struct {
	Features []string
	Write    bool // true when the features only block writing
}

func (e *FeatureError) Error() string {
	if e.Write {
		return fmt.Sprintf("cannot write a filesystem with feature(s) %s", strings.Join(e.Features, ", "))
	}
	return fmt.Sprintf("cannot read a filesystem with feature(s) %s", strings.Join(e.Features, ", "))
}

func (e *FeatureError) Unwrap() error { return ErrUnsupported }

// Hint tells the user what to do instead.
func (e *FeatureError) Hint() string {
	if e.Write {
		return "open the filesystem read-only (extfs.ReadOnly) or disable the feature with tune2fs on a copy"
	}
	return "convert the filesystem with tune2fs/e2fsck on a copy first"
}

// Option configures Open.
type Option func(*options)

type options struct {
	readOnly bool
	now      func() time.Time
}

// ReadOnly opens the filesystem without ever writing the device. A journal
// that needs recovery is replayed in memory only.
func ReadOnly() Option { return func(o *options) { o.readOnly = true } }

// WithClock sets the clock used for inode timestamps (default time.Now).
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// FS is an open ext2/ext3/ext4 filesystem. It is safe for concurrent use.
type FS struct {
	mu       sync.Mutex
	dev      diskimg.Device
	readOnly bool
	now      func() time.Time

	sb      *superblock
	bs      int
	ngroups uint32
	gd      []byte // all group descriptors, descSize each

	// Staged changes: blocks written by the current operation (or, when
	// read-only, by journal replay). Reads see them first.
	dirty   map[uint64][]byte
	gdDirty bool
	sbDirty bool

	// xattrBlocks are the attribute blocks this FS wrote, by hash, so
	// that identical attribute sets share one block.
	xattrBlocks map[uint32][]uint64

	// maxIndexLevels is how deep an htree may grow (2: root and one level
	// of nodes). Tests lower it to exercise dropping the index.
	maxIndexLevels int
}

// Open reads the filesystem on dev. Without ReadOnly, filesystems with
// features this package cannot write are refused here, before anything is
// written, and a journal that needs recovery is replayed into dev.
func Open(dev diskimg.Device, opts ...Option) (*FS, error) {
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	buf := make([]byte, superSize)
	if _, err := dev.ReadAt(buf, superOffset); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading superblock: %w", err)
	}
	sb, err := parseSuperblock(buf)
	if err != nil {
		return nil, err
	}
	if sb.blocksCount*uint64(sb.blockSize()) > uint64(dev.Size()) {
		return nil, fmt.Errorf("filesystem of %d blocks of %d bytes is larger than the %d-byte device: %w",
			sb.blocksCount, sb.blockSize(), dev.Size(), ErrCorrupt)
	}
	if bad := sb.incompat &^ readIncompat; bad != 0 {
		return nil, &FeatureError{Features: featureNames(bad, incompatNames)}
	}
	if bad := sb.roCompat &^ readRoCompat; bad != 0 {
		return nil, &FeatureError{Features: featureNames(bad, roCompatNames)}
	}
	if !o.readOnly {
		bad := featureNames(sb.incompat&^writeIncompat, incompatNames)
		bad = append(bad, featureNames(sb.roCompat&^writeRoCompat, roCompatNames)...)
		if len(bad) > 0 {
			return nil, &FeatureError{Features: bad, Write: true}
		}
	}
	f := &FS{
		dev:      dev,
		readOnly: o.readOnly,
		now:      o.now,
		sb:       sb,
		bs:       sb.blockSize(),
		ngroups:  sb.groupCount(),
		dirty:    map[uint64][]byte{},

		maxIndexLevels: 2,
	}
	if err := f.loadGroupDescs(); err != nil {
		return nil, err
	}
	if sb.incompat&incompatRecover != 0 {
		if err := f.recoverJournal(); err != nil {
			return nil, err
		}
		if !f.readOnly {
			if err := f.commit(); err != nil {
				return nil, fmt.Errorf("writing recovered journal blocks: %w", err)
			}
		}
	}
	if !f.readOnly && f.sb.compat&compatOrphanFile != 0 {
		// Kernels with orphan_file keep orphans in a file this package
		// does not process; refuse rather than leave them behind.
		if f.sb.roCompat&roCompatOrphanPresent != 0 {
			return nil, &RecoveryError{Reason: "orphan file entries are pending"}
		}
	}
	if !f.readOnly && le32(f.sb.raw[:], 0xE8) != 0 {
		if err := f.processOrphans(); err != nil {
			f.rollback()
			return nil, err
		}
		if err := f.commit(); err != nil {
			return nil, fmt.Errorf("writing orphan cleanup: %w", err)
		}
	}
	return f, nil
}

func (f *FS) loadGroupDescs() error {
	sb := f.sb
	ds := int(sb.descSize)
	dpb := sb.descPerBlock()
	nblocks := (f.ngroups + dpb - 1) / dpb
	f.gd = make([]byte, 0, int(nblocks)*f.bs)
	for i := range nblocks {
		b, err := f.readBlock(sb.descBlock(i))
		if err != nil {
			return fmt.Errorf("reading group descriptors: %w", err)
		}
		f.gd = append(f.gd, b...)
	}
	f.gd = f.gd[:int(f.ngroups)*ds]
	var errs []error
	for g := range f.ngroups {
		d := f.desc(g)
		first, last := uint64(sb.firstDataBlock), sb.blocksCount
		itBlocks := (uint64(sb.inodesPerGroup)*uint64(sb.inodeSize) + uint64(f.bs) - 1) / uint64(f.bs)
		if d.blockBitmap() < first || d.blockBitmap() >= last ||
			d.inodeBitmap() < first || d.inodeBitmap() >= last ||
			d.inodeTable() < first || d.inodeTable()+itBlocks > last {
			errs = append(errs, fmt.Errorf("group %d: bitmap or inode table outside the filesystem", g))
		}
		if len(errs) > 8 {
			break
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("group descriptors: %w: %w", ErrCorrupt, err)
	}
	return nil
}

func (f *FS) desc(g uint32) groupDesc {
	ds := int(f.sb.descSize)
	return groupDesc(f.gd[int(g)*ds : int(g+1)*ds])
}

// Label returns the volume label.
func (f *FS) Label() string { return f.sb.volumeName }

// HasErrors tells whether the superblock records that the kernel found
// errors in the filesystem (s_state's error bit, or a nonzero
// s_error_count): e2fsck has not repaired it since.
func (f *FS) HasErrors() bool {
	const stateErrors = 0x2
	return le16(f.sb.raw[:], 0x3A)&stateErrors != 0 || le32(f.sb.raw[:], 0x194) != 0
}

// UUID returns the filesystem UUID in the usual 8-4-4-4-12 form.
func (f *FS) UUID() string {
	u := f.sb.uuid
	return fmt.Sprintf("%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Type returns "ext2", "ext3" or "ext4", as blkid would name it.
func (f *FS) Type() string {
	sb := f.sb
	ext4Incompat := uint32(incompatExtents | incompat64bit | incompatFlexBG | incompatMMP |
		incompatEAInode | incompatDirData | incompatCsumSeed | incompatLargeDir | incompatInlineData |
		incompatEncrypt | incompatCasefold | incompatMetaBG)
	ext4RoCompat := uint32(roCompatHugeFile | roCompatGdtCsum | roCompatDirNlink | roCompatExtraIsize |
		roCompatQuota | roCompatBigalloc | roCompatMetadataCsum | roCompatProject | roCompatVerity)
	switch {
	case sb.incompat&ext4Incompat != 0 || sb.roCompat&ext4RoCompat != 0:
		return "ext4"
	case sb.compat&compatHasJournal != 0:
		return "ext3"
	}
	return "ext2"
}

// BlockSize returns the filesystem block size in bytes.
func (f *FS) BlockSize() int { return f.bs }

// Sync is a no-op kept for symmetry: every write method stages its changes
// and writes them to the device before it returns.
func (f *FS) Sync() error { return nil }

// Close releases the filesystem. The device is not closed.
func (f *FS) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dirty = nil
	return nil
}

// readBlock returns a copy of block n (staged content first).
func (f *FS) readBlock(n uint64) ([]byte, error) {
	if n >= f.sb.blocksCount {
		return nil, fmt.Errorf("block %d beyond the end of the filesystem (%d blocks): %w", n, f.sb.blocksCount, ErrCorrupt)
	}
	b := make([]byte, f.bs)
	if d, ok := f.dirty[n]; ok {
		copy(b, d)
		return b, nil
	}
	if _, err := f.dev.ReadAt(b, int64(n)*int64(f.bs)); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("reading block %d: %w", n, err)
	}
	return b, nil
}

// readBlocks reads count consecutive blocks into p (staged blocks honoured).
func (f *FS) readBlocks(p []byte, start uint64) error {
	count := uint64(len(p) / f.bs)
	if start+count > f.sb.blocksCount || start+count < start {
		return fmt.Errorf("blocks %d+%d beyond the end of the filesystem: %w", start, count, ErrCorrupt)
	}
	if _, err := f.dev.ReadAt(p, int64(start)*int64(f.bs)); err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("reading blocks %d+%d: %w", start, count, err)
	}
	if len(f.dirty) > 0 {
		for i := range count {
			if d, ok := f.dirty[start+i]; ok {
				copy(p[int(i)*f.bs:], d)
			}
		}
	}
	return nil
}

// writeBlock stages block n.
func (f *FS) writeBlock(n uint64, b []byte) {
	c := make([]byte, f.bs)
	copy(c, b)
	f.dirty[n] = c
}

// commit writes staged blocks, group descriptors and the superblock.
func (f *FS) commit() error {
	if f.readOnly {
		return nil
	}
	keys := make([]uint64, 0, len(f.dirty))
	for k := range f.dirty {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	// Coalesce runs to keep the number of WriteAt calls low.
	for i := 0; i < len(keys); {
		j := i + 1
		for j < len(keys) && keys[j] == keys[j-1]+1 && j-i < 256 {
			j++
		}
		buf := make([]byte, 0, (j-i)*f.bs)
		for _, k := range keys[i:j] {
			buf = append(buf, f.dirty[k]...)
		}
		if _, err := f.dev.WriteAt(buf, int64(keys[i])*int64(f.bs)); err != nil {
			return fmt.Errorf("writing block %d: %w", keys[i], err)
		}
		i = j
	}
	f.dirty = map[uint64][]byte{}
	if f.gdDirty {
		f.updateChecksums()
		sb := f.sb
		dpb := sb.descPerBlock()
		per := int(dpb) * int(sb.descSize)
		for i := uint32(0); int(i)*per < len(f.gd); i++ {
			blk := make([]byte, f.bs)
			copy(blk, f.gd[int(i)*per:])
			// Keep whatever follows the last descriptor in its block.
			if end := len(f.gd) - int(i)*per; end < per {
				old := make([]byte, f.bs)
				if _, err := f.dev.ReadAt(old, int64(sb.descBlock(i))*int64(f.bs)); err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("reading group descriptors: %w", err)
				}
				copy(blk[end:], old[end:])
			}
			if _, err := f.dev.WriteAt(blk, int64(sb.descBlock(i))*int64(f.bs)); err != nil {
				return fmt.Errorf("writing group descriptors: %w", err)
			}
		}
		f.gdDirty = false
	}
	if f.sbDirty {
		put32(f.sb.raw[:], 0x30, uint32(f.now().Unix())) // s_wtime
		if _, err := f.dev.WriteAt(f.sb.serialize(), superOffset); err != nil {
			return fmt.Errorf("writing superblock: %w", err)
		}
		f.sbDirty = false
	}
	return nil
}

// rollback drops staged changes and reloads the counters from the device.
func (f *FS) rollback() {
	f.dirty = map[uint64][]byte{}
	f.xattrBlocks = nil
	buf := make([]byte, superSize)
	if _, err := f.dev.ReadAt(buf, superOffset); err == nil || errors.Is(err, io.EOF) {
		if sb, err := parseSuperblock(buf); err == nil {
			f.sb = sb
		}
	}
	_ = f.loadGroupDescs()
	f.gdDirty, f.sbDirty = false, false
}

// inodeLoc returns the block and byte offset of inode n.
func (f *FS) inodeLoc(n uint32) (uint64, int, error) {
	if n == 0 || n > f.sb.inodesCount {
		return 0, 0, fmt.Errorf("inode %d out of range: %w", n, ErrCorrupt)
	}
	g := (n - 1) / f.sb.inodesPerGroup
	idx := uint64((n - 1) % f.sb.inodesPerGroup)
	byteOff := idx * uint64(f.sb.inodeSize)
	blk := f.desc(g).inodeTable() + byteOff/uint64(f.bs)
	return blk, int(byteOff % uint64(f.bs)), nil
}

func (f *FS) readInode(n uint32) (*inode, error) {
	blk, off, err := f.inodeLoc(n)
	if err != nil {
		return nil, err
	}
	b, err := f.readBlock(blk)
	if err != nil {
		return nil, fmt.Errorf("reading inode %d: %w", n, err)
	}
	raw := make([]byte, f.sb.inodeSize)
	copy(raw, b[off:])
	return &inode{num: n, raw: raw}, nil
}

func (f *FS) writeInode(in *inode) error {
	blk, off, err := f.inodeLoc(in.num)
	if err != nil {
		return err
	}
	b, err := f.readBlock(blk)
	if err != nil {
		return fmt.Errorf("writing inode %d: %w", in.num, err)
	}
	copy(b[off:], in.raw)
	f.writeBlock(blk, b)
	return nil
}
