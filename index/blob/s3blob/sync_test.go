package s3blob

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/mirror"
)

// down answers every request with a connection error while on.
type down struct{ on atomic.Bool }

func (d *down) RoundTrip(r *http.Request) (*http.Response, error) {
	if d.on.Load() {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, &netErr{}
	}
	return http.DefaultTransport.RoundTrip(r)
}

type netErr struct{}

func (*netErr) Error() string   { return "connect: connection refused (the object store is down)" }
func (*netErr) Timeout() bool   { return false }
func (*netErr) Temporary() bool { return true }

// TestSyncWithStoreDown: a sync while the object store is unreachable
// fails its packages, saying why, and indexes none of them (no index
// entry ever names a blob the store lacks); once the store is back the
// next sync brings them all, and every blob the index names is there.
func TestSyncWithStoreDown(t *testing.T) {
	tr := &down{}
	s := newStore(t, "", tr, 2)
	idx, _, m := storeMirror(t, s)
	ctx := context.Background()
	if _, err := m.Add(ctx, mirror.Source{Name: "fx", URL: fixtures.Path("repo")}); err != nil {
		t.Fatal(err)
	}
	tr.on.Store(true)
	res, err := m.Sync(ctx, "fx", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || len(res.Failed) == 0 || !strings.Contains(res.Failed[0].Error(), "object store is down") {
		t.Fatalf("sync with the store down: %s %v", res.Summary(), res.Failed)
	}
	if c, err := idx.Counts(); err != nil || c.Packages != 0 {
		t.Fatalf("%d packages indexed while the store was down (%v)", c.Packages, err)
	}
	tr.on.Store(false)
	res, err = m.Sync(ctx, "fx", nil)
	if err != nil || !res.OK() {
		t.Fatalf("sync with the store back: %v %s %v", err, res.Summary(), res.Failed)
	}
	want := len(fixtures.Packages(t))
	if c, err := idx.Counts(); err != nil || int(c.Packages) != want {
		t.Fatalf("%d packages indexed, want %d (%v)", c.Packages, want, err)
	}
	missing := 0
	if err := idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if !f.Blob.IsZero() {
				if ok, err := s.Has(ctx, f.Blob); err != nil || !ok {
					missing++
				}
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if missing != 0 {
		t.Errorf("%d blobs the index names are not in the object store", missing)
	}
}

// TestGCOnStore: once no source lists the packages, gc removes their
// blobs from the object store (its plan lists them from the store), and
// nothing else.
func TestGCOnStore(t *testing.T) {
	s := newStore(t, "", nil, 0)
	idx, pool, m := storeMirror(t, s)
	ctx := context.Background()
	for _, r := range []string{"repo-v1", "repo-v2"} {
		if _, err := m.Add(ctx, mirror.Source{Name: r, URL: fixtures.Path(r)}); err != nil {
			t.Fatal(err)
		}
		if res, err := m.Sync(ctx, r, nil); err != nil || !res.OK() {
			t.Fatalf("sync %s: %v %v", r, err, res)
		}
	}
	count := func() int {
		n := 0
		if err := s.Walk(ctx, func(blob.Digest, int64, time.Time) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	all := count()
	if err := m.Remove("repo-v1"); err != nil {
		t.Fatal(err)
	}
	c := gc.New(idx, pool, func() ([]string, error) { return []string{"repo-v2"}, nil }, gc.Config{})
	plan, err := c.Plan(ctx, time.Now().Add(time.Hour)) // nothing is too fresh
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Execute(ctx, plan); err != nil {
		t.Fatal(err)
	}
	left := count()
	if left == 0 || left >= all {
		t.Fatalf("%d of %d blobs left in the store after gc of repo-v1's packages", left, all)
	}
	// What repo-v2's packages name is all still there.
	if err := idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if ok, err := s.Has(ctx, f.Blob); !f.Blob.IsZero() && (err != nil || !ok) {
				t.Errorf("%s %s: blob gone", p.NEVRA, f.Path)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("gc removed %d of %d blobs from the object store", all-left, all)
}

// storeMirror is a mirror on a fresh index whose pool keeps its blobs in s.
func storeMirror(t *testing.T, s *Store) (*index.Store, *blob.Pool, *mirror.Mirror) {
	t.Helper()
	dir := t.TempDir()
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	pool, err := blob.Open(filepath.Join(dir, "blobs"), blob.Config{Remote: s, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := mirror.New(idx, pool, mirror.Config{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	return idx, pool, m
}
