// Package benchimg writes the disk copy benchmark's source image: a sparse
// raw file with data scattered over it, a quarter of it zeros written to
// disk (allocated, but zero), the rest random. bench/mkimage and the Go
// benchmark in diskimg both use it, so they measure the same workload.
//
//	allocated, zeros, err := benchimg.Write("src.raw", 8<<30, 2<<30, 1)
package benchimg

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// ParseSize reads a byte count with an optional M or G suffix (MiB, GiB).
func ParseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes, optionally with M or G", s)
	}
	return n * mult, nil
}

// Write creates the image at path: size virtual bytes split into 4 MiB
// slots, a piece of 1 to 3 MiB (4 KiB aligned) at a random place in
// randomly chosen slots until about data bytes are written, every fourth
// piece zeros. The same seed gives the same image. It returns the bytes
// written (allocated) and how many of them are zeros.
func Write(path string, size, data int64, seed uint64) (allocated, zeros int64, err error) {
	const slot = 4 << 20
	if size < slot {
		return 0, 0, fmt.Errorf("benchmark image size %d: need at least %d", size, slot)
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	if err := f.Truncate(size); err != nil {
		return 0, 0, err
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	slots := rng.Perm(int(size / slot))
	buf := make([]byte, 3<<20)
	for i, s := range slots {
		if allocated >= data {
			break
		}
		n := (1<<20 + rng.Int64N(2<<20)) &^ 4095
		n = min(n, data-allocated)
		off := int64(s)*slot + rng.Int64N(slot-n+1)&^4095
		b := buf[:n]
		if i%4 == 3 {
			clear(b)
			zeros += n
		} else {
			for j := 0; j+8 <= len(b); j += 8 {
				v := rng.Uint64()
				for k := range 8 {
					b[j+k] = byte(v >> (8 * k))
				}
			}
		}
		if _, err := f.WriteAt(b, off); err != nil {
			return allocated, zeros, err
		}
		allocated += n
	}
	return allocated, zeros, f.Sync()
}
