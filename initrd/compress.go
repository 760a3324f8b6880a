package initrd

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// magics tell the compression of an initrd segment by its first bytes,
// as the kernel's decompressors recognise them.
var magics = []struct {
	magic []byte
	c     Compression
}{
	{[]byte{0x1f, 0x8b}, Gzip},
	{[]byte{0x28, 0xb5, 0x2f, 0xfd}, Zstd},
	{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, XZ},
	{[]byte("BZh"), Bzip2},
	{[]byte{0x5d, 0x00, 0x00}, LZMA},
}

// decompress returns the uncompressed content of b, a compressed stream
// (or several of one kind, one after the other) with optional NUL
// padding at its end.
func decompress(b []byte) (Compression, []byte, error) {
	var c Compression
	for _, m := range magics {
		if bytes.HasPrefix(b, m.magic) {
			c = m.c
			break
		}
	}
	if c == "" {
		n := min(len(b), 8)
		if bytes.HasPrefix(b, []byte{0x02, 0x21, 0x4c, 0x18}) {
			return "", nil, fmt.Errorf("%w: lz4-compressed initrds are not supported (recompress it with gzip, zstd or xz)", ErrFormat)
		}
		return "", nil, fmt.Errorf("%w: neither a newc archive nor gzip, zstd, xz, lzma or bzip2 data (starts % x)", ErrFormat, b[:n])
	}
	if err := checkDict(c, b); err != nil {
		return c, nil, fmt.Errorf("%w: %s: %w", ErrFormat, c, err)
	}
	raw, err := decode(c, b)
	if err != nil && c != Gzip {
		// The padding after the stream: the decoders know only their
		// own format's (gzip's members are read one by one instead).
		// The stream's own last bytes may be zeros too: give back as
		// many as it takes.
		t := bytes.TrimRight(b, "\x00")
		for k := 0; k <= 16 && len(t)+k < len(b); k++ {
			if r2, err2 := decode(c, b[:len(t)+k]); err2 == nil {
				raw, err = r2, nil
				break
			}
		}
	}
	if err != nil {
		return c, nil, fmt.Errorf("%w: %s: %w", ErrFormat, c, err)
	}
	return c, raw, nil
}

func decode(c Compression, b []byte) ([]byte, error) {
	var out bytes.Buffer
	limit := func(r io.Reader) error {
		_, err := io.Copy(&out, io.LimitReader(r, maxSize+1-int64(out.Len())))
		if err == nil && out.Len() > maxSize {
			return fmt.Errorf("more than %d bytes uncompressed", maxSize)
		}
		return err
	}
	br := bytes.NewReader(b)
	switch c {
	case Gzip:
		// One member at a time, as the kernel reads them, with the NUL
		// padding between and after them skipped.
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, err
		}
		for {
			zr.Multistream(false)
			if err := limit(zr); err != nil {
				return nil, err
			}
			for br.Len() > 0 {
				if c, _ := br.ReadByte(); c != 0 {
					br.UnreadByte()
					break
				}
			}
			if br.Len() == 0 {
				return out.Bytes(), nil
			}
			if err := zr.Reset(br); err != nil {
				return nil, err
			}
		}
	case Zstd:
		d, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(maxSize))
		if err != nil {
			return nil, err
		}
		defer d.Close()
		err = limit(d)
		return out.Bytes(), err
	case XZ:
		r, err := xz.NewReader(br)
		if err != nil {
			return nil, err
		}
		err = limit(r)
		return out.Bytes(), err
	case LZMA:
		r, err := lzma.NewReader(br)
		if err != nil {
			return nil, err
		}
		err = limit(r)
		return out.Bytes(), err
	case Bzip2:
		err := limit(bzip2.NewReader(br))
		return out.Bytes(), err
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

// compress appends raw to out, compressed with c in a form the kernel
// unpacks (xz with CRC32 checks: the kernel's xz knows no CRC64).
func compress(out *bytes.Buffer, c Compression, raw []byte) error {
	var w io.WriteCloser
	var err error
	switch c {
	case None:
		out.Write(raw)
		return nil
	case Gzip:
		w, err = gzip.NewWriterLevel(out, gzip.BestCompression)
	case Zstd:
		w, err = zstd.NewWriter(out, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1))
	case XZ:
		w, err = xz.WriterConfig{CheckSum: xz.CRC32}.NewWriter(out)
	case LZMA:
		w, err = lzma.WriterConfig{Size: int64(len(raw)), EOSMarker: false}.NewWriter(out)
	default:
		return fmt.Errorf("%w: cannot write a %s initrd", ErrUnsupported, c)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	if _, err := w.Write(raw); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

// maxDict bounds the dictionary an lzma or xz initrd may ask the decoder
// to allocate (lzma -9 and xz -9 use 64 MiB; the header can ask for 4 GiB).
const maxDict = 64 << 20

// checkDict refuses an lzma header, or the first xz block's LZMA2
// filter, whose dictionary is larger than maxDict.
func checkDict(c Compression, b []byte) error {
	switch c {
	case LZMA:
		if len(b) < 13 {
			return fmt.Errorf("truncated header")
		}
		if d := binary.LittleEndian.Uint32(b[1:5]); d > maxDict {
			return fmt.Errorf("dictionary of %d bytes, more than %d", d, maxDict)
		}
	case XZ:
		// Stream header (12 bytes), then the first block header: its size,
		// flags (filter count, which sizes follow), the sizes as varints,
		// then each filter's ID, property size and properties.
		p := 12
		if len(b) < p+2 || b[p] == 0 {
			return nil // no block: nothing to allocate
		}
		end := min(p+(int(b[p])+1)*4, len(b))
		flags := b[p+1]
		q := p + 2
		varint := func() uint64 {
			var v uint64
			for i := 0; q < end && i < 9; i++ {
				x := b[q]
				q++
				v |= uint64(x&0x7f) << (7 * i)
				if x&0x80 == 0 {
					break
				}
			}
			return v
		}
		if flags&0x40 != 0 {
			varint()
		}
		if flags&0x80 != 0 {
			varint()
		}
		for f := 0; f <= int(flags&3) && q < end; f++ {
			id, n := varint(), varint()
			if id == 0x21 && n == 1 && q < end {
				code := b[q]
				if code > 40 {
					return fmt.Errorf("LZMA2 dictionary code %d", code)
				}
				if d := uint64(2|code&1) << (code/2 + 11); d > maxDict {
					return fmt.Errorf("dictionary of %d bytes, more than %d", d, maxDict)
				}
			}
			q += int(n)
		}
	}
	return nil
}
