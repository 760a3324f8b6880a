// Command mkguest builds xen2kvm's example Xen guests: sparse raw disk
// images plus their /etc/xen configs, cached after the first build.
//
//	go run ./guestgen/cmd/mkguest -o DIR [PRESET...]
//
// With no preset it builds centos5. Each guest lands in DIR/NAME, its
// config in DIR/NAME/etc/xen/NAME naming the images as
// /var/lib/xen/images/FILE (map them with --disk-map
// /var/lib/xen/images=DIR/NAME/images). -list prints the presets.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"

	"github.com/xen2kvm/xen2kvm/guestgen"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "mkguest: error: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fl := flag.NewFlagSet("mkguest", flag.ContinueOnError)
	out := fl.String("o", "", "output `folder` (required)")
	list := fl.Bool("list", false, "list the presets and exit")
	asJSON := fl.Bool("json", false, "print the built guests as JSON")
	fl.Usage = func() {
		fmt.Fprintf(fl.Output(), "usage: mkguest -o DIR [PRESET...]\npresets: %s\n",
			strings.Join(guestgen.PresetNames(), ", "))
		fl.PrintDefaults()
	}
	if err := fl.Parse(args); err != nil {
		os.Exit(2)
	}
	presets := guestgen.Presets()
	if *list {
		for _, n := range guestgen.PresetNames() {
			fmt.Println(n)
		}
		return nil
	}
	if *out == "" {
		fl.Usage()
		os.Exit(2)
	}
	names := fl.Args()
	if len(names) == 0 {
		names = []string{guestgen.CentOS5PV.Name}
	}
	var specs []guestgen.Spec
	for _, n := range names {
		s, ok := presets[n]
		if !ok {
			return fmt.Errorf("no preset %q (presets: %s)", n, strings.Join(guestgen.PresetNames(), ", "))
		}
		specs = append(specs, s)
	}
	var built []*guestgen.Guest
	for _, s := range specs {
		g, err := guestgen.Build(ctx, *out, s)
		if err != nil {
			return err
		}
		built = append(built, g)
		if !*asJSON {
			fmt.Printf("%s: %s\n", g.Name, g.Config)
			for _, img := range g.Images {
				fmt.Printf("  %s\n", img)
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(built)
	}
	return nil
}
