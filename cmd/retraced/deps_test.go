package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// testOnly are packages meant for tests that the retraced binary must not
// link: the fixture data it ships comes from fixtures/bundled, which is
// data only, never from package fixtures and its test server.
var testOnly = []string{"testing", "net/http/httptest"}

// TestNoTestCodeLinked: `go list -deps ./cmd/retraced` names none of
// testOnly, with or without the liblzma build tag (make builds with it).
// A failure names the packages that import the offender.
func TestNoTestCodeLinked(t *testing.T) {
	goCmd := fixtures.Tool(t, "go")
	for _, tags := range []string{"", "liblzma"} {
		name := tags
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			out := fixtures.Run(t, "", goCmd, "list", "-deps", "-tags="+tags,
				"-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, ".")
			linked := map[string]bool{}
			importers := map[string][]string{}
			for line := range strings.Lines(out) {
				f := strings.Fields(line)
				if len(f) == 0 {
					continue
				}
				linked[f[0]] = true
				for _, imp := range f[1:] {
					if slices.Contains(testOnly, imp) {
						importers[imp] = append(importers[imp], f[0])
					}
				}
			}
			if len(linked) < 10 {
				t.Fatalf("go list -deps listed %d packages: %q", len(linked), out)
			}
			for _, p := range testOnly {
				if linked[p] {
					t.Errorf("the retraced binary links %s, imported by %s", p, strings.Join(importers[p], ", "))
				}
			}
		})
	}
}
