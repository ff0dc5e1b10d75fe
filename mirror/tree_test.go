package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
)

// kojiTree lays the fixture RPMs out as Koji does:
// packages/NAME/VERSION/RELEASE/ARCH/FILE.
func kojiTree(t testing.TB) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, p := range fixtures.Packages(t) {
		n, err := index.ParseNEVRA(p.NEVRA)
		if err != nil {
			t.Fatal(err)
		}
		src := strings.TrimSuffix(strings.TrimSuffix(n.Name, "-debuginfo"), "-debugsource")
		b, err := os.ReadFile(fixtures.Path("repo", "Packages", p.File))
		if err != nil {
			t.Fatal(err)
		}
		fsys[fmt.Sprintf("packages/%s/%s/%s/%s/%s", src, n.Version, n.Release, n.Arch, p.File)] = &fstest.MapFile{Data: b, Mode: 0o644}
	}
	return fsys
}

// newKojiMirror serves tree and adds its packages/ as tree source "koji"
// of a new mirror.
func newKojiMirror(t *testing.T, tree fstest.MapFS) (*testMirror, *fixtures.Server) {
	t.Helper()
	srv := fixtures.NewServer(tree)
	url := srv.Start(t) + "/packages/"
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url, Kind: KindTree}); err != nil {
		t.Fatal(err)
	}
	return m, srv
}

// treeDirs returns the URL path of every directory of fsys under top
// ("/packages/", "/packages/bash/", ...).
func treeDirs(fsys fstest.MapFS, top string) []string {
	seen := map[string]bool{}
	for name := range fsys {
		for d := path.Dir(name); d != "." && strings.HasPrefix(d+"/", top); d = path.Dir(d) {
			seen["/"+d+"/"] = true
		}
	}
	var out []string
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}

// TestTreeSync mirrors a Koji tree listed as nginx, Apache and python's
// http.server list directories, and checks that each mirrors every package
// with one request per directory and per package: Apache's column-sort
// links (?C=N;O=D) and "Parent Directory", and nginx's "../", are not
// followed.
func TestTreeSync(t *testing.T) {
	for _, style := range fixtures.ListingStyles() {
		t.Run(string(style), func(t *testing.T) {
			tree := kojiTree(t)
			srv := fixtures.NewServer(tree)
			srv.SetListingStyle(style)
			url := srv.Start(t) + "/packages/"
			m := newTestMirror(t, "")
			if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url}); err != nil {
				t.Fatal(err)
			}
			src, _ := m.Source("koji")
			if src.Kind != KindTree {
				t.Fatalf("kind %q, want tree (no repodata/)", src.Kind)
			}
			srv.ResetRequests()
			res := m.sync(t, "koji")
			if !res.OK() || res.New != len(fixtures.Packages(t)) {
				t.Fatalf("first sync: %s %v", res.Summary(), res.Failed)
			}
			ids, want := expectedLines(t, nil)
			diffLines(t, m.lookupLines(t, ids), want)
			dirs := treeDirs(tree, "packages/")
			for _, d := range dirs {
				if n := srv.Requests(d); n != 1 {
					t.Errorf("%s asked for %d times, want once", d, n)
				}
			}
			if got, want := srv.TotalRequests(), len(dirs)+len(tree); got != want {
				t.Errorf("%d requests, want %d (%d listings, %d packages)", got, want, len(dirs), len(tree))
			}

			// Unchanged: every directory is asked again (conditionally
			// where the listing had validators), and no package is fetched.
			srv.ResetRequests()
			again := m.sync(t, "koji")
			if !again.OK() || again.New != 0 || again.Listed != len(fixtures.Packages(t)) {
				t.Fatalf("second sync: %s %v", again.Summary(), again.Failed)
			}
			if got := srv.TotalRequests(); got != len(dirs) {
				t.Errorf("unchanged sync made %d requests, want %d (the listings only)", got, len(dirs))
			}
		})
	}
}

// listingLog passes requests on to h and records when each directory
// listing (a path ending in "/") arrived and the most listings in flight at
// once. It holds each listing for hold before answering, so that listings
// fetched in parallel overlap.
type listingLog struct {
	h    http.Handler
	hold time.Duration

	mu                    sync.Mutex
	arrivals              []time.Time
	inFlight, maxInFlight int
}

