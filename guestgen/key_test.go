package guestgen

import (
	"io/fs"
	"testing"
	"testing/fstest"
)

// The cache key follows guestgen's own Go source: a change to any of its
// files (not its tests) gives another key, so cached guests are rebuilt
// without a hand-bumped formatVersion.
func TestKeyFollowsSource(t *testing.T) {
	src := fstest.MapFS{}
	names, err := fs.Glob(sourceFS, "*.go")
	if err != nil {
		t.Fatal(err)
	}
	hasTest := false
	for _, n := range names {
		data, err := sourceFS.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		src[n] = &fstest.MapFile{Data: data}
		hasTest = hasTest || n == "key_test.go"
	}
	if src["build.go"] == nil || src["tree.go"] == nil {
		t.Fatalf("the embedded source lacks build.go or tree.go: %v", names)
	}
	if !hasTest {
		t.Fatalf("the embedded source has no key_test.go: %v (the test files are embedded too, and must not count)", names)
	}
	in := &inputs{}
	s := CentOS5PV.withDefaults()
	base := in.keyOf(src, s)
	if in.key(s) != base {
		t.Errorf("key(%s) is not keyOf the embedded source", s.Name)
	}
	if in.keyOf(src, s) != base {
		t.Error("the key of the same source and spec changed")
	}

	edited := func(name, add string) fstest.MapFS {
		c := fstest.MapFS{}
		for n, f := range src {
			c[n] = f
		}
		c[name] = &fstest.MapFile{Data: append(append([]byte(nil), src[name].Data...), add...)}
		return c
	}
	if in.keyOf(edited("tree.go", "\n// a change\n"), s) == base {
		t.Error("a change to tree.go left the key as it was")
	}
	c := edited("tree.go", "")
	c["new.go"] = &fstest.MapFile{Data: []byte("package guestgen\n")}
	if in.keyOf(c, s) == base {
		t.Error("a new source file left the key as it was")
	}
	c = edited("tree.go", "")
	delete(c, "xm.go")
	if in.keyOf(c, s) == base {
		t.Error("a removed source file left the key as it was")
	}
	if in.keyOf(edited("key_test.go", "\n// a change\n"), s) != base {
		t.Error("a change to a test file changed the key: every test edit would rebuild the guests")
	}
	other := s
	other.MemoryMiB++
	if in.keyOf(src, other) == base {
		t.Error("another spec has the same key")
	}
}
