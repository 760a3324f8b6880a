// Package closer closes several things as one io.Closer.
//
//	fsys, img := ...
//	return fsys, closer.All{fsys, img}, nil // closes fsys, then img
package closer

import (
	"errors"
	"io"
)

// All closes each of its closers in order, all of them whatever fails,
// and returns their errors joined.
type All []io.Closer

// Close closes every closer in order.
func (a All) Close() error {
	var errs []error
	for _, c := range a {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}