func (l *listingLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !strings.HasSuffix(r.URL.Path, "/") {
		l.h.ServeHTTP(w, r)
		return
	}
	l.mu.Lock()
	l.arrivals = append(l.arrivals, time.Now())
	l.inFlight++
	l.maxInFlight = max(l.maxInFlight, l.inFlight)
	l.mu.Unlock()
	time.Sleep(l.hold)
	l.h.ServeHTTP(w, r)
	l.mu.Lock()
	l.inFlight--
	l.mu.Unlock()
}

// subTree is the part of fsys under prefix.
func subTree(fsys fstest.MapFS, prefix string) fstest.MapFS {
	out := fstest.MapFS{}
	for k, v := range fsys {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

// TestTreeCrawlLimits checks Crawl.Parallelism and Crawl.Delay by what the
// server saw: how many listings were in flight at once, and how far apart
// (at least) listing requests arrived. Neither is a bound the test hopes
// the machine is fast enough for.
func TestTreeCrawlLimits(t *testing.T) {
	t.Run("delay", func(t *testing.T) {
		const delay = 150 * time.Millisecond
		tree := subTree(kojiTree(t), "packages/crashme/")
		log := &listingLog{h: fixtures.NewServer(tree)}
		srv := httptest.NewServer(log)
		defer srv.Close()
		m := newTestMirrorConfig(t, "", Config{Workers: 2, Crawl: CrawlConfig{Parallelism: 1, Delay: delay}})
		if _, err := m.Add(context.Background(), Source{Name: "koji", URL: srv.URL + "/packages/", Kind: KindTree}); err != nil {
			t.Fatal(err)
		}
		res := m.sync(t, "koji")
		if !res.OK() || res.New != len(tree) {
			t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
		}
		log.mu.Lock()
		defer log.mu.Unlock()
		if want := len(treeDirs(tree, "packages/")); len(log.arrivals) != want {
			t.Fatalf("%d listing requests, want %d", len(log.arrivals), want)
		}
		if log.maxInFlight != 1 {
			t.Errorf("%d listings in flight at once, want 1", log.maxInFlight)
		}
		const slack = 10 * time.Millisecond // clock granularity
		for i := 1; i < len(log.arrivals); i++ {
			if gap := log.arrivals[i].Sub(log.arrivals[i-1]); gap < delay-slack {
				t.Errorf("listing %d came %v after the one before, want at least %v", i, gap, delay)
			}
		}
	})
	t.Run("parallelism", func(t *testing.T) {
		tree := kojiTree(t) // three packages of two versions: up to six listings could overlap
		log := &listingLog{h: fixtures.NewServer(tree), hold: 50 * time.Millisecond}
		srv := httptest.NewServer(log)
		defer srv.Close()
		m := newTestMirrorConfig(t, "", Config{Workers: 2, Crawl: CrawlConfig{Parallelism: 2}})
		if _, err := m.Add(context.Background(), Source{Name: "koji", URL: srv.URL + "/packages/", Kind: KindTree}); err != nil {
			t.Fatal(err)
		}
		if res := m.sync(t, "koji"); !res.OK() || res.New != len(tree) {
			t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
		}
		log.mu.Lock()
		defer log.mu.Unlock()
		if log.maxInFlight > 2 {
			t.Errorf("%d listings in flight at once, want at most 2", log.maxInFlight)
		}
	})
	t.Run("max listings", func(t *testing.T) {
		tree := kojiTree(t)
		srv := fixtures.NewServer(tree)
		url := srv.Start(t) + "/packages/"
		m := newTestMirrorConfig(t, "", Config{Workers: 2, Crawl: CrawlConfig{MaxListings: 3}})
		if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url, Kind: KindTree}); err != nil {
			t.Fatal(err)
		}
		srv.ResetRequests()
		res := m.sync(t, "koji")
		if len(res.Failed) == 0 || !strings.Contains(res.Failed[0].Error(), "bounded") {
			t.Fatalf("the listing bound was not reported: %v", res.Failed)
		}
		if got := srv.TotalRequests(); got != 3 {
			t.Errorf("%d requests with MaxListings 3, want 3 listings", got)
		}
	})
}

