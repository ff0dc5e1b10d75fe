package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror/yum"
)

// serveDoc serves body (a metalink or mirror list) at /doc of a fixture
// server on loopback and returns its URL; set replaces it.
func serveDoc(t *testing.T, body []byte) (url string, set func([]byte)) {
	t.Helper()
	srv := fixtures.NewServer(fstest.MapFS{"doc": {Data: body}})
	return srv.Start(t) + "/doc", func(b []byte) { srv.SetRoot(fstest.MapFS{"doc": {Data: b}}) }
}

// refusedURL is a loopback URL nothing listens on.
func refusedURL(t *testing.T) string {
	hs := httptest.NewServer(http.NotFoundHandler())
	u := hs.URL
	hs.Close()
	return u
}

// TestMetalinkFailover: a metalink lists six mirrors of the fixture
// repository. The first by preference serves the right repomd.xml but
// dies in the middle of every package; the next refuses connections,
// answers 500, stalls on repomd.xml, serves another repository's
// repomd.xml; the last is good. The sync takes the metadata from the
// first, every package from the good one, and reports each broken
// mirror with why.
func TestMetalinkFailover(t *testing.T) {
	repomd := fixtures.Repomd(t, "repo")

	dying := fixtures.NewServer(fixtures.FS("repo"))
	dyingURL := dying.Start(t)
	dying.Inject("*.rpm", fixtures.Truncate(3000))
	failing := fixtures.NewServer(fixtures.FS("repo"))
	failingURL := failing.Start(t)
	failing.Inject("/repodata/repomd.xml", fixtures.Status(http.StatusInternalServerError))
	stalled := stallingServer(t, func(p string) bool { return p == "repodata/repomd.xml" }, 0)
	stale := fixtures.NewServer(fixtures.FS("repo-v1"))
	staleURL := stale.Start(t)
	good := fixtures.NewServer(fixtures.FS("repo"))
	goodURL := good.Start(t)
	refused := refusedURL(t)

	metalink, _ := serveDoc(t, fixtures.Metalink(repomd, nil,
		fixtures.MetalinkMirror{Base: goodURL, Preference: 10}, fixtures.MetalinkMirror{Base: staleURL, Preference: 20},
		fixtures.MetalinkMirror{Base: stalled.URL, Preference: 30}, fixtures.MetalinkMirror{Base: failingURL, Preference: 40},
		fixtures.MetalinkMirror{Base: refused, Preference: 50}, fixtures.MetalinkMirror{Base: dyingURL, Preference: 100}))
	m := newTestMirrorConfig(t, "", Config{Workers: 2, IdleTimeout: 300 * time.Millisecond})
	if _, err := m.Add(context.Background(), Source{Name: "ml", Metalink: metalink}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "ml")
	pkgs := fixtures.Packages(t)
	if !res.OK() || res.New != len(pkgs) {
		t.Fatalf("sync: %s, failed %v, mirrors failed %+v", res.Summary(), res.Failed, res.MirrorsFailed)
	}
	ids, want := expectedLines(t, nil)
	diffLines(t, m.lookupLines(t, ids), want)
	if res.Mirror != dyingURL+"/" {
		t.Fatalf("metadata from %q, want the first mirror by preference, %s", res.Mirror, dyingURL)
	}
	wantFailed := []struct{ url, says string }{
		{dyingURL, fmt.Sprintf("%d of %d packages failed, the first Packages/", len(pkgs), len(pkgs))},
		{refused, "connection refused"},
		{failingURL, "500"},
		{stalled.URL, ErrStalled.Error()},
		{staleURL, ErrMetalinkMismatch.Error()},
	}
	if len(res.MirrorsFailed) != len(wantFailed) {
		t.Fatalf("mirrors failed: %+v, want %d", res.MirrorsFailed, len(wantFailed))
	}
	for i, w := range wantFailed {
		f := res.MirrorsFailed[i]
		if f.URL != w.url+"/" || !strings.Contains(f.Reason, w.says) {
			t.Errorf("mirror failed %d: %s: %q, want %s saying %q", i, f.URL, f.Reason, w.url, w.says)
		}
	}
	if !strings.HasSuffix(res.MirrorsFailed[0].Reason, "; fetched again from "+goodURL+"/") {
		t.Errorf("the dying mirror's failure does not name the mirror failed over to: %q", res.MirrorsFailed[0].Reason)
	}
	for _, p := range pkgs {
		path := "/Packages/" + p.File
		if good.Requests(path) != 1 || dying.Requests(path) != 1 || stale.Requests(path) != 0 {
			t.Errorf("%s: %d requests to the good mirror, %d to the dying one, %d to the stale one; want 1, 1, 0",
				p.File, good.Requests(path), dying.Requests(path), stale.Requests(path))
		}
	}
	if good.Requests("/repodata/repomd.xml") != 1 {
		t.Errorf("the good mirror's repomd.xml asked %d times", good.Requests("/repodata/repomd.xml"))
	}
	for _, s := range []string{"from mirror " + dyingURL, "mirrors failed: " + dyingURL} {
		if !strings.Contains(res.Summary(), s) {
			t.Errorf("summary %q does not say %q", res.Summary(), s)
		}
	}
	src, err := m.Source("ml")
	if err != nil {
		t.Fatal(err)
	}
	if src.State.Mirror != res.Mirror || len(src.State.MirrorsFailed) != len(wantFailed) || !strings.HasPrefix(src.State.LastResult, "ok") || src.URL != "" || src.Kind != KindYum {
		t.Fatalf("source after the sync: %+v", src)
	}

	// Nothing changed: the next sync reads the metalink and one repomd.xml.
	dying.ResetRequests()
	again := m.sync(t, "ml")
	if !again.Unchanged || dying.TotalRequests() != 1 {
		t.Fatalf("second sync: %s, %d requests to the first mirror", again.Summary(), dying.TotalRequests())
	}
}

