package pipeline

import "errors"

var errNotWired = errors.New("not wired yet")

// realParts wires the pipeline to xen2kvm's packages.
func realParts() parts {
	fail := func() error { return errNotWired }
	_ = fail
	return parts{}
}