func TestTreeFaults(t *testing.T) {
	t.Run("listing not HTML", func(t *testing.T) {
		srv := fixtures.NewServer(kojiTree(t))
		url := srv.Start(t) + "/packages/"
		srv.Inject("/packages/crashme", fixtures.Replace([]byte("\x00\x01binary junk, not a listing")))
		m := newTestMirror(t, "")
		if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url, Kind: KindTree}); err != nil {
			t.Fatal(err)
		}
		res := m.sync(t, "koji")
		if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error(), "not an HTML directory listing") {
			t.Fatalf("failed: %v", res.Failed)
		}
		if res.New == 0 {
			t.Fatal("the rest of the tree did not land")
		}
	})
	t.Run("corrupt package", func(t *testing.T) {
		srv := fixtures.NewServer(kojiTree(t))
		url := srv.Start(t) + "/packages/"
		srv.Inject("crashme-1.0-1.x86_64.rpm", fixtures.Corrupt())
		m := newTestMirror(t, "")
		if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url, Kind: KindTree}); err != nil {
			t.Fatal(err)
		}
		res := m.sync(t, "koji")
		if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Location, "crashme-1.0-1.x86_64.rpm") {
			t.Fatalf("failed: %v", res.Failed)
		}
		srv.ClearFaults()
		if again := m.sync(t, "koji"); !again.OK() || again.New != 1 {
			t.Fatalf("retry: %s %v", again.Summary(), again.Failed)
		}
	})
}

// trickle answers path with the start of an HTML listing and then one
// byte every 100 ms until the client goes away, and passes every other
// request on to h.
func trickle(h http.Handler, path string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			h.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html")
		rc := http.NewResponseController(w)
		for _, err := fmt.Fprint(w, "<html><body>"); err == nil; _, err = w.Write([]byte(" ")) {
			if rc.Flush() != nil {
				return
			}
			select {
			case <-r.Context().Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	})
}

// syncGuarded syncs name under a two-minute guard against a hang, far
// above any bound the tests set; a sync the guard ends fails the test.
func (m *testMirror) syncGuarded(t *testing.T, name string) *Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := m.Sync(ctx, name, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ctx.Err() != nil {
		t.Fatal("the sync ended only by the guard's deadline")
	}
	return res
}

// TestTreeListingTimeout: a listing whose body never ends is cut at
// Crawl.ListingTimeout and reported; the rest of the tree lands.
func TestTreeListingTimeout(t *testing.T) {
	tree := kojiTree(t)
	srv := httptest.NewServer(trickle(fixtures.NewServer(tree), "/packages/crashme/"))
	defer srv.Close()
	m := newTestMirrorConfig(t, "", Config{Workers: 2, Crawl: CrawlConfig{ListingTimeout: time.Second}})
	if _, err := m.Add(context.Background(), Source{Name: "koji", URL: srv.URL + "/packages/", Kind: KindTree}); err != nil {
		t.Fatal(err)
	}
	res := m.syncGuarded(t, "koji")
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error(), "/packages/crashme/") ||
		!strings.Contains(res.Failed[0].Error(), "crawl_listing_timeout") {
		t.Fatalf("failed: %v, want the trickling listing reported", res.Failed)
	}
	want := 0
	for name := range tree {
		if !strings.HasPrefix(name, "packages/crashme/") {
			want++
		}
	}
	if res.New != want {
		t.Errorf("%d packages mirrored, want the %d outside crashme/", res.New, want)
	}
}

// redirect answers a request for from with a 302 to to, and passes every
// other request on to h.
func redirect(h http.Handler, from, to string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == from {
			http.Redirect(w, r, to, http.StatusFound)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// TestTreeRedirects: a listing that redirects out of the source's path is
// not followed and is reported; one that redirects within it is followed,
// and a directory reached both by a link and by a redirect is listed once.
func TestTreeRedirects(t *testing.T) {
	tree := kojiTree(t)
	// Copies that following a redirect would find: greeter outside the
	// source's path, counter under another name inside it.
	for name, f := range kojiTree(t) {
		if rest, ok := strings.CutPrefix(name, "packages/greeter/"); ok {
			tree["elsewhere/greeter/"+rest] = f
		}
		if rest, ok := strings.CutPrefix(name, "packages/counter/"); ok {
			tree["packages/counter-v2/"+rest] = f
			delete(tree, name)
			tree["packages/counter/README"] = &fstest.MapFile{Data: []byte("moved")}
		}
	}
	fx := fixtures.NewServer(tree)
	srv := httptest.NewServer(
		redirect(redirect(fx, "/packages/greeter/", "/elsewhere/greeter/"), "/packages/counter/", "/packages/counter-v2/"))
	defer srv.Close()
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "koji", URL: srv.URL + "/packages/", Kind: KindTree}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "koji")
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Error(), "/packages/greeter/") ||
		!strings.Contains(res.Failed[0].Error(), srv.URL+"/elsewhere/greeter/ is outside") {
		t.Fatalf("failed: %v, want the redirect out of the tree reported", res.Failed)
	}
	if n := fx.Requests("/elsewhere/greeter/"); n != 0 {
		t.Errorf("the redirect out of the tree was followed (%d requests)", n)
	}
	if n := fx.Requests("/packages/counter-v2/"); n != 1 {
		t.Errorf("/packages/counter-v2/, linked and redirected to, listed %d times, want once", n)
	}
	want := 0
	for _, p := range fixtures.Packages(t) {
		if !strings.HasPrefix(p.File, "greeter") {
			want++
		}
	}
	if res.New != want {
		t.Errorf("%d packages mirrored, want %d (all but greeter's)", res.New, want)
	}
}