// TestMetalinkPackageTries: a package that fails on every mirror is asked
// of 3 of them, no more; the sync ends partial, listing each package with
// the last mirror's error, and each mirror tried.
func TestMetalinkPackageTries(t *testing.T) {
	var mirrors []fixtures.MetalinkMirror
	var servers []*fixtures.Server
	for i := range 4 {
		srv := fixtures.NewServer(fixtures.FS("repo"))
		srv.Inject("*.rpm", fixtures.Status(http.StatusBadGateway))
		servers = append(servers, srv)
		mirrors = append(mirrors, fixtures.MetalinkMirror{Base: srv.Start(t), Preference: 100 - i})
	}
	metalink, _ := serveDoc(t, fixtures.Metalink(fixtures.Repomd(t, "repo"), nil, mirrors...))
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "ml", Metalink: metalink}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "ml")
	pkgs := fixtures.Packages(t)
	if res.Err != nil || res.New != 0 || len(res.Failed) != len(pkgs) || !strings.Contains(res.Failed[0].Error(), "502") {
		t.Fatalf("sync: %s, failed %v", res.Summary(), res.Failed)
	}
	if len(res.MirrorsFailed) != 3 || !strings.Contains(res.MirrorsFailed[2].Reason, "packages failed, the first") ||
		strings.Contains(res.MirrorsFailed[2].Reason, "fetched again") {
		t.Fatalf("mirrors failed: %+v", res.MirrorsFailed)
	}
	for i, srv := range servers {
		want := 1
		if i == 3 {
			want = 0
		}
		if n := srv.Requests("/Packages/" + pkgs[0].File); n != want {
			t.Errorf("mirror %d asked %d times for %s, want %d", i, n, pkgs[0].File, want)
		}
	}
	src, _ := m.Source("ml")
	if !strings.HasPrefix(src.State.LastResult, "partial") || src.State.Repomd != "" {
		t.Fatalf("state: %+v", src.State)
	}
}

// TestMetalinkAlternate: a mirror that still serves an older repomd.xml,
// one of the metalink's alternates, is used; a newer one, listed nowhere,
// is not.
func TestMetalinkAlternate(t *testing.T) {
	v1 := fixtures.NewServer(fixtures.FS("repo-v1"))
	v1URL := v1.Start(t)
	v2 := fixtures.NewServer(fixtures.FS("repo-v2"))
	v2URL := v2.Start(t)
	metalink, _ := serveDoc(t, fixtures.Metalink(fixtures.Repomd(t, "repo"), [][]byte{fixtures.Repomd(t, "repo-dist"), fixtures.Repomd(t, "repo-v1")},
		fixtures.MetalinkMirror{Base: v2URL, Preference: 90}, fixtures.MetalinkMirror{Base: v1URL, Preference: 80}))
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "ml", Metalink: metalink}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "ml")
	if !res.OK() || res.Mirror != v1URL+"/" || res.New == 0 {
		t.Fatalf("sync: %s", res.Summary())
	}
	if len(res.MirrorsFailed) != 1 || res.MirrorsFailed[0].URL != v2URL+"/" || !strings.Contains(res.MirrorsFailed[0].Reason, "none of its 2 older versions matches") {
		t.Fatalf("mirrors failed: %+v", res.MirrorsFailed)
	}
	if v2.Requests("/repodata/repomd.xml") != 1 || v2.TotalRequests() != 1 {
		t.Fatalf("%d requests to the mirror with an unknown repomd.xml", v2.TotalRequests())
	}
	if ok, _ := m.idx.HasPackage(index.NEVRA{Name: "counter", Version: "1.0", Release: "1", Arch: "x86_64"}); !ok {
		t.Fatal("counter-1.0-1 from the older repository is not indexed")
	}
}

