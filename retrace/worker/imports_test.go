package worker

import (
	"go/build"
	"slices"
	"strings"
	"testing"
)

// TestImports holds the worker to what doc.go says it may import of
// retraced: never the mirror, web or cmd.
func TestImports(t *testing.T) {
	const module = "github.com/retraced/retraced/"
	allowed := []string{"gc", "index", "index/blob", "resolver", "resolver/corefile", "retrace"}
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if rel, ok := strings.CutPrefix(imp, module); ok && !slices.Contains(allowed, rel) {
			t.Errorf("worker imports %s; doc.go allows only %v of retraced", imp, allowed)
		}
	}
}
