package extfs

import (
	"encoding/binary"
	"fmt"
)

// JBD2 on-disk constants (all journal fields are big-endian).
const (
	jbdMagic        = 0xC03B3998
	jbdDescriptor   = 1
	jbdCommit       = 2
	jbdSuperblockV1 = 3
	jbdSuperblockV2 = 4
	jbdRevoke       = 5

	jbdIncompatRevoke      = 0x1
	jbdIncompat64bit       = 0x2
	jbdIncompatAsyncCommit = 0x4
	jbdIncompatCsumV2      = 0x8
	jbdIncompatCsumV3      = 0x10
	jbdIncompatFastCommit  = 0x20
	jbdIncompatKnown       = jbdIncompatRevoke | jbdIncompat64bit | jbdIncompatAsyncCommit | jbdIncompatCsumV2 | jbdIncompatCsumV3

	jbdFlagEscape   = 0x1
	jbdFlagSameUUID = 0x2
	jbdFlagLastTag  = 0x8
)

func be32(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }

// RecoveryError explains why a journal that needs recovery was not
// replayed. It wraps ErrNeedsRecovery.
type RecoveryError struct {
	Reason string
}

func (e *RecoveryError) Error() string { return "journal needs recovery: " + e.Reason }
func (e *RecoveryError) Unwrap() error { return ErrNeedsRecovery }

// Hint tells the user how to get a usable filesystem.
func (e *RecoveryError) Hint() string {
	return "replay the journal with e2fsck (e2fsck -fy IMAGE) on a copy of the disk, or mount it once, then retry"
}

// journal is a loaded internal journal.
type journal struct {
	f        *FS
	m        *blockMap
	bs       int
	first    uint32
	maxlen   uint32
	start    uint32
	sequence uint32
	incompat uint32
	tagSize  int
	csum     bool
	sbBlock  []byte
}

// recoverJournal replays the journal into the staged blocks, then reloads
// the superblock and group descriptors, clears needs_recovery and marks
// the journal empty.
func (f *FS) recoverJournal() error {
	sb := f.sb
	if sb.compat&compatHasJournal == 0 {
		return &RecoveryError{Reason: "needs_recovery is set but there is no journal"}
	}
	if sb.journalInum == 0 {
		return &RecoveryError{Reason: "the journal is on an external device"}
	}
	j, err := f.loadJournal()
	if err != nil {
		return err
	}
	if j.start != 0 {
		end, err := j.scan()
		if err != nil {
			return err
		}
		revoked, err := j.revokes(end)
		if err != nil {
			return err
		}
		if err := j.replay(end, revoked); err != nil {
			return err
		}
		// Mark the journal empty, as the kernel does after recovery.
		put32be(j.sbBlock, 0x18, end)
		put32be(j.sbBlock, 0x1C, 0)
		phys, err := j.phys(0)
		if err != nil {
			return err
		}
		f.writeBlock(phys, j.sbBlock)
	}
	// The replay may have rewritten the superblock and descriptors.
	sbBlock := uint64(superOffset / f.bs)
	b, err := f.readBlock(sbBlock)
	if err != nil {
		return err
	}
	nsb, err := parseSuperblock(b[superOffset%f.bs:])
	if err != nil {
		return fmt.Errorf("superblock after journal replay: %w", err)
	}
	if nsb.blockSize() != f.bs || nsb.blocksCount != sb.blocksCount {
		return fmt.Errorf("journal replay changed the filesystem geometry: %w", ErrCorrupt)
	}
	f.sb = nsb
	if err := f.loadGroupDescs(); err != nil {
		return err
	}
	f.sb.incompat &^= incompatRecover
	f.sbDirty = true
	return nil
}

func put32be(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }

