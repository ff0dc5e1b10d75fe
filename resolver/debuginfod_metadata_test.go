package resolver

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
)

// trixieTool returns Debian trixie's debuginfod or debuginfod-find
// (elfutils 0.192, the first with /metadata), as
// fixtures/trixie-debuginfod-find.sh unpacks them; .ci/run runs it, so CI
// never skips.
func trixieTool(t testing.TB, name string) string {
	t.Helper()
	dir := os.Getenv("RETRACED_TRIXIE_DIR")
	if dir == "" {
		dir = "/var/tmp/trixie-debuginfod"
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("trixie's %s not unpacked: run fixtures/trixie-debuginfod-find.sh (.ci/run does)", name)
	}
	return p
}

// metaURL is base's /metadata query for key and value.
func metaURL(base, key, value string) string {
	return base + "/metadata?" + url.Values{"key": {key}, "value": {value}}.Encode()
}

// metaResults returns an answer's results as sorted "type buildid file
// archive" lines, the archive reduced to its base name (elfutils names
// the RPM by its path on the server), and its "complete".
func metaResults(t testing.TB, body []byte) ([]string, bool) {
	t.Helper()
	var ans struct {
		Results []struct {
			Type, BuildID, File, Archive string
		}
		Complete *bool
	}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Fatalf("metadata answer %q: %v", body, err)
	}
	if ans.Results == nil || ans.Complete == nil {
		t.Fatalf("metadata answer without results or complete: %s", body)
	}
	var lines []string
	for _, r := range ans.Results {
		lines = append(lines, strings.Join([]string{r.Type, r.BuildID, r.File, path.Base(r.Archive)}, " "))
	}
	slices.Sort(lines)
	return lines, *ans.Complete
}

// expectedMeta is what /metadata must find of the fixture files whose
// path keep accepts, from expected/buildids.txt (eu-readelf) and
// expected/packages.txt (rpm): the index's files, as the reference tools
// see them.
func expectedMeta(t testing.TB, keep func(path string) bool) []string {
	t.Helper()
	archive := map[string]string{}
	for _, p := range fixtures.Packages(t) {
		archive[p.NEVRA] = p.File
	}
	lines := []string{}
	for _, e := range fixtures.ELFFiles(t) {
		if keep(e.Path) {
			lines = append(lines, strings.Join([]string{e.Kind, e.BuildID, e.Path, archive[e.NEVRA]}, " "))
		}
	}
	slices.Sort(lines)
	return lines
}

// metadataQueries are the searches every test asks, with the fixture
// files each must find.
var metadataQueries = []struct {
	key, value string
	keep       func(string) bool
}{
	{"file", "/usr/bin/crashme", func(p string) bool { return p == "/usr/bin/crashme" }},
	{"file", "/usr/lib64/libgreeter.so.1.0.0", func(p string) bool { return p == "/usr/lib64/libgreeter.so.1.0.0" }},
	{"file", "/usr/bin/crash", func(string) bool { return false }},                                // a prefix is not the file
	{"file", "/usr/lib64/libgreeter.so.1", func(string) bool { return false }},                    // a symbolic link: not indexed
	{"file", "/usr/src/debug/crashme-1.0-1.x86_64/crashme.c", func(string) bool { return false }}, // a source
	{"glob", "/usr/lib64/libc*", func(p string) bool { return strings.HasPrefix(p, "/usr/lib64/libc") }},
	{"glob", "/usr/bin/*", func(p string) bool { return strings.HasPrefix(p, "/usr/bin/") }},
	{"glob", "/usr/*", func(string) bool { return false }}, // FNM_PATHNAME: * stops at /
	{"glob", "/usr/*/crashme", func(p string) bool { return p == "/usr/bin/crashme" }},
	{"glob", "*/counter", func(string) bool { return false }},
	{"glob", "/*/*/*", func(p string) bool { return strings.Count(p, "/") == 3 }},
	{"glob", "/usr/bin/[!c]*", func(p string) bool { return p == "/usr/bin/greeter" }},
	{"glob", "/usr/bin/[^c]*", func(p string) bool { return p == "/usr/bin/greeter" }},
	{"glob", "/usr/bin/[c]rashm?", func(p string) bool { return p == "/usr/bin/crashme" }},
	{"glob", "/usr/lib/debug/usr/lib64/*-1.1-1.x86_64.debug", func(p string) bool {
		return strings.HasPrefix(p, "/usr/lib/debug/usr/lib64/") && strings.HasSuffix(p, "-1.1-1.x86_64.debug")
	}},
	{"glob", `/usr/bin/crash\me`, func(p string) bool { return p == "/usr/bin/crashme" }},
}

