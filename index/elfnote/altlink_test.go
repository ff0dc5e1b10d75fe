package elfnote

import (
	"bytes"
	"debug/elf"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// Two programs sharing a header: dwz moves the types they share into one
// multifile and points both at it.
const (
	altHeader = "struct pt { int x, y; };\ntypedef struct pt pt_t;\nenum color { RED, GREEN, BLUE };\nint f1(pt_t *p);\nint f2(pt_t *p);\n"
	altA      = "#include \"h.h\"\nint f1(pt_t *p) { enum color c = RED; return p->x + c; }\nint main(void) { pt_t p = {1, 2}; return f1(&p); }\n"
	altB      = "#include \"h.h\"\nint f2(pt_t *p) { enum color c = BLUE; return p->y + c; }\nint main(void) { pt_t p = {1, 2}; return f2(&p); }\n"
)

// readelfLinks is readelf --debug-dump=links: the altlink's file name and
// build-id, or "" when the file has none.
func readelfLinks(t *testing.T, path string) (name, id string) {
	t.Helper()
	out := fixtures.Run(t, "", fixtures.Tool(t, "readelf"), "--debug-dump=links", path)
	m := regexp.MustCompile(`Separate debug info file: (\S+)\n\s*Build-ID \(0x[0-9a-f]+ bytes\):\n((?:\s*[0-9a-f]{2})+)`).FindStringSubmatch(out)
	if m == nil {
		return "", ""
	}
	return m[1], strings.Join(strings.Fields(m[2]), "")
}

// TestDebugAltLinkDWZ builds two programs with gcc -g, runs the real dwz
// over them with a multifile, and checks DebugAltLink against readelf on
// each, and on the multifile and an untouched binary (no altlink).
func TestDebugAltLinkDWZ(t *testing.T) {
	gcc := fixtures.Tool(t, "gcc")
	dwz := fixtures.Tool(t, "dwz")
	dir := t.TempDir()
	for name, src := range map[string]string{"h.h": altHeader, "a.c": altA, "b.c": altB} {
		writeFile(t, filepath.Join(dir, name), []byte(src))
	}
	fixtures.Run(t, dir, gcc, "-g", "-O2", "-Wl,--build-id=sha1", "-o", "a", "a.c")
	fixtures.Run(t, dir, gcc, "-g", "-O2", "-Wl,--build-id=sha1", "-o", "b", "b.c")
	fixtures.Run(t, dir, gcc, "-g", "-O2", "-Wl,--build-id=sha1", "-o", "plain", "a.c")
	fixtures.Run(t, dir, dwz, "-m", "multi", "-M", "/usr/lib/debug/.dwz/fixture-1.0-1.x86_64", "a", "b")

	multiID := referenceBuildID(t, filepath.Join(dir, "multi"))
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			wantName, wantID := readelfLinks(t, path)
			if wantName != "/usr/lib/debug/.dwz/fixture-1.0-1.x86_64" || wantID != multiID {
				t.Fatalf("readelf: altlink %q %s, want the multifile %s", wantName, wantID, multiID)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			al, err := DebugAltLink(f)
			if err != nil {
				t.Fatal(err)
			}
			if al == nil || al.Name != wantName || hex.EncodeToString(al.BuildID) != wantID {
				t.Fatalf("DebugAltLink = %+v, want %s %s", al, wantName, wantID)
			}
		})
	}
	for _, name := range []string{"multi", "plain"} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open(filepath.Join(dir, name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if al, err := DebugAltLink(f); al != nil || err != nil {
				t.Fatalf("DebugAltLink = %+v, %v; want none", al, err)
			}
		})
	}

	// Malformed sections, made by rewriting the real one in place.
	orig := readFile(t, filepath.Join(dir, "a"))
	ef, err := elf.NewFile(bytes.NewReader(orig))
	if err != nil {
		t.Fatal(err)
	}
	sec := ef.Section(".gnu_debugaltlink")
	off, size := int(sec.Offset), int(sec.Size)
	tests := []struct {
		name   string
		mutate func(b []byte) []byte
	}{
		{"no NUL", func(b []byte) []byte {
			for i := off; i < off+size; i++ {
				if b[i] == 0 {
					b[i] = 'x'
				}
			}
			return b
		}},
		{"no name", func(b []byte) []byte { b[off] = 0; copy(b[off+1:], bytes.Repeat([]byte{1}, size-1)); return b }},
		{"no build-id", func(b []byte) []byte {
			copy(b[off:off+size], bytes.Repeat([]byte{'x'}, size))
			b[off+size-1] = 0
			return b
		}},
		{"zero build-id", func(b []byte) []byte { clear(b[off+size-20 : off+size]); return b }},
		{"past the end", func(b []byte) []byte { return b[:off+size/2] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.mutate(bytes.Clone(orig))
			al, err := DebugAltLink(bytes.NewReader(b))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("DebugAltLink = %+v, %v; want a *FormatError", al, err)
			}
		})
	}
}
