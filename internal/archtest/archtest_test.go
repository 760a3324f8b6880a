// Package archtest checks the shape of the module: library packages stay
// free of the CLI framework, and every package has a package comment.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/xen2kvm/xen2kvm"

// packages returns each package directory of the module (relative to the
// repo root) with its non-test Go files parsed for imports and comments.
func packages(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	pkgs := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() && path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		pkgs[rel] = append(pkgs[rel], path)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

func TestLibrariesDoNotImportCobra(t *testing.T) {
	for dir, files := range packages(t) {
		if dir == "cmd" || strings.HasPrefix(dir, "cmd/") || strings.HasPrefix(dir, "cmd"+string(os.PathSeparator)) {
			continue
		}
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				p, _ := strconv.Unquote(imp.Path.Value)
				if strings.HasPrefix(p, "github.com/spf13/cobra") || strings.HasPrefix(p, "github.com/schollz/progressbar") {
					t.Errorf("%s imports %s: only cmd/ may use the CLI libraries", f, p)
				}
			}
		}
	}
}

func TestEveryPackageHasAComment(t *testing.T) {
	for dir, files := range packages(t) {
		documented := false
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.PackageClauseOnly|parser.ParseComments)
			if err != nil {
				t.Fatal(err)
			}
			if file.Doc != nil && strings.TrimSpace(file.Doc.Text()) != "" {
				documented = true
			}
		}
		if !documented {
			t.Errorf("package %s (%s) has no package comment", dir, module+"/"+filepath.ToSlash(dir))
		}
	}
}
