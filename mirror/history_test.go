package mirror

import (
	"context"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// TestSyncHistory: each sync appends one record to the source's history,
// saying what it ingested and fetched and the source's totals after it;
// a failed sync is recorded with its error; the history survives the
// index being closed and opened again, and keeps at most MaxHistory
// records, the newest.
func TestSyncHistory(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo-v1"))
	url := srv.Start(t)
	dir := t.TempDir()
	m := newTestMirror(t, dir)
	m.add(t, "fx", url)
	first := m.sync(t, "fx")
	srv.SetRoot(fixtures.FS("repo-v2"))
	second := m.sync(t, "fx")
	srv.Inject("/repodata/repomd.xml", fixtures.Status(500))
	third := m.sync(t, "fx")
	if !first.OK() || !second.OK() || third.Err == nil {
		t.Fatalf("syncs: %s / %s / %s", first.Summary(), second.Summary(), third.Summary())
	}
	src, err := m.Source("fx")
	if err != nil {
		t.Fatal(err)
	}
	h := src.State.History
	if len(h) != 3 {
		t.Fatalf("history has %d records, want 3: %+v", len(h), h)
	}
	for i, tt := range []struct {
		res    *Result
		result string
	}{{first, "ok"}, {second, "ok"}, {third, "failed"}} {
		r := h[i]
		if r.Result != tt.result || r.New != tt.res.New || r.BytesFetched != tt.res.BytesFetched || r.BytesStored != tt.res.BytesStored ||
			r.Duration != tt.res.Duration || r.Start.IsZero() {
			t.Errorf("record %d = %+v, want %s of %s", i, r, tt.result, tt.res.Summary())
		}
	}
	if h[0].New == 0 || h[1].New == 0 || h[1].TotalStored <= h[0].TotalStored || h[1].TotalFetched != h[0].TotalFetched+second.BytesFetched {
		t.Errorf("totals do not grow with v2: %+v", h)
	}
	if h[2].Error == "" || h[2].TotalStored != h[1].TotalStored {
		t.Errorf("the failed sync's record: %+v", h[2])
	}
	if !h[0].Start.Before(h[1].Start) && !h[0].Start.Equal(h[1].Start) {
		t.Errorf("records out of order: %v, %v", h[0].Start, h[1].Start)
	}

	// Closed and opened again: the history is there.
	if err := m.idx.Close(); err != nil {
		t.Fatal(err)
	}
	m = newTestMirror(t, dir)
	src, err = m.Source("fx")
	if err != nil || len(src.State.History) != 3 || src.State.History[1].TotalStored != h[1].TotalStored {
		t.Fatalf("after reopening: %v %+v", err, src)
	}

	// Bounded: the failing syncs are quick; the oldest records go.
	for range MaxHistory {
		if _, err := m.Sync(context.Background(), "fx", nil); err != nil {
			t.Fatal(err)
		}
	}
	src, err = m.Source("fx")
	if err != nil {
		t.Fatal(err)
	}
	if n := len(src.State.History); n != MaxHistory {
		t.Fatalf("history has %d records, want the bound %d", n, MaxHistory)
	}
	for _, r := range src.State.History {
		if r.Result != "failed" {
			t.Fatalf("an old record stayed: %+v", r)
		}
	}
}