func (f *FS) loadJournal() (*journal, error) {
	jin, err := f.readInode(f.sb.journalInum)
	if err != nil {
		return nil, fmt.Errorf("journal inode: %w", err)
	}
	m, err := f.mapInode(jin)
	if err != nil {
		return nil, fmt.Errorf("journal inode: %w", err)
	}
	j := &journal{f: f, m: m, bs: f.bs}
	sbb, err := j.block(0)
	if err != nil {
		return nil, err
	}
	j.sbBlock = sbb
	if be32(sbb, 0) != jbdMagic || (be32(sbb, 4) != jbdSuperblockV1 && be32(sbb, 4) != jbdSuperblockV2) {
		return nil, fmt.Errorf("journal superblock: bad magic or type: %w", ErrCorrupt)
	}
	if int(be32(sbb, 0xC)) != f.bs {
		return nil, &RecoveryError{Reason: fmt.Sprintf("journal block size %d differs from the filesystem's %d", be32(sbb, 0xC), f.bs)}
	}
	j.maxlen, j.first, j.sequence, j.start = be32(sbb, 0x10), be32(sbb, 0x14), be32(sbb, 0x18), be32(sbb, 0x1C)
	if uint64(j.maxlen) > m.dataBlocks() || j.first == 0 || j.first >= j.maxlen || (j.start != 0 && (j.start < j.first || j.start >= j.maxlen)) {
		return nil, fmt.Errorf("journal superblock: bad geometry (first %d, start %d, length %d): %w", j.first, j.start, j.maxlen, ErrCorrupt)
	}
	if be32(sbb, 4) == jbdSuperblockV2 {
		j.incompat = be32(sbb, 0x28)
	}
	if j.incompat&jbdIncompatFastCommit != 0 {
		return nil, &RecoveryError{Reason: "the journal holds fast commits"}
	}
	if bad := j.incompat &^ jbdIncompatKnown; bad != 0 {
		return nil, &RecoveryError{Reason: fmt.Sprintf("unknown journal feature bits %#x", bad)}
	}
	j.csum = j.incompat&(jbdIncompatCsumV2|jbdIncompatCsumV3) != 0
	switch {
	case j.incompat&jbdIncompatCsumV3 != 0:
		j.tagSize = 16
	default:
		j.tagSize = 12
		if j.incompat&jbdIncompatCsumV2 != 0 {
			j.tagSize += 2
		}
		if j.incompat&jbdIncompat64bit == 0 {
			j.tagSize -= 4
		}
	}
	return j, nil
}

// phys maps a journal block to a filesystem block.
func (j *journal) phys(n uint32) (uint64, error) {
	e := j.m.lookup(uint64(n))
	if e == nil || e.uninit {
		return 0, fmt.Errorf("journal block %d is not mapped: %w", n, ErrCorrupt)
	}
	return e.phys + uint64(n) - e.logical, nil
}

func (j *journal) block(n uint32) ([]byte, error) {
	p, err := j.phys(n)
	if err != nil {
		return nil, err
	}
	b, err := j.f.readBlock(p)
	if err != nil {
		return nil, fmt.Errorf("journal block %d: %w", n, err)
	}
	return b, nil
}

func (j *journal) next(n uint32) uint32 {
	n++
	if n >= j.maxlen {
		n = j.first
	}
	return n
}

// tag is one entry of a descriptor block.
type jtag struct {
	block uint64
	flags uint32
}

