package mirror

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/blob/s3blob"
)

// requests counts the requests of an object store client.
type requests struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *requests) RoundTrip(req *http.Request) (*http.Response, error) {
	r.mu.Lock()
	r.n[req.Method]++
	r.mu.Unlock()
	return http.DefaultTransport.RoundTrip(req)
}

func (r *requests) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.n
	r.n = map[string]int{}
	return n
}

// TestUnchangedSyncAsksStoreNothing: with blobs in an object store, a
// sync of a repository that has not changed since the last sync makes no
// request to the store, even from a process that has just started (no
// blob known): it keeps the counts the last sync left (which stat every
// blob of the source, a HEAD each).
func TestUnchangedSyncAsksStoreNothing(t *testing.T) {
	srv := servers.S3(t)
	reqs := &requests{n: map[string]int{}}
	store, err := s3blob.Open(s3blob.Config{Bucket: "blobs", Endpoint: srv.Endpoint, Region: srv.Region,
		AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Transport: reqs})
	if err != nil {
		t.Fatal(err)
	}
	if err := store.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	open := func() *Mirror {
		idx, err := index.Open(filepath.Join(dir, "index"), index.Options{})
		if err != nil {
			t.Fatal(err)
		}
		pool, err := blob.Open(filepath.Join(dir, "blobs"), blob.Config{NoSync: true, Remote: store})
		if err != nil {
			t.Fatal(err)
		}
		m, err := New(idx, pool, Config{Workers: 2})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { idx.Close() })
		return m
	}
	m := open()
	if _, err := m.Add(context.Background(), Source{Name: "fx", URL: fixtures.Path("repo")}); err != nil {
		t.Fatal(err)
	}
	res, err := m.Sync(context.Background(), "fx", nil)
	if err != nil || res.Err != nil || res.New == 0 {
		t.Fatalf("first sync: %+v, %v", res, err)
	}
	state := func() State {
		t.Helper()
		srcs, err := m.Sources()
		if err != nil || len(srcs) != 1 {
			t.Fatalf("sources: %v, %v", srcs, err)
		}
		return srcs[0].State
	}
	before := state()
	if before.BytesStored == 0 {
		t.Fatalf("first sync counted no bytes stored: %+v", before)
	}
	if got := reqs.take(); got[http.MethodPut] == 0 {
		t.Fatalf("first sync put nothing in the store: %v", got)
	}
	m.idx.Close()

	m = open() // a restarted process: no blob known to be in the store
	res, err = m.Sync(context.Background(), "fx", nil)
	if err != nil || res.Err != nil || !res.Unchanged {
		t.Fatalf("second sync: %+v, %v; want unchanged", res, err)
	}
	if got := reqs.take(); len(got) != 0 {
		t.Errorf("an unchanged sync made requests %v to the object store, want none", got)
	}
	after := state()
	if after.BytesStored != before.BytesStored || after.Versions != before.Versions || after.Packages != before.Packages {
		t.Errorf("counts after the unchanged sync %+v, want the first sync's %+v", after, before)
	}
}