// TestDirFilter checks which directories the include and exclude patterns
// let a crawl skip, and that a skipped directory never holds a file the
// patterns select.
func TestDirFilter(t *testing.T) {
	cases := []struct {
		name, include, exclude string
		skip, walk             []string
	}{
		{name: "include anchored", include: `^(glibc|bash)/`,
			skip: []string{"zsh/", "glib/", "bas/"}, walk: []string{"bash/", "glibc/1.0/", "bash/5.2/1/x86_64/"}},
		{name: "include unanchored", include: `debuginfo`,
			walk: []string{"zsh/", "bash/5.2/1/x86_64/"}},
		{name: "include end-anchored", include: `\.x86_64\.rpm$`,
			walk: []string{"zsh/", "bash/5.2/1/noarch/"}},
		{name: "include after a directory level", include: `^[^/]+/1\.`,
			skip: []string{"bash/2.0/", "bash/10/"}, walk: []string{"bash/", "bash/1.0/", "bash/1.0/1/x86_64/"}},
		{name: "include case-folded", include: `(?i)^BASH/`,
			skip: []string{"zsh/"}, walk: []string{"bash/", "Bash/"}},
		{name: "include word boundary", include: `^bash\b`,
			skip: []string{"bashful/"}, walk: []string{"bash/", "bash-completion/"}},
		{name: "exclude prefix", exclude: `^debug/`,
			skip: []string{"debug/", "debug/x/"}, walk: []string{"bash/", "x/debug/"}},
		{name: "exclude anywhere", exclude: `/debug/`,
			skip: []string{"x/debug/", "x/debug/y/"}, walk: []string{"debug/", "x/"}},
		{name: "exclude end-anchored", exclude: `^debug/$`,
			walk: []string{"debug/"}},
		{name: "exclude word boundary", exclude: `^debug\b`,
			walk: []string{"debug/"}},
		{name: "exclude file names only", exclude: `-debuginfo-`,
			walk: []string{"bash/", "bash-debuginfo/"}},
		{name: "both", include: `^bash/`, exclude: `/noarch/`,
			skip: []string{"zsh/", "bash/1/1/noarch/"}, walk: []string{"bash/1/1/x86_64/"}},
	}
	tails := []string{"x.rpm", "1.0/1/x86_64/bash-1.0-1.x86_64.rpm", "debug/a.rpm", "noarch/b.noarch.rpm",
		"x86_64/c.x86_64.rpm", "-debuginfo-1.rpm", "\n.rpm", "a b.rpm", "_.rpm"}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := &Source{Include: tc.include, Exclude: tc.exclude}
			skip, err := src.dirFilter()
			if err != nil {
				t.Fatal(err)
			}
			keep, err := src.filter()
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range tc.skip {
				if !skip(d) {
					t.Errorf("%s walked, want skipped", d)
				}
			}
			for _, d := range tc.walk {
				if skip(d) {
					t.Errorf("%s skipped, want walked", d)
				}
			}
			// Soundness over every directory any case names.
			for _, other := range cases {
				for _, d := range append(append([]string{}, other.skip...), other.walk...) {
					if !skip(d) {
						continue
					}
					for _, tail := range tails {
						if keep(d + tail) {
							t.Errorf("%s skipped, but %s below it is selected", d, d+tail)
						}
					}
				}
			}
		})
	}
}

