// Command mkimage writes the benchmark's source disk: a sparse raw image
// with data scattered over it, a quarter of it zeros written to disk
// (allocated, but zero), the rest random.
//
//	go run ./bench/mkimage -o src.raw -size 8G -data 2G
//
// It prints the number of allocated bytes.
package main

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(s, "G"):
		mult, s = 1<<30, strings.TrimSuffix(s, "G")
	case strings.HasSuffix(s, "M"):
		mult, s = 1<<20, strings.TrimSuffix(s, "M")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n * mult, err
}

func main() {
	out := flag.String("o", "src.raw", "output file")
	sizeS := flag.String("size", "8G", "virtual size (suffix M or G)")
	dataS := flag.String("data", "2G", "bytes of data to scatter over it")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	size, err := parseSize(*sizeS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage: -size:", err)
		os.Exit(2)
	}
	data, err := parseSize(*dataS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage: -data:", err)
		os.Exit(2)
	}
	if err := write(*out, size, data, *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// write splits the disk into 4 MiB slots, puts a piece of 1 to 3 MiB
// (4 KiB aligned) into randomly chosen slots until about data bytes are
// written; every fourth piece is zeros.
func write(path string, size, data int64, seed uint64) error {
	const slot = 4 << 20
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(seed, 2))
	slots := rng.Perm(int(size / slot))
	buf := make([]byte, 3<<20)
	var written, zeros int64
	for i, s := range slots {
		if written >= data {
			break
		}
		n := (1<<20 + rng.Int64N(2<<20)) &^ 4095
		n = min(n, data-written)
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
			return err
		}
		written += n
	}
	if err := f.Sync(); err != nil {
		return err
	}
	fmt.Printf("%d %d\n", written, zeros)
	return nil
}
