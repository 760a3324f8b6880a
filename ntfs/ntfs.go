// Package ntfs reads NTFS volumes (through www.velocidex.com/golang/go-ntfs)
// and maps a file's data to the volume's byte offsets, so that a file can
// be changed in place, cluster by cluster, without touching NTFS
// metadata. It never writes NTFS structures.
//
//	v, err := ntfs.Open(partition)
//	b, err := v.ReadFile("Windows/System32/config/SYSTEM")
//	f, err := v.File("Windows/System32/config/SYSTEM")
//	err = f.WriteAt(partition, edited, 0) // same size, same clusters
package ntfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"www.velocidex.com/golang/go-ntfs/parser"
)

// Errors callers branch on.
var (
	// ErrNotNTFS: the device holds no NTFS boot sector.
	ErrNotNTFS = errors.New("not an NTFS volume")
	// ErrNotFound: no such file.
	ErrNotFound = errors.New("file not found")
	// ErrNotMappable: the file's data cannot be written in place (it is
	// resident in its MFT record, sparse or compressed).
	ErrNotMappable = errors.New("file data cannot be mapped to clusters")
)

// Device is what a volume is read from: a partition or a whole disk.
type Device interface {
	io.ReaderAt
	Size() int64
}

// Volume is an opened NTFS volume.
type Volume struct {
	dev         Device
	ctx         *parser.NTFSContext
	ClusterSize int64
}

// Open reads dev's NTFS boot sector and MFT.
func Open(dev Device) (v *Volume, err error) {
	defer recoverTo(&err)
	var sig [8]byte
	if _, err := dev.ReadAt(sig[:], 3); err != nil || string(sig[:]) != "NTFS    " {
		return nil, ErrNotNTFS
	}
	// Reads go straight to dev (no cache): the volume is read before it
	// is written, and a cache would hide those writes.
	ctx, err := parser.GetNTFSContext(dev, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotNTFS, err)
	}
	return &Volume{dev: dev, ctx: ctx, ClusterSize: ctx.ClusterSize}, nil
}

// recoverTo turns a panic of the parser on a damaged volume into an error.
func recoverTo(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("reading NTFS: damaged volume (%v)", r)
	}
}