// FuzzDirFilter: a directory the patterns let the crawl skip never holds
// a file they select, whatever the patterns and names.
func FuzzDirFilter(f *testing.F) {
	for _, s := range [][4]string{
		{`^(glibc|bash)/`, ``, `zsh/`, `x.rpm`},
		{`^bash\b`, ``, `bashful/`, `x.rpm`},
		{``, `^debug/`, `debug/`, `x/y.rpm`},
		{``, `^debug/$`, `debug/`, `x.rpm`},
		{`(((?m:^)\z)+)+`, ``, `a`, "aaaa\n"}, // a match that starts after the directory's path
		{`(?i)^BASH/`, `/noarch/`, `bash/1/1/noarch/`, `b.noarch.rpm`},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, include, exclude, dir, tail string) {
		if dir == "" || len(include)+len(exclude)+len(dir)+len(tail) > 200 {
			return
		}
		src := &Source{Include: include, Exclude: exclude}
		keep, err := src.filter()
		if err != nil {
			return
		}
		skip, err := src.dirFilter()
		if err != nil {
			t.Fatalf("filter compiles but dirFilter fails: %v", err)
		}
		if skip(dir) && keep(dir+tail) {
			t.Fatalf("include %q exclude %q: %q skipped, but %q below it is selected", include, exclude, dir, dir+tail)
		}
	})
}

// TestTreeIncludeExclude syncs a Koji tree with include and exclude
// patterns: the packages they select are mirrored, and directories that
// cannot hold one are not even listed.
func TestTreeIncludeExclude(t *testing.T) {
	for _, tc := range []struct {
		name, include, exclude string
		listed, notListed      []string // directories
	}{
		{name: "include packages", include: `^(crashme|greeter)/`,
			listed: []string{"/packages/crashme/", "/packages/greeter/1.1/1/x86_64/"}, notListed: []string{"/packages/counter/"}},
		{name: "include a version", include: `^crashme/1\.1/`,
			listed: []string{"/packages/crashme/1.1/1/"}, notListed: []string{"/packages/crashme/1.0/", "/packages/greeter/"}},
		{name: "include by file name", include: `-debuginfo-`,
			listed: []string{"/packages/counter/1.0/1/x86_64/"}},
		{name: "exclude a package", exclude: `^counter/`,
			listed: []string{"/packages/crashme/"}, notListed: []string{"/packages/counter/"}},
		{name: "exclude end-anchored", exclude: `^counter/$`,
			listed: []string{"/packages/counter/", "/packages/counter/1.0/1/x86_64/"}},
		{name: "exclude by file name", exclude: `-debug(info|source)-`,
			listed: []string{"/packages/counter/1.0/1/x86_64/"}},
		{name: "both", include: `^(counter|greeter)/`, exclude: `/1\.0/`,
			listed: []string{"/packages/greeter/1.1/1/x86_64/"}, notListed: []string{"/packages/greeter/1.0/", "/packages/crashme/"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := kojiTree(t)
			srv := fixtures.NewServer(tree)
			url := srv.Start(t) + "/packages/"
			m := newTestMirror(t, "")
			if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url, Kind: KindTree, Include: tc.include, Exclude: tc.exclude}); err != nil {
				t.Fatal(err)
			}
			res := m.sync(t, "koji")
			if !res.OK() {
				t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
			}
			// What the patterns select, by the regexp package itself.
			inc, exc := regexp.MustCompile(tc.include), regexp.MustCompile(tc.exclude)
			nevras := map[string]bool{}
			for name := range tree {
				rel := strings.TrimPrefix(name, "packages/")
				if inc.MatchString(rel) && (tc.exclude == "" || !exc.MatchString(rel)) {
					nevras[strings.TrimSuffix(path.Base(name), ".rpm")] = true
				}
			}
			if len(nevras) == 0 {
				t.Fatal("the case selects no package: it tests nothing")
			}
			if res.New != len(nevras) {
				t.Errorf("%d packages mirrored, want %d", res.New, len(nevras))
			}
			ids, want := expectedLines(t, func(e fixtures.ELFFile) bool { return nevras[e.NEVRA] })
			diffLines(t, m.lookupLines(t, ids), want)
			for _, d := range tc.listed {
				if srv.Requests(d) == 0 {
					t.Errorf("%s not listed", d)
				}
			}
			for _, d := range tc.notListed {
				if n := srv.Requests(d); n != 0 {
					t.Errorf("%s listed %d times, want skipped", d, n)
				}
			}
		})
	}
}