// notElfutils are the globs elfutils 0.192 answers otherwise than its
// documented fnmatch(FNM_PATHNAME) semantics: it filters with sqlite's
// GLOB before fnmatch, and GLOB reads "[!" as a class holding "!" (its
// negation is "[^") and has no backslash escape, so elfutils finds nothing for
// these; retraced follows fnmatch.
var notElfutils = map[string]bool{"/usr/bin/[!c]*": true, `/usr/bin/crash\me`: true}

// TestMetadata serves /metadata over the fixture repository and checks
// it with net/http against the reference lists, against elfutils 0.192's
// own debuginfod, and with elfutils 0.192's debuginfod-find.
func TestMetadata(t *testing.T) {
	idx, pool := newFixtureStore(t)
	srv := serveDebuginfod(t, NewDebuginfod(idx, pool))

	t.Run("http", func(t *testing.T) {
		for _, q := range metadataQueries {
			t.Run(q.key+"="+q.value, func(t *testing.T) {
				code, h, body := fetch(t, metaURL(srv.URL, q.key, q.value))
				if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
					t.Fatalf("status %d, Content-Type %q: %s", code, h.Get("Content-Type"), body)
				}
				got, complete := metaResults(t, body)
				if want := expectedMeta(t, q.keep); !slices.Equal(got, want) || !complete {
					t.Fatalf("complete %v, results:\n got %q\nwant %q", complete, got, want)
				}
			})
		}
		// Every fixture ELF file is found by its path.
		for _, e := range fixtures.ELFFiles(t) {
			_, _, body := fetch(t, metaURL(srv.URL, "file", e.Path))
			if got, _ := metaResults(t, body); !slices.ContainsFunc(got, func(l string) bool {
				return strings.HasPrefix(l, e.Kind+" "+e.BuildID+" "+e.Path+" ")
			}) {
				t.Errorf("file %s: %q lacks %s %s", e.Path, got, e.Kind, e.BuildID)
			}
		}
		req, err := http.NewRequest(http.MethodHead, metaURL(srv.URL, "glob", "/usr/bin/*"), nil)
		if err != nil {
			t.Fatal(err)
		}
		if code, _, _ := do(t, req); code != http.StatusOK {
			t.Errorf("HEAD: %d", code)
		}
	})

	t.Run("bad-requests", func(t *testing.T) {
		for _, tc := range []struct{ name, query string }{
			{"no key", "value=/usr/bin/crashme"},
			{"no value", "key=file"},
			{"nothing", ""},
			{"unknown key", "key=buildid&value=6de11c842d9f9da91a0436741a2ae276fcd2fcae"},
			{"empty value", "key=file&value="},
			{"empty glob", "key=glob&value="},
			{"over-long glob", "key=glob&value=/" + strings.Repeat("a", MaxMetadataValue)},
			{"over-long file", "key=file&value=/" + strings.Repeat("a", MaxMetadataValue)},
			{"unterminated class", "key=glob&value=/usr/bin/[abc"},
			{"class name", "key=glob&value=/usr/bin/[[:alpha:]]*"},
			{"trailing backslash", "key=glob&value=/usr/bin/crashme%5C"},
			{"slash in a class", "key=glob&value=/usr[/]bin/*"},
			{"NUL", "key=file&value=/usr/bin/crashme%00"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				code, _, body := fetch(t, srv.URL+"/metadata?"+tc.query)
				if code != http.StatusBadRequest || !strings.Contains(string(body), "/metadata") {
					t.Fatalf("%s: status %d %q, want 400 naming /metadata", tc.query, code, body)
				}
			})
		}
		// The longest value allowed is a search, not an error.
		if code, _, body := fetch(t, metaURL(srv.URL, "glob", "/"+strings.Repeat("a", MaxMetadataValue-1))); code != http.StatusOK {
			t.Fatalf("a %d-byte glob: %d %s", MaxMetadataValue, code, body)
		}
	})

	t.Run("bounds", func(t *testing.T) {
		all := expectedMeta(t, func(p string) bool { return strings.Count(p, "/") == 3 })
		if len(all) < 4 {
			t.Fatalf("the fixture has %d files at depth 3; the test wants more than 3", len(all))
		}
		few := NewDebuginfod(idx, pool)
		few.MetadataMaxResults = 3
		var told []string
		few.OnMetadata = func(key string, complete bool) { told = append(told, fmt.Sprintf("%s %v", key, complete)) }
		fewSrv := serveDebuginfod(t, few)
		_, _, body := fetch(t, metaURL(fewSrv.URL, "glob", "/*/*/*"))
		got, complete := metaResults(t, body)
		if complete || len(got) != 3 {
			t.Fatalf("3 results at most: complete %v, %d results %q", complete, len(got), got)
		}
		for _, l := range got {
			if !slices.Contains(all, l) {
				t.Errorf("cut answer holds %q, not a match", l)
			}
		}
		// Exactly as many matches as the bound: complete.
		_, _, body = fetch(t, metaURL(fewSrv.URL, "glob", "/usr/bin/crashme"))
		if got, complete := metaResults(t, body); !complete || len(got) != 2 {
			t.Fatalf("2 matches under a bound of 3: complete %v, %q", complete, got)
		}
		if want := []string{"glob false", "glob true"}; !slices.Equal(told, want) {
			t.Errorf("OnMetadata told %q, want %q", told, want)
		}

		slow := NewDebuginfod(idx, pool)
		slow.MetadataMaxTime = time.Nanosecond
		slowSrv := serveDebuginfod(t, slow)
		_, _, body = fetch(t, metaURL(slowSrv.URL, "glob", "/*/*/*"))
		if got, complete := metaResults(t, body); complete || len(got) != 0 {
			t.Fatalf("past its time: complete %v, %q", complete, got)
		}
		_, _, body = fetch(t, metaURL(srv.URL, "glob", "/*/*/*"))
		if got, complete := metaResults(t, body); !complete || !slices.Equal(got, all) {
			t.Fatalf("default bounds: complete %v, %d of %d results", complete, len(got), len(all))
		}
	})

	t.Run("elfutils", func(t *testing.T) {
		anchor := startTrixieDebuginfod(t)
		for _, q := range metadataQueries {
			if notElfutils[q.value] {
				continue
			}
			t.Run(q.key+"="+q.value, func(t *testing.T) {
				code, _, body := fetch(t, metaURL(anchor, q.key, q.value))
				if code != http.StatusOK {
					t.Fatalf("elfutils: %d %s", code, body)
				}
				want, wantComplete := metaResults(t, body)
				_, _, body = fetch(t, metaURL(srv.URL, q.key, q.value))
				got, complete := metaResults(t, body)
				if !slices.Equal(got, want) || complete != wantComplete {
					t.Fatalf("retraced (complete %v):\n%q\nelfutils 0.192 (complete %v):\n%q", complete, got, wantComplete, want)
				}
			})
		}
	})

	t.Run("debuginfod-find", func(t *testing.T) {
		find := trixieTool(t, "debuginfod-find")
		for _, q := range metadataQueries {
			if q.value != "/usr/bin/crashme" && q.value != "/usr/lib64/libc*" && q.value != "/usr/*" {
				continue
			}
			env, _ := clientEnv(t, srv.URL)
			out, errOut, err := run(t, env, find, "metadata", q.key, q.value)
			if err != nil {
				t.Fatalf("debuginfod-find metadata %s %s: %v\n%s", q.key, q.value, err, errOut)
			}
			got, complete := metaResults(t, []byte(out))
			if want := expectedMeta(t, q.keep); !slices.Equal(got, want) || !complete {
				t.Errorf("debuginfod-find metadata %s %s: complete %v\n got %q\nwant %q", q.key, q.value, complete, got, want)
			}
			if q.value != "/usr/*" && len(got) == 0 {
				t.Errorf("debuginfod-find metadata %s %s found nothing", q.key, q.value)
			}
		}
	})
}

