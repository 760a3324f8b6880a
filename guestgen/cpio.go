package guestgen

import (
	"bufio"
	"fmt"
	"io"
	"sort"
)

// cpioEntry is one member of a newc archive.
type cpioEntry struct {
	Name  string // without a leading slash
	Mode  uint32 // file type bits and permissions (S_IFREG|0755 …)
	Data  []byte // file contents, or the target of a symlink
	Major uint32 // device numbers of character and block devices
	Minor uint32
}

const (
	sIFDIR  = 0o040000
	sIFREG  = 0o100000
	sIFLNK  = 0o120000
	sIFCHR  = 0o020000
	sIFBLK  = 0o060000
	cpioEnd = "TRAILER!!!"
)

// writeCpio writes the entries as a newc ("070701") archive, sorted by
// name so that directories precede their contents, with owner root and a
// fixed modification time.
func writeCpio(w io.Writer, entries []cpioEntry, mtime int64) error {
	sorted := append([]cpioEntry(nil), entries...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	bw := bufio.NewWriter(w)
	ino := uint32(300000)
	for _, e := range append(sorted, cpioEntry{Name: cpioEnd}) {
		ino++
		nlink := uint32(1)
		if e.Mode&0o170000 == sIFDIR {
			nlink = 2
		}
		if e.Name == cpioEnd {
			ino, nlink = 0, 1
		}
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.Mode, 0, 0, nlink, uint32(mtime), len(e.Data), 0, 0, e.Major, e.Minor, len(e.Name)+1, 0)
		if _, err := bw.WriteString(hdr); err != nil {
			return err
		}
		bw.WriteString(e.Name)
		bw.WriteByte(0)
		pad(bw, 110+len(e.Name)+1)
		bw.Write(e.Data)
		pad(bw, len(e.Data))
	}
	return bw.Flush()
}

func pad(w *bufio.Writer, n int) {
	for ; n%4 != 0; n++ {
		w.WriteByte(0)
	}
}
