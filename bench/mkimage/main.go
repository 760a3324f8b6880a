// Command mkimage writes the benchmark's source disk (see package
// bench/benchimg): a sparse raw image with data scattered over it, a
// quarter of it zeros written to disk (allocated, but zero), the rest
// random.
//
//	go run ./bench/mkimage -o src.raw -size 8G -data 2G
//
// It prints the number of allocated bytes and how many of them are zeros.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/xen2kvm/xen2kvm/bench/benchimg"
)

func main() {
	out := flag.String("o", "src.raw", "output file")
	sizeS := flag.String("size", "8G", "virtual size (suffix M or G)")
	dataS := flag.String("data", "2G", "bytes of data to scatter over it")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	size, err := benchimg.ParseSize(*sizeS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage: -size:", err)
		os.Exit(2)
	}
	data, err := benchimg.ParseSize(*dataS)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage: -data:", err)
		os.Exit(2)
	}
	allocated, zeros, err := benchimg.Write(*out, size, data, *seed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
	fmt.Printf("%d %d\n", allocated, zeros)
}
