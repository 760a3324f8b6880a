package guestgen

import "embed"

// skel holds the guest's scripts: the initrd's nash shim and the root's
// init, rc.sysinit, rc and getty wrappers.
//
//go:embed skel
var skelFS embed.FS

func skel(name string) string {
	b, err := skelFS.ReadFile("skel/" + name)
	if err != nil {
		// The names are constants of this package; a missing one is a
		// build mistake that the tests catch.
		return "#!/bin/sh\necho 'guestgen: missing skel/" + name + "'\nexit 1\n"
	}
	return string(b)
}
