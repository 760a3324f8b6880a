package hive

import "unicode/utf16"

// New returns an empty hive: a base block and one hive bin holding a root
// key named rootName (ASCII), its security descriptor cell and free
// space. Tools such as hivexregedit can then merge keys into it.
func New(rootName string) []byte {
	b := make([]byte, baseSize+4096)
	copy(b, "regf")
	le.PutUint32(b[4:], 1)
	le.PutUint32(b[8:], 1)
	le.PutUint32(b[0x14:], 1) // major version
	le.PutUint32(b[0x18:], 3) // minor version (NT 4 to 2003)
	le.PutUint32(b[0x20:], 1) // flat file
	le.PutUint32(b[0x24:], 0x20)
	le.PutUint32(b[0x28:], 4096)
	le.PutUint32(b[0x2c:], 1)
	for i, c := range utf16.Encode([]rune(rootName)) {
		if 0x30+2*i+2 > 0x70 {
			break
		}
		le.PutUint16(b[0x30+2*i:], c)
	}

	bin := b[baseSize:]
	copy(bin, "hbin")
	le.PutUint32(bin[8:], 4096)

	// Root key at 0x20.
	name := []byte(rootName)
	nkSize := align8(4 + 0x4c + len(name))
	const skOff = 0x20 + 0x100 // room for a root name of up to 180 bytes
	if nkSize > 0x100 {
		name = name[:0x100-4-0x4c]
		nkSize = 0x100
	}
	nk := bin[0x20:]
	le.PutUint32(nk, uint32(-int32(nkSize)))
	c := nk[4:]
	copy(c, "nk")
	le.PutUint16(c[2:], 0x2c)             // hive entry, no delete, ASCII name
	le.PutUint32(c[0x10:], 0xffffffff)    // no parent
	le.PutUint32(c[0x1c:], 0xffffffff)    // no subkey list
	le.PutUint32(c[0x20:], 0xffffffff)    // no volatile subkey list
	le.PutUint32(c[0x28:], 0xffffffff)    // no value list
	le.PutUint32(c[0x2c:], uint32(skOff)) // security
	le.PutUint32(c[0x30:], 0xffffffff)    // no class name
	le.PutUint16(c[0x48:], uint16(len(name)))
	copy(c[0x4c:], name)
	if nkSize < 0x100 { // the gap up to the sk cell is a free cell
		le.PutUint32(bin[0x20+nkSize:], uint32(0x100-nkSize))
	}

	// Security: a self-relative descriptor with no owner, group or ACLs.
	sd := []byte{1, 0, 0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	skSize := align8(4 + 0x14 + len(sd))
	sk := bin[skOff:]
	le.PutUint32(sk, uint32(-int32(skSize)))
	s := sk[4:]
	copy(s, "sk")
	le.PutUint32(s[4:], skOff) // flink and blink: the only sk cell
	le.PutUint32(s[8:], skOff)
	le.PutUint32(s[0x0c:], 1) // references
	le.PutUint32(s[0x10:], uint32(len(sd)))
	copy(s[0x14:], sd)

	free := skOff + skSize
	le.PutUint32(bin[free:], uint32(4096-free))
	le.PutUint32(b[0x1fc:], checksum(b))
	return b
}

func align8(n int) int { return (n + 7) &^ 7 }