func TestParseChecksums(t *testing.T) {
	a, b := strings.Repeat("a", 64), strings.Repeat("B", 64)
	lb := strings.ToLower(b)
	for _, tc := range []struct {
		name, in string
		want     map[string]string
	}{
		{"BSD", "SHA256 (x.rpm) = " + a + "\n", map[string]string{"x.rpm": a}},
		{"GNU", a + "  x.rpm\n" + b + " *y.rpm\n", map[string]string{"x.rpm": a, "y.rpm": lb}},
		{"clear-signed with CRLF", "-----BEGIN PGP SIGNED MESSAGE-----\r\nHash: SHA256\r\n\r\n# x.rpm: 12 bytes\r\n" +
			"SHA256 (x.rpm) = " + a + "\r\n- SHA256 (-y.rpm) = " + b + "\r\n-----BEGIN PGP SIGNATURE-----\r\n\r\niQIz\r\n-----END PGP SIGNATURE-----\r\n",
			map[string]string{"x.rpm": a, "-y.rpm": lb}},
		{"names with spaces and parentheses", a + "  a b.rpm\nSHA256 (c (1).rpm) = " + b + "\n", map[string]string{"a b.rpm": a, "c (1).rpm": lb}},
		{"GNU escaped name", "\\" + a + "  a\\\\b\\nc.rpm\n", map[string]string{"a\\b\nc.rpm": a}},
		{"./ prefix", a + "  ./x.rpm\n", map[string]string{"x.rpm": a}},
		{"ignored", "SHA512 (x.rpm) = " + strings.Repeat("c", 128) + "\n" + // another algorithm
			"SHA256 (y.rpm) = " + a[:63] + "\n" + // short
			"SHA256 (z.rpm) = " + strings.Repeat("g", 64) + "\n" + // not hex
			a + "  sub/w.rpm\n" + // another directory
			a + " v.rpm\n" + // one space
			"MD5 (u.rpm) = d41d8cd98f00b204e9800998ecf8427e\n",
			map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := parseChecksums([]byte(tc.in))
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// FuzzParseChecksums: whatever a checksum file holds, what comes out is a
// 64-digit lower-case hex sum per plain file name.
func FuzzParseChecksums(f *testing.F) {
	a := strings.Repeat("a", 64)
	f.Add([]byte("SHA256 (x.rpm) = " + a + "\n"))
	f.Add([]byte("- SHA256 (x.rpm) = " + a + "\r\n"))
	f.Add([]byte(a + " *x.rpm\n\\" + a + "  a\\nb.rpm\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		for name, sum := range parseChecksums(b) {
			if name == "" || strings.Contains(name, "/") || len(sum) != 64 || strings.ToLower(sum) != sum {
				t.Fatalf("%q: %q", name, sum)
			}
			if _, err := hex.DecodeString(sum); err != nil {
				t.Fatalf("%q: %q: %v", name, sum, err)
			}
		}
	})
}

// TestTreeChecksums: a CHECKSUM or SHA256SUMS file beside the packages is
// what they are verified by; a package that does not match it fails and is
// not stored, and the rest of the sync lands.
func TestTreeChecksums(t *testing.T) {
	const dir = "packages/crashme/1.0/1/x86_64/"
	bsd := func(sums map[string]string) []byte {
		var b strings.Builder
		b.WriteString("-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\n")
		for name, sum := range sums {
			fmt.Fprintf(&b, "# %s: 1 bytes\nSHA256 (%s) = %s\n", name, name, sum)
		}
		b.WriteString("-----BEGIN PGP SIGNATURE-----\n\niQIzBAEBCAAdFiEE\n-----END PGP SIGNATURE-----\n")
		return []byte(b.String())
	}
	gnu := func(sums map[string]string) []byte {
		var b strings.Builder
		for name, sum := range sums {
			fmt.Fprintf(&b, "%s *%s\n", sum, name)
		}
		return []byte(b.String())
	}
	for _, tc := range []struct {
		name, file string
		format     func(map[string]string) []byte
		bad        string // a file whose sum is made wrong
	}{
		{name: "CHECKSUM", file: "CHECKSUM", format: bsd},
		{name: "SHA256SUMS", file: "SHA256SUMS", format: gnu},
		{name: "x86_64-CHECKSUM mismatch", file: "x86_64-CHECKSUM", format: bsd, bad: "crashme-1.0-1.x86_64.rpm"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tree := kojiTree(t)
			sums := map[string]string{}
			for name, f := range tree {
				if rest, ok := strings.CutPrefix(name, dir); ok {
					s := sha256.Sum256(f.Data)
					sums[rest] = hex.EncodeToString(s[:])
				}
			}
			if len(sums) != 3 {
				t.Fatalf("%d packages in %s, want 3", len(sums), dir)
			}
			want := maps.Clone(sums)
			if tc.bad != "" {
				sums[tc.bad] = strings.Repeat("0", 64)
			}
			tree[dir+tc.file] = &fstest.MapFile{Data: tc.format(sums)}
			m, srv := newKojiMirror(t, tree)
			res := m.sync(t, "koji")
			if n := srv.Requests("/" + dir + tc.file); n != 1 {
				t.Errorf("%s read %d times, want once", tc.file, n)
			}
			total := len(fixtures.Packages(t))
			if tc.bad == "" {
				if !res.OK() || res.New != total {
					t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
				}
			} else {
				if len(res.Failed) != 1 || !strings.HasSuffix(res.Failed[0].Location, tc.bad) || !errors.Is(res.Failed[0], ErrChecksum) {
					t.Fatalf("failed: %v, want %s's checksum mismatch", res.Failed, tc.bad)
				}
				if res.New != total-1 {
					t.Errorf("%d packages mirrored, want the other %d", res.New, total-1)
				}
			}
			for _, p := range fixtures.Packages(t) {
				n, err := index.ParseNEVRA(p.NEVRA)
				if err != nil {
					t.Fatal(err)
				}
				pkg, err := m.idx.Package(n)
				if p.File == tc.bad {
					if !errors.Is(err, index.ErrNotFound) {
						t.Errorf("%s, which does not match %s, was stored (%v)", p.File, tc.file, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", p.NEVRA, err)
				}
				verifiedBy := "(payload)"
				if sum, ok := want[p.File]; ok {
					verifiedBy = "sha256:" + sum
				}
				if !strings.HasSuffix(pkg.Checksum, verifiedBy) {
					t.Errorf("%s verified by %q, want %q", p.File, pkg.Checksum, verifiedBy)
				}
			}
		})
	}
}

// TestTreeAliases: a package listed under two URLs (a latest/ directory
// beside the versions) is fetched once, whether both appear in one sync or
// the alias appears later.
func TestTreeAliases(t *testing.T) {
	const real, alias = "packages/crashme/1.1/1/x86_64/", "packages/crashme/latest/x86_64/"
	withAlias := func(t *testing.T) (fstest.MapFS, []string) {
		tree := kojiTree(t)
		var names []string
		for name, f := range kojiTree(t) {
			if rest, ok := strings.CutPrefix(name, real); ok {
				tree[alias+rest] = f
				names = append(names, rest)
			}
		}
		if len(names) != 3 {
			t.Fatalf("%d packages in %s, want 3", len(names), real)
		}
		return tree, names
	}
	total := len(fixtures.Packages(t))
	t.Run("in one sync", func(t *testing.T) {
		tree, names := withAlias(t)
		m, srv := newKojiMirror(t, tree)
		if res := m.sync(t, "koji"); !res.OK() || res.New != total {
			t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
		}
		for _, n := range names {
			if got := srv.Requests("/"+real+n) + srv.Requests("/"+alias+n); got != 1 {
				t.Errorf("%s fetched %d times under its two URLs, want once", n, got)
			}
		}
		srv.ResetRequests()
		if res := m.sync(t, "koji"); !res.OK() || res.New != 0 || res.Listed != total+len(names) {
			t.Fatalf("second sync: %s %v", res.Summary(), res.Failed)
		}
		for _, n := range names {
			if got := srv.Requests("/"+real+n) + srv.Requests("/"+alias+n); got != 0 {
				t.Errorf("unchanged sync fetched %s %d times", n, got)
			}
		}
	})
	t.Run("later", func(t *testing.T) {
		m, srv := newKojiMirror(t, kojiTree(t))
		if res := m.sync(t, "koji"); !res.OK() || res.New != total {
			t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
		}
		tree, names := withAlias(t)
		srv.SetRoot(tree)
		srv.ResetRequests()
		if res := m.sync(t, "koji"); !res.OK() || res.New != 0 {
			t.Fatalf("sync with the alias: %s %v", res.Summary(), res.Failed)
		}
		if srv.Requests("/"+alias) != 1 {
			t.Fatalf("%s not listed: the test tests nothing", alias)
		}
		for _, n := range names {
			if got := srv.Requests("/" + alias + n); got != 0 {
				t.Errorf("%s fetched again under the alias", n)
			}
		}
	})
}

// TestTreeEndlessAndLoops: a server whose every directory links to a
// deeper one, to its parent and to the root ends the walk at the depth
// bound, reports it, and does not hang.
func TestTreeEndlessAndLoops(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<html><body><a href="../">Parent</a> <a href="/">root</a> <a href="/tree/">top</a> <a href="deeper/">deeper/</a> <a href="http://elsewhere.invalid/x/">x</a></body></html>`)
	})
	srv := httptest.NewServer(h)
	defer srv.Close()
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "endless", URL: srv.URL + "/tree/", Kind: KindTree}); err != nil {
		t.Fatal(err)
	}
	res := m.syncGuarded(t, "endless")
	if len(res.Failed) == 0 || !strings.Contains(res.Failed[0].Error(), "bounded") {
		t.Fatalf("the depth bound was not reported: %v", res.Failed)
	}
}

// BenchmarkUnchangedTreeSync: 1,000 packages in 100 directories, synced
// once, then again unchanged (the floor: under 1 s).
func BenchmarkUnchangedTreeSync(b *testing.B) {
	rpm, err := os.ReadFile(fixtures.Path("repo", "Packages", "crashme-1.0-1.x86_64.rpm"))
	if err != nil {
		b.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for d := range 100 {
		for f := range 10 {
			fsys[fmt.Sprintf("packages/pkg%03d/1.0/1/x86_64/copy%d-crashme-1.0-1.x86_64.rpm", d, f)] = &fstest.MapFile{Data: rpm}
		}
	}
	srv := fixtures.NewServer(fsys)
	url := srv.Start(b) + "/packages/"
	m := newTestMirror(b, "")
	if _, err := m.Add(context.Background(), Source{Name: "big", URL: url, Kind: KindTree}); err != nil {
		b.Fatal(err)
	}
	if res := m.sync(b, "big"); !res.OK() || res.Listed != 1000 {
		b.Fatalf("first sync: %s", res.Summary())
	}
	b.ResetTimer()
	for range b.N {
		res := m.sync(b, "big")
		if !res.OK() || res.New != 0 || res.Listed != 1000 {
			b.Fatalf("unchanged sync: %s", res.Summary())
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()/float64(b.N), "s/sync")
}

// TestTreeLinksOtherSources: a Koji tree over packages a yum source has
// already brought in links them by file name instead of fetching them;
// only packages whose file name does not give their NEVRA (an epoch) are
// downloaded, and the tree source lists every package either way.
func TestTreeLinksOtherSources(t *testing.T) {
	tree := kojiTree(t)
	srv := fixtures.NewServer(tree)
	url := srv.Start(t) + "/packages/"
	m := newTestMirror(t, "")
	m.add(t, "fx", fixtures.Path("repo"))
	if res := m.sync(t, "fx"); !res.OK() {
		t.Fatalf("yum sync: %s", res.Summary())
	}
	if _, err := m.Add(context.Background(), Source{Name: "koji", URL: url, Kind: KindTree}); err != nil {
		t.Fatal(err)
	}
	epoch := 0
	for _, p := range fixtures.Packages(t) {
		if strings.Contains(p.NEVRA, ":") {
			epoch++
		}
	}
	if epoch == 0 || epoch == len(fixtures.Packages(t)) {
		t.Fatalf("%d of the fixture packages have an epoch; the test needs some with and some without", epoch)
	}
	srv.ResetRequests()
	res := m.sync(t, "koji")
	if !res.OK() || res.Linked != len(fixtures.Packages(t))-epoch || res.New != epoch || res.BytesStored != 0 {
		t.Fatalf("tree sync: %s, want %d linked, %d fetched and nothing stored", res.Summary(), len(fixtures.Packages(t))-epoch, epoch)
	}
	rpms := 0
	for name := range tree {
		rpms += srv.Requests("/" + name)
	}
	if rpms != epoch {
		t.Errorf("%d packages downloaded, want the %d whose file name has no epoch", rpms, epoch)
	}
	if err := m.Remove("fx"); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := m.idx.SourcePackages("koji", func(index.NEVRA) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != len(fixtures.Packages(t)) {
		t.Errorf("koji lists %d packages, want all %d", n, len(fixtures.Packages(t)))
	}
	if again := m.sync(t, "koji"); !again.OK() || again.New+again.Linked != 0 {
		t.Errorf("second tree sync: %s", again.Summary())
	}
}