func (v *Volume) entry(path string) (*parser.MFT_ENTRY, error) {
	root, err := v.ctx.GetMFT(5)
	if err != nil {
		return nil, fmt.Errorf("reading the root directory: %w", err)
	}
	p := strings.Trim(strings.ReplaceAll(path, `\`, "/"), "/")
	if p == "" {
		return root, nil
	}
	e, err := root.Open(v.ctx, p)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, ErrNotFound)
	}
	return e, nil
}

// IsDir tells whether path names a directory (case is ignored, as
// Windows does).
func (v *Volume) IsDir(path string) (ok bool) {
	var err error
	defer recoverTo(&err)
	e, err := v.entry(path)
	return err == nil && e.IsDir(v.ctx)
}

// Exists tells whether path names a file or directory.
func (v *Volume) Exists(path string) bool {
	var err error
	defer recoverTo(&err)
	_, err = v.entry(path)
	return err == nil
}

// ReadFile returns the unnamed data stream of a file.
func (v *Volume) ReadFile(path string) (b []byte, err error) {
	defer recoverTo(&err)
	e, err := v.entry(path)
	if err != nil {
		return nil, err
	}
	if e.IsDir(v.ctx) {
		return nil, fmt.Errorf("%s: is a directory", path)
	}
	s, err := parser.OpenStream(v.ctx, e, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, "")
	if err != nil {
		return nil, fmt.Errorf("%s: no data: %w", path, err)
	}
	size := parser.RangeSize(s)
	if vcns := parser.GetAllVCNs(v.ctx, e, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, ""); len(vcns) > 0 && !vcns[0].IsResident() {
		size = int64(vcns[0].DataSize())
	}
	if size < 0 || size > 1<<30 {
		return nil, fmt.Errorf("%s: size %d out of range", path, size)
	}
	b = make([]byte, size)
	n, err := s.ReadAt(b, 0)
	if n != len(b) {
		return nil, fmt.Errorf("reading %s: %d of %d bytes: %v", path, n, len(b), err)
	}
	return b, nil
}

// Extent maps Length bytes of a file at FileOffset to the volume at
// VolumeOffset.
type Extent struct {
	FileOffset, VolumeOffset, Length int64
}

// File is a file's data mapped onto the volume.
type File struct {
	Path string
	// Size is the data size; Allocated the bytes of clusters it has.
	Size, Allocated int64
	Extents         []Extent
}

// File maps a non-resident, uncompressed, non-sparse file's data onto
// the volume, and checks the mapping by reading the data both ways.
func (v *Volume) File(path string) (f *File, err error) {
	defer recoverTo(&err)
	e, err := v.entry(path)
	if err != nil {
		return nil, err
	}
	vcns := parser.GetAllVCNs(v.ctx, e, parser.ATTR_TYPE_DATA, parser.WILDCARD_STREAM_ID, "")
	if len(vcns) == 0 {
		return nil, fmt.Errorf("%s: no data stream: %w", path, ErrNotMappable)
	}
	first := vcns[0]
	if first.IsResident() {
		return nil, fmt.Errorf("%s: data resident in the MFT: %w", path, ErrNotMappable)
	}
	if fl := uint64(*first.Flags()); fl&0xc0ff != 0 {
		return nil, fmt.Errorf("%s: compressed, encrypted or sparse: %w", path, ErrNotMappable)
	}
	f = &File{Path: path, Size: int64(first.DataSize()), Allocated: int64(first.Allocated_size())}
	cs := v.ClusterSize
	for _, a := range vcns {
		vcn := int64(a.Runlist_vcn_start())
		for _, r := range a.RunList() {
			if r.RelativeUrnOffset == 0 && r.Offset == 0 || r.Length <= 0 {
				return nil, fmt.Errorf("%s: sparse run: %w", path, ErrNotMappable)
			}
			f.Extents = append(f.Extents, Extent{FileOffset: vcn * cs, VolumeOffset: r.Offset * cs, Length: r.Length * cs})
			vcn += r.Length
		}
	}
	// Cut the mapping at the data size and check it covers the file.
	var out []Extent
	var covered int64
	for _, x := range f.Extents {
		if x.FileOffset != covered {
			return nil, fmt.Errorf("%s: runs leave a gap at %d: %w", path, covered, ErrNotMappable)
		}
		if x.VolumeOffset < 0 || x.VolumeOffset+x.Length > v.dev.Size() {
			return nil, fmt.Errorf("%s: run at volume offset %d is outside the volume: %w", path, x.VolumeOffset, ErrNotMappable)
		}
		if covered >= f.Size {
			break
		}
		x.Length = min(x.Length, f.Size-covered)
		out = append(out, x)
		covered += x.Length
	}
	if covered != f.Size {
		return nil, fmt.Errorf("%s: runs map %d of %d bytes: %w", path, covered, f.Size, ErrNotMappable)
	}
	f.Extents = out
	want, err := v.ReadFile(path)
	if err != nil {
		return nil, err
	}
	got := make([]byte, f.Size)
	if err := f.read(v.dev, got); err != nil {
		return nil, err
	}
	if !bytes.Equal(got, want) {
		return nil, fmt.Errorf("%s: data read through its runs differs from the file: %w", path, ErrNotMappable)
	}
	return f, nil
}

func (f *File) read(dev io.ReaderAt, b []byte) error {
	for _, x := range f.Extents {
		if _, err := dev.ReadAt(b[x.FileOffset:x.FileOffset+x.Length], x.VolumeOffset); err != nil {
			return fmt.Errorf("reading %s at volume offset %d: %w", f.Path, x.VolumeOffset, err)
		}
	}
	return nil
}

// WriteAt writes b at file offset off into the file's own clusters on
// the volume w (the same device the volume was opened on, or an overlay
// of it). Nothing past the file's data size is written.
func (f *File) WriteAt(w io.WriterAt, b []byte, off int64) error {
	if off < 0 || off+int64(len(b)) > f.Size {
		return fmt.Errorf("writing %s: bytes %d-%d are past its size %d", f.Path, off, off+int64(len(b)), f.Size)
	}
	for _, x := range f.Extents {
		lo, hi := max(off, x.FileOffset), min(off+int64(len(b)), x.FileOffset+x.Length)
		if lo >= hi {
			continue
		}
		if _, err := w.WriteAt(b[lo-off:hi-off], x.VolumeOffset+lo-x.FileOffset); err != nil {
			return fmt.Errorf("writing %s at volume offset %d: %w", f.Path, x.VolumeOffset+lo-x.FileOffset, err)
		}
	}
	return nil
}

// Dirty tells whether the volume's dirty flag is set ($Volume's
// $VOLUME_INFORMATION): Windows did not shut down cleanly and chkdsk is
// due.
func (v *Volume) Dirty() (dirty bool, err error) {
	defer recoverTo(&err)
	e, err := v.ctx.GetMFT(3)
	if err != nil {
		return false, fmt.Errorf("reading $Volume: %w", err)
	}
	for _, a := range e.EnumerateAttributes(v.ctx) {
		if a.Type().Value != 0x70 { // $VOLUME_INFORMATION
			continue
		}
		var b [12]byte
		if _, err := a.Data(v.ctx).ReadAt(b[:], 0); err != nil && !errors.Is(err, io.EOF) {
			return false, fmt.Errorf("reading $VOLUME_INFORMATION: %w", err)
		}
		return b[10]&1 != 0, nil
	}
	return false, errors.New("$Volume has no $VOLUME_INFORMATION")
}

// ReadDir lists the names in a directory (long names; DOS 8.3 aliases
// left out).
func (v *Volume) ReadDir(path string) (names []string, err error) {
	defer recoverTo(&err)
	e, err := v.entry(path)
	if err != nil {
		return nil, err
	}
	if !e.IsDir(v.ctx) {
		return nil, fmt.Errorf("%s: not a directory", path)
	}
	seen := map[string]bool{}
	for _, r := range e.Dir(v.ctx) {
		fn := r.File()
		if fn.NameType().Name == "DOS" {
			continue
		}
		n := fn.Name()
		if n != "" && n != "." && !seen[n] {
			seen[n] = true
			names = append(names, n)
		}
	}
	return names, nil
}

// RealPath returns path with each component spelt as on the volume
// ("windows/SYSTEM32" may be "WINDOWS/system32").
func (v *Volume) RealPath(path string) (string, error) {
	var out []string
	for _, c := range strings.Split(strings.Trim(strings.ReplaceAll(path, `\`, "/"), "/"), "/") {
		if c == "" {
			continue
		}
		names, err := v.ReadDir(strings.Join(out, "/"))
		if err != nil {
			return "", err
		}
		found := ""
		for _, n := range names {
			if strings.EqualFold(n, c) {
				found = n
				break
			}
		}
		if found == "" {
			return "", fmt.Errorf("%s: %w", path, ErrNotFound)
		}
		out = append(out, found)
	}
	return strings.Join(out, "/"), nil
}