// tags parses a descriptor block.
func (j *journal) tags(b []byte) ([]jtag, error) {
	end := len(b)
	if j.csum {
		end -= 4
	}
	var out []jtag
	for off := 12; off+j.tagSize <= end; {
		var t jtag
		t.block = uint64(be32(b, off))
		if j.tagSize == 16 {
			t.flags = be32(b, off+4)
			if j.incompat&jbdIncompat64bit != 0 {
				t.block |= uint64(be32(b, off+8)) << 32
			}
		} else {
			t.flags = uint32(binary.BigEndian.Uint16(b[off+6:]))
			if j.incompat&jbdIncompat64bit != 0 {
				t.block |= uint64(be32(b, off+8)) << 32
			}
		}
		out = append(out, t)
		off += j.tagSize
		if t.flags&jbdFlagSameUUID == 0 {
			off += 16
		}
		if t.flags&jbdFlagLastTag != 0 {
			return out, nil
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("journal descriptor block without tags: %w", ErrCorrupt)
	}
	return out, nil
}

// walk visits the journal's blocks from the start, calling fn for each
// header block of transactions before end (0 = scanning, no limit). It
// returns the first transaction not committed.
func (j *journal) walk(end uint32, scanning bool, fn func(pos, seq, typ uint32, b []byte) error) (uint32, error) {
	pos, seq := j.start, j.sequence
	for steps := uint32(0); steps <= j.maxlen; steps++ {
		if !scanning && seq == end {
			return seq, nil
		}
		b, err := j.block(pos)
		if err != nil {
			return 0, err
		}
		if be32(b, 0) != jbdMagic || be32(b, 8) != seq {
			if scanning {
				return seq, nil
			}
			return 0, fmt.Errorf("journal block %d: transaction %d ended early: %w", pos, seq, ErrCorrupt)
		}
		typ := be32(b, 4)
		if fn != nil {
			if err := fn(pos, seq, typ, b); err != nil {
				return 0, err
			}
		}
		switch typ {
		case jbdDescriptor:
			tags, err := j.tags(b)
			if err != nil {
				return 0, fmt.Errorf("journal block %d: %w", pos, err)
			}
			for range tags {
				pos = j.next(pos)
			}
		case jbdCommit:
			seq++
		case jbdRevoke:
		default:
			if scanning {
				return seq, nil
			}
			return 0, fmt.Errorf("journal block %d: unknown block type %d: %w", pos, typ, ErrCorrupt)
		}
		pos = j.next(pos)
	}
	return 0, fmt.Errorf("journal does not end: %w", ErrCorrupt)
}

// scan finds the first transaction without a commit block.
func (j *journal) scan() (uint32, error) { return j.walk(0, true, nil) }

// revokes collects revoked blocks with the latest transaction revoking them.
func (j *journal) revokes(end uint32) (map[uint64]uint32, error) {
	out := map[uint64]uint32{}
	recSize := 4
	if j.incompat&jbdIncompat64bit != 0 {
		recSize = 8
	}
	_, err := j.walk(end, false, func(pos, seq, typ uint32, b []byte) error {
		if typ != jbdRevoke {
			return nil
		}
		count := int(be32(b, 12))
		if count < 16 || count > len(b) {
			return fmt.Errorf("journal block %d: revoke count %d: %w", pos, count, ErrCorrupt)
		}
		for off := 16; off+recSize <= count; off += recSize {
			blk := uint64(be32(b, off))
			if recSize == 8 {
				blk = blk<<32 | uint64(be32(b, off+4))
			}
			if old, ok := out[blk]; !ok || int32(seq-old) > 0 {
				out[blk] = seq
			}
		}
		return nil
	})
	return out, err
}

// replay copies every logged block not revoked later into place.
func (j *journal) replay(end uint32, revoked map[uint64]uint32) error {
	_, err := j.walk(end, false, func(pos, seq, typ uint32, b []byte) error {
		if typ != jbdDescriptor {
			return nil
		}
		tags, err := j.tags(b)
		if err != nil {
			return err
		}
		data := pos
		for _, t := range tags {
			data = j.next(data)
			if rs, ok := revoked[t.block]; ok && int32(rs-seq) >= 0 {
				continue
			}
			if t.block >= j.f.sb.blocksCount {
				return fmt.Errorf("journal block %d logs block %d beyond the filesystem: %w", data, t.block, ErrCorrupt)
			}
			blk, err := j.block(data)
			if err != nil {
				return err
			}
			if t.flags&jbdFlagEscape != 0 {
				put32be(blk, 0, jbdMagic)
			}
			j.f.writeBlock(t.block, blk)
		}
		return nil
	})
	return err
}
