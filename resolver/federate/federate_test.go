package federate

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// self is this test binary's build-id and bytes: a real ELF file to serve.
func self(t *testing.T) (id string, body []byte) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	body, err = os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	raw, err := buildID(f)
	if err != nil {
		t.Skipf("the test binary carries no GNU build-id: %v", err)
	}
	return raw, body
}

// TestFetchCachesAndChecks: the first upstream that has the file wins;
// the answer is cached (a second Fetch asks nobody); an upstream that
// sends another build-id's file is passed over; a miss everywhere is
// ErrMiss, remembered.
func TestFetchCachesAndChecks(t *testing.T) {
	id, body := self(t)
	var asked atomic.Int32
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		w.Write([]byte("\x7fELF but not really"))
	}))
	defer liar.Close()
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		if r.URL.Path != "/buildid/"+id+"/executable" {
			http.NotFound(w, r)
			return
		}
		if h := r.Header.Get("X-Forwarded-For"); h != "10.0.0.1, 127.0.0.9" {
			t.Errorf("X-Forwarded-For %q, want the hops so far and this one", h)
		}
		w.Write(body)
	}))
	defer good.Close()
	c, err := New(Config{URLs: []string{liar.URL, good.URL}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	path, cached, err := c.Fetch(ctx, id, "executable", "10.0.0.1", "127.0.0.9")
	if err != nil || cached {
		t.Fatalf("first fetch: %v (cached %v)", err, cached)
	}
	if b, _ := os.ReadFile(path); len(b) != len(body) {
		t.Fatalf("cached %d bytes, want %d", len(b), len(body))
	}
	n := asked.Load()
	if _, cached, err := c.Fetch(ctx, id, "executable", "", "127.0.0.9"); err != nil || !cached || asked.Load() != n {
		t.Fatalf("second fetch: %v, cached %v, %d more requests", err, cached, asked.Load()-n)
	}
	if _, _, err := c.Fetch(ctx, id, "debuginfo", "", "127.0.0.9"); !errors.Is(err, ErrMiss) {
		t.Fatalf("a file nobody has: %v", err)
	}
	n = asked.Load()
	if _, _, err := c.Fetch(ctx, id, "debuginfo", "", "127.0.0.9"); !errors.Is(err, ErrMiss) || asked.Load() != n {
		t.Fatalf("a known miss asked again: %v, %d requests", err, asked.Load()-n)
	}
	if _, _, err := c.Fetch(ctx, "../etc", "executable", "", ""); err == nil {
		t.Fatal("a malformed build-id was fetched")
	}
}

// TestLoopEnds: a server that is its own upstream (the shortest loop)
// answers a miss after MaxHops hops, not forever.
func TestLoopEnds(t *testing.T) {
	var hops atomic.Int32
	var c *Client
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hops.Add(1)
		id := strings.Split(strings.TrimPrefix(r.URL.Path, "/buildid/"), "/")[0]
		path, _, err := c.Fetch(r.Context(), id, "executable", r.Header.Get("X-Forwarded-For"), "127.0.0.1")
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		http.ServeFile(w, r, path)
	}))
	defer srv.Close()
	var err error
	c, err = New(Config{URLs: []string{srv.URL}, Dir: t.TempDir(), MaxHops: 5, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = c.Fetch(context.Background(), "0123456789abcdef", "executable", "", "127.0.0.1")
	if !errors.Is(err, ErrMiss) {
		t.Fatalf("fetch through a loop: %v, want a miss", err)
	}
	// The k-th request arrives with k hops; the fifth is not sent on.
	if n := hops.Load(); n != 5 {
		t.Errorf("%d requests went round the loop, want MaxHops = 5", n)
	}
}

// TestEvict: the cache keeps at most MaxBytes, oldest first out.
func TestEvict(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{URLs: []string{"http://127.0.0.1:1"}, Dir: dir, MaxBytes: 250})
	if err != nil {
		t.Fatal(err)
	}
	for i, name := range []string{"a.executable", "b.executable", "c.executable"} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, make([]byte, 100), 0o644)
		at := time.Now().Add(time.Duration(i-3) * time.Minute)
		os.Chtimes(p, at, at)
	}
	c.evict()
	if _, err := os.Stat(filepath.Join(dir, "a.executable")); err == nil {
		t.Error("the oldest file survived past MaxBytes")
	}
	for _, name := range []string{"b.executable", "c.executable"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s went: %v", name, err)
		}
	}
}

// TestFetchOrigin: the worker's fetch names the upstream that answered
// (the second, after the first's 404), again when the file comes from
// the cache, and "cache" for a file a previous client cached.
func TestFetchOrigin(t *testing.T) {
	id, body := self(t)
	empty := httptest.NewServer(http.NotFoundHandler())
	defer empty.Close()
	hops := make(chan string, 1)
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case hops <- r.Header.Get("X-Forwarded-For"):
		default:
		}
		w.Write(body)
	}))
	defer good.Close()
	dir := t.TempDir()
	c, err := New(Config{URLs: []string{empty.URL, good.URL}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		path, from, err := c.FetchOrigin(context.Background(), id, "executable")
		if err != nil || from != good.URL {
			t.Fatalf("FetchOrigin: %q from %q, %v; want it from %s", path, from, err, good.URL)
		}
	}
	if h := <-hops; h != "127.0.0.1" {
		t.Errorf("X-Forwarded-For %q, want one hop", h)
	}
	again, err := New(Config{URLs: []string{good.URL}, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, from, err := again.FetchOrigin(context.Background(), id, "executable"); err != nil || from != "cache" {
		t.Errorf("a new client over the same cache: from %q, %v; want \"cache\"", from, err)
	}
	if _, _, err := c.FetchOrigin(context.Background(), "00ff", "debuginfo"); !errors.Is(err, ErrMiss) {
		t.Errorf("an id nobody has: %v, want ErrMiss", err)
	}
}
