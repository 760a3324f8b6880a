package closer

import (
	"errors"
	"testing"
)

type fake struct {
	name  string
	err   error
	order *[]string
}

func (f fake) Close() error {
	*f.order = append(*f.order, f.name)
	return f.err
}

func TestAll(t *testing.T) {
	errA, errC := errors.New("a failed"), errors.New("c failed")
	tests := []struct {
		name string
		errs []error // one closer each
		want []error // errors.Is must hold for each
	}{
		{name: "none"},
		{name: "all close", errs: []error{nil, nil}},
		{name: "every closer runs after a failure", errs: []error{errA, nil, errC}, want: []error{errA, errC}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var order []string
			var all All
			var names []string
			for i, err := range tc.errs {
				n := string(rune('a' + i))
				names = append(names, n)
				all = append(all, fake{name: n, err: err, order: &order})
			}
			err := all.Close()
			if len(tc.want) == 0 && err != nil {
				t.Errorf("Close() = %v, want nil", err)
			}
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("Close() = %v, want it to wrap %v", err, w)
				}
			}
			if len(order) != len(names) {
				t.Fatalf("closed %v, want %v", order, names)
			}
			for i := range names {
				if order[i] != names[i] {
					t.Errorf("closed %v, want %v in order", order, names)
				}
			}
		})
	}
}