// TestMetalinkNoMirrorMatches: when no mirror serves a repomd.xml the
// metalink vouches for, the sync fails saying so, mirror by mirror, and
// indexes nothing; no package is asked for.
func TestMetalinkNoMirrorMatches(t *testing.T) {
	a := fixtures.NewServer(fixtures.FS("repo"))
	aURL := a.Start(t)
	b := fixtures.NewServer(fixtures.FS("repo-v1"))
	bURL := b.Start(t)
	metalink, _ := serveDoc(t, fixtures.Metalink(fixtures.Repomd(t, "repo-v2"), nil, fixtures.MetalinkMirror{Base: aURL, Preference: 50}, fixtures.MetalinkMirror{Base: bURL, Preference: 40}))
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "ml", Metalink: metalink}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "ml")
	if !errors.Is(res.Err, ErrNoMirror) || !errors.Is(res.Err, ErrMetalinkMismatch) {
		t.Fatalf("sync error %v, want ErrNoMirror and ErrMetalinkMismatch", res.Err)
	}
	for _, s := range []string{"2 of 2 mirrors tried", aURL + "/: ", bURL + "/: ", "the metalink says"} {
		if !strings.Contains(res.Err.Error(), s) {
			t.Errorf("error %q does not say %q", res.Err, s)
		}
	}
	if res.New != 0 || len(res.MirrorsFailed) != 2 {
		t.Fatalf("sync: %s, mirrors failed %+v", res.Summary(), res.MirrorsFailed)
	}
	for _, p := range fixtures.Packages(t) {
		n, err := index.ParseNEVRA(p.NEVRA)
		if err != nil {
			t.Fatal(err)
		}
		if ok, _ := m.idx.HasPackage(n); ok {
			t.Fatalf("%s indexed", n)
		}
	}
	if a.TotalRequests() != 1 || b.TotalRequests() != 1 {
		t.Fatalf("mirrors asked %d and %d times, want once each (repomd.xml)", a.TotalRequests(), b.TotalRequests())
	}
	src, _ := m.Source("ml")
	if !strings.HasPrefix(src.State.LastResult, "failed: "+ErrNoMirror.Error()) || src.State.Versions != 0 {
		t.Fatalf("state: %+v", src.State)
	}
}

// TestMirrorlist: a mirror list's mirrors are tried in order; the one
// answering 500 is reported, the packages come from the next.
func TestMirrorlist(t *testing.T) {
	failing := fixtures.NewServer(fixtures.FS("repo"))
	failingURL := failing.Start(t)
	failing.Inject("*-primary.xml.gz", fixtures.Status(http.StatusInternalServerError))
	good := fixtures.NewServer(fixtures.FS("repo"))
	goodURL := good.Start(t)
	list := "# repo = fixture arch = x86_64\n" + refusedURL(t) + "/\n\n" + failingURL + "\nrsync://127.0.0.1/repo/\n" + goodURL + "/\n"
	url, _ := serveDoc(t, []byte(list))
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "ml", Mirrorlist: url}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "ml")
	if !res.OK() || res.New != len(fixtures.Packages(t)) || res.Mirror != goodURL+"/" {
		t.Fatalf("sync: %s", res.Summary())
	}
	if len(res.MirrorsFailed) != 2 || !strings.Contains(res.MirrorsFailed[0].Reason, "connection refused") ||
		res.MirrorsFailed[1].URL != failingURL+"/" || !strings.Contains(res.MirrorsFailed[1].Reason, "500") {
		t.Fatalf("mirrors failed: %+v", res.MirrorsFailed)
	}
	ids, want := expectedLines(t, nil)
	diffLines(t, m.lookupLines(t, ids), want)
}

