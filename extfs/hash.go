package extfs

import "math/bits"

// Directory hash versions (dx_root_info.hash_version; the unsigned
// variants are chosen by the superblock's unsigned-hash flag).
const (
	hashLegacy          = 0
	hashHalfMD4         = 1
	hashTea             = 2
	hashLegacyUnsigned  = 3
	hashHalfMD4Unsigned = 4
	hashTeaUnsigned     = 5
)

// dirHash computes the htree hash of name (major hash, low bit clear).
func dirHash(name []byte, version uint8, seed [4]uint32) (uint32, bool) {
	buf := [4]uint32{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476}
	if seed != [4]uint32{} {
		buf = seed
	}
	var hash uint32
	switch version {
	case hashLegacy, hashLegacyUnsigned:
		hash = legacyHash(name, version == hashLegacyUnsigned)
	case hashHalfMD4, hashHalfMD4Unsigned:
		var in [8]uint32
		for p := name; ; p = p[32:] {
			str2hashbuf(p, in[:], version == hashHalfMD4Unsigned)
			halfMD4(&buf, &in)
			if len(p) <= 32 {
				break
			}
		}
		hash = buf[1]
	case hashTea, hashTeaUnsigned:
		var in [8]uint32
		for p := name; ; p = p[16:] {
			str2hashbuf(p, in[:4], version == hashTeaUnsigned)
			tea(&buf, in[:4])
			if len(p) <= 16 {
				break
			}
		}
		hash = buf[0]
	default:
		return 0, false
	}
	hash &^= 1
	if hash == 0x7fffffff<<1 {
		hash = (0x7fffffff - 1) << 1
	}
	return hash, true
}

func legacyHash(name []byte, unsigned bool) uint32 {
	h0, h1 := uint32(0x12a3fe2d), uint32(0x37abe8f9)
	for _, c := range name {
		v := int32(int8(c))
		if unsigned {
			v = int32(c)
		}
		h := h1 + (h0 ^ uint32(v*7152373))
		if h&0x80000000 != 0 {
			h -= 0x7fffffff
		}
		h1, h0 = h0, h
	}
	return h0 << 1
}

// str2hashbuf packs up to 4*len(out) bytes of msg into out, padded with
// the message length, as the kernel's str2hashbuf does.
func str2hashbuf(msg []byte, out []uint32, unsigned bool) {
	n := len(msg)
	pad := uint32(n) | uint32(n)<<8
	pad |= pad << 16
	val := pad
	num := len(out)
	if n > num*4 {
		n = num * 4
	}
	o := 0
	for i := range n {
		c := uint32(int32(int8(msg[i])))
		if unsigned {
			c = uint32(msg[i])
		}
		val = c + val<<8
		if i%4 == 3 {
			out[o] = val
			o++
			val = pad
			num--
		}
	}
	num--
	if num >= 0 {
		out[o] = val
		o++
	}
	for num--; num >= 0; num-- {
		out[o] = pad
		o++
	}
}

func halfMD4(buf *[4]uint32, in *[8]uint32) {
	a, b, c, d := buf[0], buf[1], buf[2], buf[3]
	f := func(x, y, z uint32) uint32 { return z ^ (x & (y ^ z)) }
	g := func(x, y, z uint32) uint32 { return (x & y) + ((x ^ y) & z) }
	h := func(x, y, z uint32) uint32 { return x ^ y ^ z }
	const k2, k3 = 0x5A827999, 0x6ED9EBA1
	round := func(fn func(x, y, z uint32) uint32, a *uint32, b, c, d, x uint32, s int) {
		*a = bits.RotateLeft32(*a+fn(b, c, d)+x, s)
	}
	round(f, &a, b, c, d, in[0], 3)
	round(f, &d, a, b, c, in[1], 7)
	round(f, &c, d, a, b, in[2], 11)
	round(f, &b, c, d, a, in[3], 19)
	round(f, &a, b, c, d, in[4], 3)
	round(f, &d, a, b, c, in[5], 7)
	round(f, &c, d, a, b, in[6], 11)
	round(f, &b, c, d, a, in[7], 19)

	round(g, &a, b, c, d, in[1]+k2, 3)
	round(g, &d, a, b, c, in[3]+k2, 5)
	round(g, &c, d, a, b, in[5]+k2, 9)
	round(g, &b, c, d, a, in[7]+k2, 13)
	round(g, &a, b, c, d, in[0]+k2, 3)
	round(g, &d, a, b, c, in[2]+k2, 5)
	round(g, &c, d, a, b, in[4]+k2, 9)
	round(g, &b, c, d, a, in[6]+k2, 13)

	round(h, &a, b, c, d, in[3]+k3, 3)
	round(h, &d, a, b, c, in[7]+k3, 9)
	round(h, &c, d, a, b, in[2]+k3, 11)
	round(h, &b, c, d, a, in[6]+k3, 15)
	round(h, &a, b, c, d, in[1]+k3, 3)
	round(h, &d, a, b, c, in[5]+k3, 9)
	round(h, &c, d, a, b, in[0]+k3, 11)
	round(h, &b, c, d, a, in[4]+k3, 15)

	buf[0] += a
	buf[1] += b
	buf[2] += c
	buf[3] += d
}

func tea(buf *[4]uint32, in []uint32) {
	const delta = 0x9E3779B9
	var sum uint32
	b0, b1 := buf[0], buf[1]
	a, b, c, d := in[0], in[1], in[2], in[3]
	for range 16 {
		sum += delta
		b0 += ((b1 << 4) + a) ^ (b1 + sum) ^ ((b1 >> 5) + b)
		b1 += ((b0 << 4) + c) ^ (b0 + sum) ^ ((b0 >> 5) + d)
	}
	buf[0] += b0
	buf[1] += b1
}

// hashVersion returns the hash function of a directory index, applying the
// superblock's unsigned flag.
func (f *FS) hashVersion(rootVersion uint8) uint8 {
	if rootVersion <= hashTea && f.sb.flags&sbFlagUnsignedHash != 0 {
		return rootVersion + 3
	}
	return rootVersion
}