// startTrixieDebuginfod runs elfutils 0.192's debuginfod over the fixture
// RPMs and returns its URL once it serves every fixture build-id.
func startTrixieDebuginfod(t *testing.T) string {
	t.Helper()
	url, _ := startElfutils(t, trixieTool(t, "debuginfod"))
	return url
}

// FuzzGlob: compileGlob never panics, and every path a glob matches
// starts with the glob's literal prefix, the key range the search reads:
// a match outside it would be a file the search cannot find.
func FuzzGlob(f *testing.F) {
	for _, q := range metadataQueries {
		f.Add(q.value, "/usr/bin/crashme")
	}
	for _, s := range [][2]string{
		{`/usr/lib64/libc*`, "/usr/lib64/libcounter.so.1.0.0"}, {`\*`, "*"}, {`[!a]`, "b"}, {`[]]`, "]"},
		{`a\`, `a\`}, {`[a-`, "a"}, {`*/*`, "usr/bin"}, {`[\]]`, "]"}, {`/[^/]`, "//"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, glob, name string) {
		match, err := compileGlob(glob)
		if err != nil {
			return
		}
		if match(name) && !strings.HasPrefix(name, globPrefix(glob)) {
			t.Fatalf("glob %q matches %q, outside its prefix %q", glob, name, globPrefix(glob))
		}
		if match(name) && strings.Count(name, "/") != strings.Count(glob, "/") {
			t.Fatalf("glob %q matches %q across a /", glob, name)
		}
	})
}
