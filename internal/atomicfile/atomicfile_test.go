package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name string
		old  []byte // nil: no file before
		data []byte
		perm os.FileMode
	}{
		{name: "new file", data: []byte("hello\n"), perm: 0o644},
		{name: "replaces", old: []byte("old contents, longer than the new\n"), data: []byte("new\n"), perm: 0o600},
		{name: "executable", data: []byte("#!/bin/sh\n"), perm: 0o755},
		{name: "empty", old: []byte("x"), data: []byte{}, perm: 0o644},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "f")
			if tc.old != nil {
				if err := os.WriteFile(path, tc.old, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(path, tc.data, tc.perm); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(tc.data) {
				t.Errorf("contents %q, want %q", got, tc.data)
			}
			st, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != tc.perm {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.perm)
			}
			onlyFile(t, dir, "f")
		})
	}
}

// onlyFile fails unless dir holds exactly the one file want (no
// temporary left behind).
func onlyFile(t *testing.T, dir, want string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 || ents[0].Name() != want {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("folder holds %q, want only %q", names, want)
	}
}

func TestWriteFileConcurrent(t *testing.T) {
	// Writers of the same path must not share a temporary name: each
	// reader sees one whole version.
	dir := t.TempDir()
	path := filepath.Join(dir, "stamp")
	const n = 16
	want := map[string]bool{}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		data := fmt.Sprintf("writer %d %s\n", i, string(make([]byte, 64<<10)))
		want[data] = true
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- WriteFile(path, []byte(data), 0o644)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !want[string(got)] {
		t.Errorf("file holds %d bytes that no writer wrote whole", len(got))
	}
	onlyFile(t, dir, "stamp")
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	t.Run("missing folder", func(t *testing.T) {
		err := WriteFile(filepath.Join(dir, "no", "f"), []byte("x"), 0o644)
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("err = %v, want ErrNotExist", err)
		}
	})
	t.Run("target is a folder", func(t *testing.T) {
		target := filepath.Join(dir, "sub")
		if err := os.Mkdir(target, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(target, "keep"), []byte("k"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := WriteFile(target, []byte("x"), 0o644); err == nil {
			t.Fatal("replacing a non-empty folder succeeded")
		}
		onlyFile(t, target, "keep")
		ents, _ := os.ReadDir(dir)
		if len(ents) != 1 {
			t.Errorf("temporary file left behind: %d entries in %s", len(ents), dir)
		}
	})
}
