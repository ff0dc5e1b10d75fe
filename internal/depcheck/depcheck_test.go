package depcheck

import (
	"bytes"
	"encoding/json"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

const module = "github.com/retraced/retraced"

// exempt lists the packages whose comment does not state their imports in
// the checked form yet, and why. An entry for a package that no longer
// exists fails the test, so that the list only shrinks.
var exempt = map[string]string{}

// rule is the sentence a package comment states its imports in (see the
// package comment): the list of paths ends at a '.', ':' or ';'.
var rule = regexp.MustCompile(`[Oo]f retraced, [a-z]+ may import (nothing|only ([a-z0-9/]+(?:(?:,| and|, and) [a-z0-9/]+)*))[.:;]`)

// pkg is what go list -json says of one package.
type pkg struct {
	ImportPath string
	Dir        string
	GoFiles    []string
	CgoFiles   []string
	Imports    []string
}

// TestImportsAsDocumented: every package imports only the retraced
// packages its comment allows.
func TestImportsAsDocumented(t *testing.T) {
	goCmd := fixtures.Tool(t, "go")
	for _, tags := range []string{"", "liblzma"} {
		name := tags
		if name == "" {
			name = "default"
		}
		t.Run(name, func(t *testing.T) {
			pkgs := list(t, goCmd, tags)
			exists := map[string]bool{}
			for _, p := range pkgs {
				exists[rel(p.ImportPath)] = true
			}
			for e := range exempt {
				if !exists[e] {
					t.Errorf("exempt package %s no longer exists: drop it from exempt", e)
				}
			}
			for _, p := range pkgs {
				name := rel(p.ImportPath)
				if why, ok := exempt[name]; ok {
					t.Logf("%s: not checked: %s", name, why)
					continue
				}
				allowed, sentence, err := allowedImports(p)
				if err != nil {
					t.Errorf("%s: %v", name, err)
					continue
				}
				for a := range allowed {
					if !exists[a] {
						t.Errorf("%s: %q names %s, which is no package of retraced", name, sentence, a)
					}
				}
				for _, imp := range p.Imports {
					if r := rel(imp); r != "" && !allowed[r] {
						t.Errorf("%s imports %s, which its package comment does not allow: %q", name, r, sentence)
					}
				}
			}
		})
	}
}

// list returns the module's packages as go list sees them with tags.
func list(t *testing.T, goCmd, tags string) []pkg {
	t.Helper()
	cmd := exec.Command(goCmd, "list", "-tags="+tags, "-json=ImportPath,Dir,GoFiles,CgoFiles,Imports", module+"/...")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	var pkgs []pkg
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found %d packages in %s", len(pkgs), module)
	}
	return pkgs
}

// rel returns path below the module ("index/blob"), or "" for a package
// outside it.
func rel(path string) string {
	r, ok := strings.CutPrefix(path, module+"/")
	if !ok {
		return ""
	}
	return r
}

// allowedImports reads p's package comment and returns the packages its
// rule allows, with the sentence.
func allowedImports(p pkg) (map[string]bool, string, error) {
	var doc strings.Builder
	fset := token.NewFileSet()
	for _, f := range slices.Concat(p.GoFiles, p.CgoFiles) {
		af, err := parser.ParseFile(fset, filepath.Join(p.Dir, f), nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			return nil, "", err
		}
		if af.Doc == nil {
			continue
		}
		for line := range strings.Lines(af.Doc.Text()) {
			if !strings.HasPrefix(line, " ") && !strings.HasPrefix(line, "\t") { // code blocks are examples
				doc.WriteString(line)
			}
		}
	}
	text := strings.Join(strings.Fields(doc.String()), " ")
	found := rule.FindAllStringSubmatch(text, -1)
	switch len(found) {
	case 0:
		return nil, "", errors.New(`its package comment states no import rule ("Of retraced, it may import nothing." or "... only a, b and c."; see internal/depcheck)`)
	case 1:
	default:
		return nil, "", errors.New("its package comment states its import rule more than once")
	}
	sentence, list := found[0][0], found[0][2]
	allowed := map[string]bool{}
	if found[0][1] == "nothing" {
		return allowed, sentence, nil
	}
	for _, a := range strings.FieldsFunc(strings.ReplaceAll(list, " and ", ","), func(r rune) bool { return r == ',' || r == ' ' }) {
		allowed[a] = true
	}
	return allowed, sentence, nil
}

// TestTaskProtocolReachesNoStorage: the task protocol and queue (retrace)
// build in nothing of the index, its engines or the blob pool, not even
// through the packages it may import: the rule above checks direct
// imports only.
func TestTaskProtocolReachesNoStorage(t *testing.T) {
	goCmd := fixtures.Tool(t, "go")
	for _, tags := range []string{"", "liblzma"} {
		out, err := exec.Command(goCmd, "list", "-tags="+tags, "-deps", module+"/retrace").Output()
		if err != nil {
			t.Fatalf("go list -deps: %v", err)
		}
		deps := strings.Fields(string(out))
		if !slices.Contains(deps, module+"/retrace") {
			t.Fatalf("go list -deps of retrace did not list retrace: %v", deps)
		}
		for _, d := range deps {
			for _, banned := range []string{module + "/index", module + "/mirror", module + "/resolver", module + "/retrace/worker", "github.com/dgraph-io/badger", "github.com/jackc/pgx"} {
				if d == banned || strings.HasPrefix(d, banned+"/") {
					t.Errorf("retrace (tags %q) builds in %s", tags, d)
				}
			}
		}
	}
}