// TestMetalinkMalformed: a metalink or mirror list that is not one is
// refused when the source is added, saying where it went wrong; one that
// goes bad later fails the sync with that error.
func TestMetalinkMalformed(t *testing.T) {
	good := fixtures.NewServer(fixtures.FS("repo"))
	goodURL := good.Start(t)
	m := newTestMirror(t, "")
	for _, tt := range []struct {
		name, body, says string
		src              func(url string) Source
	}{
		{"html", "<html><body><h1>502 Bad Gateway</h1><hr></body>", "expected element type <metalink>", func(u string) Source { return Source{Name: "a", Metalink: u} }},
		{"truncated", string(fixtures.Metalink(fixtures.Repomd(t, "repo"), nil, fixtures.MetalinkMirror{Base: goodURL, Preference: 1})[:400]), "metalink at byte", func(u string) Source { return Source{Name: "b", Metalink: u} }},
		{"no mirrors", string(fixtures.Metalink(fixtures.Repomd(t, "repo"), nil)), "no http(s) URL", func(u string) Source { return Source{Name: "c", Metalink: u} }},
		{"list is html", "<html><body>Not Found</body></html>\n", "an HTML page?", func(u string) Source { return Source{Name: "d", Mirrorlist: u} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			url, _ := serveDoc(t, []byte(tt.body))
			_, err := m.Add(context.Background(), tt.src(url))
			if !errors.Is(err, ErrBadSource) || !errors.Is(err, yum.ErrFormat) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want ErrBadSource saying %q", err, tt.says)
			}
		})
	}
	url, set := serveDoc(t, fixtures.Metalink(fixtures.Repomd(t, "repo"), nil, fixtures.MetalinkMirror{Base: goodURL, Preference: 1}))
	if _, err := m.Add(context.Background(), Source{Name: "later", Metalink: url}); err != nil {
		t.Fatal(err)
	}
	set([]byte("<metalink><files><file name=\"repomd.xml\"><size>"))
	res := m.sync(t, "later")
	if !errors.Is(res.Err, yum.ErrFormat) || !strings.Contains(res.Err.Error(), url) || res.New != 0 || good.TotalRequests() != 0 {
		t.Fatalf("sync of a broken metalink: %v, %d new, %d requests to the mirror", res.Err, res.New, good.TotalRequests())
	}
}

// TestMetalinkSourceValidation: a source names one of a URL, a metalink
// and a mirror list; a metalink is an http(s) URL, of a yum source; over
// the API (public-only), its host must be public.
func TestMetalinkSourceValidation(t *testing.T) {
	m := newTestMirror(t, "")
	for _, tt := range []struct {
		name string
		src  Source
		err  error
		says string
	}{
		{"nothing", Source{Name: "a"}, ErrBadSource, "give a URL, a metalink or a mirror list"},
		{"url and metalink", Source{Name: "a", URL: "https://example.org/r/", Metalink: "https://example.org/ml"}, ErrBadSource, "not several"},
		{"tree", Source{Name: "a", Kind: KindTree, Metalink: "https://example.org/ml"}, ErrBadSource, "not of a tree source"},
		{"file", Source{Name: "a", Metalink: "file:///etc/metalink"}, ErrBadSource, "want an http(s) URL"},
		{"path", Source{Name: "a", Mirrorlist: "/etc/mirrorlist"}, ErrBadSource, "want an http(s) URL"},
		{"private", Source{Name: "a", Metalink: "http://127.0.0.1:1/ml", PublicOnly: true}, ErrPrivateAddress, "127.0.0.1"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Add(context.Background(), tt.src)
			if !errors.Is(err, tt.err) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want %v saying %q", err, tt.err, tt.says)
			}
		})
	}
}

// TestMetalinkPublicOnly: a public-only source (added over the API)
// reads its metalink and its mirrors through the public-only client: on
// loopback, the metalink is refused at the connection and no mirror is
// asked; a mirror is refused the same way.
func TestMetalinkPublicOnly(t *testing.T) {
	good := fixtures.NewServer(fixtures.FS("repo"))
	goodURL := good.Start(t)
	url, _ := serveDoc(t, fixtures.Metalink(fixtures.Repomd(t, "repo"), nil, fixtures.MetalinkMirror{Base: goodURL, Preference: 1}))
	m := newTestMirror(t, "")
	src := Source{Name: "marked", Metalink: url, Kind: KindYum, Schedule: DefaultSchedule, PublicOnly: true}
	if err := m.saveSource(&src); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "marked")
	if !errors.Is(res.Err, ErrPrivateAddress) || good.TotalRequests() != 0 {
		t.Fatalf("sync of a public-only metalink on loopback: %v, %d requests to the mirror", res.Err, good.TotalRequests())
	}
	_, _, _, err := m.readRepomd(withPublicOnly(context.Background()), &src, nil, goodURL+"/", nil, &Result{})
	if !errors.Is(err, ErrPrivateAddress) || good.TotalRequests() != 0 {
		t.Fatalf("public-only read of a loopback mirror: %v", err)
	}
}
