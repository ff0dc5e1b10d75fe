package retrace

import (
	"go/build"
	"slices"
	"strings"
	"testing"
)

// TestImports holds the task protocol to what doc.go says it may import
// of retraced: the retracing (retrace/worker, the index, the resolver,
// the mirror) comes in through the Retracer and PackageChecker
// interfaces, never by import.
func TestImports(t *testing.T) {
	const module = "github.com/retraced/retraced/"
	allowed := []string{"gc", "gc/diskspace", "internal/decompress", "internal/httpbound"}
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if rel, ok := strings.CutPrefix(imp, module); ok && !slices.Contains(allowed, rel) {
			t.Errorf("retrace imports %s; doc.go allows only %v of retraced", imp, allowed)
		}
	}
}
