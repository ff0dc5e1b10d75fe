package gc

import (
	"bytes"
	"context"
	"maps"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/mirror"
)

type env struct {
	idx  *index.Store
	pool *blob.Pool
	m    *mirror.Mirror
}

func newEnv(t *testing.T, repos ...string) *env {
	t.Helper()
	s := fixturestore.New(t, repos...)
	return &env{idx: s.Index, pool: s.Pool, m: s.Mirror}
}

func (e *env) collector(cfg Config) *Collector {
	return New(e.idx, e.pool, func() ([]string, error) {
		srcs, err := e.m.Sources()
		var names []string
		for _, s := range srcs {
			names = append(names, s.Name)
		}
		return names, err
	}, cfg)
}

func (e *env) blobs(t *testing.T) int {
	n := 0
	if err := e.pool.Walk(func(blob.Digest, int64) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestRemovedSourceCollected: after `mirror remove v1`, gc removes the
// packages only v1 listed and the files only they used; v2's stay whole.
func TestRemovedSourceCollected(t *testing.T) {
	e := newEnv(t, "repo-v1", "repo-v2")
	before := e.blobs(t)
	c := e.collector(Config{})
	plan, err := c.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(plan.Items) != 0 {
		t.Fatalf("nothing removed yet, but gc plans %s", plan.Summary())
	}
	if err := e.m.Remove("repo-v1"); err != nil {
		t.Fatal(err)
	}
	plan, err = c.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	pkgs := 0
	for _, it := range plan.Items {
		if it.Kind == "package" {
			pkgs++
		}
	}
	if pkgs != 9 {
		t.Fatalf("plan removes %d packages, want v1's 9: %s", pkgs, plan.Summary())
	}
	if e.blobs(t) != before {
		t.Fatal("planning removed something")
	}
	freed, err := c.Execute(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if freed <= 0 || e.blobs(t) >= before {
		t.Fatalf("freed %d bytes, blobs %d -> %d", freed, before, e.blobs(t))
	}
	// v2 is whole: every build-id of a 1.1 package resolves, every file
	// it names is in the pool; no 1.0 build-id resolves.
	for _, f := range fixtures.ELFFiles(t) {
		id, _ := index.ParseBuildID(f.BuildID)
		_, err := e.idx.Lookup(id)
		v1 := !strings.Contains(f.NEVRA, "1.1-1")
		if v1 && err == nil {
			t.Errorf("%s of %s still resolves", f.BuildID, f.NEVRA)
		}
		if !v1 && err != nil {
			t.Errorf("%s of %s: %v", f.BuildID, f.NEVRA, err)
		}
	}
	if err := e.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if !f.Blob.IsZero() && !e.pool.Has(f.Blob) {
				t.Errorf("%s: %s lost its blob", p.NEVRA, f.Path)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	again, err := c.Plan(context.Background(), time.Now())
	if err != nil || len(again.Items) != 0 {
		t.Fatalf("second plan: %s %v", again.Summary(), err)
	}
}

// TestRunningSyncProtected: an unreferenced blob newer than the cutoff (a
// running sync's, not yet committed) is kept; an old one goes, and so do
// stale temp files and plain copies over budget.
func TestRunningSyncProtected(t *testing.T) {
	e := newEnv(t, "repo")
	orphan := []byte("written by a sync that has not committed yet")
	d := blob.Sum(orphan)
	if _, err := e.pool.Put(d, bytes.NewReader(orphan)); err != nil {
		t.Fatal(err)
	}
	c := e.collector(Config{PlainBudget: 1})
	cutoff := time.Now().Add(-time.Minute) // the running sync started a minute ago
	plan, err := c.Plan(context.Background(), cutoff)
	if err != nil {
		t.Fatal(err)
	}
	if plan.Protected != 1 || hasItem(plan, "blob", d.String()) {
		t.Fatalf("fresh orphan not protected: %s, protected %d", plan.Summary(), plan.Protected)
	}
	old := time.Now().Add(-2 * time.Hour)
	if err := os.Chtimes(e.pool.Path(d), old, old); err != nil {
		t.Fatal(err)
	}
	tmp, err := e.pool.TempFile("blob-*.tmp")
	if err != nil {
		t.Fatal(err)
	}
	tmp.Close()
	if err := os.Chtimes(tmp.Name(), old, old); err != nil {
		t.Fatal(err)
	}
	var referenced blob.Digest
	e.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if !f.Blob.IsZero() {
				referenced = f.Blob
			}
		}
		return nil
	})
	if _, err := e.pool.Plain(referenced); err != nil {
		t.Fatal(err)
	}
	plan, err = c.Plan(context.Background(), cutoff)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct {
		kind Kind
		name string
	}{{"blob", d.String()}, {"temp", tmp.Name()}, {"plain", referenced.String()}} {
		if !hasItem(plan, want.kind, want.name) {
			t.Errorf("plan lacks %s %s: %+v", want.kind, want.name, plan.Items)
		}
	}
	if _, err := c.Execute(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if e.pool.Has(d) || !e.pool.Has(referenced) {
		t.Fatal("executed the wrong things")
	}
	if _, err := os.Stat(tmp.Name()); !os.IsNotExist(err) {
		t.Fatal("stale temp file kept")
	}
}

func hasItem(p *Plan, kind Kind, name string) bool {
	for _, it := range p.Items {
		if it.Kind == kind && it.Name == name {
			return true
		}
	}
	return false
}

// planRemoved mirrors repo-v1, removes the source and plans a collection.
func planRemoved(t *testing.T) (*env, *Collector, *Plan) {
	t.Helper()
	e := newEnv(t, "repo-v1")
	if err := e.m.Remove("repo-v1"); err != nil {
		t.Fatal(err)
	}
	c := e.collector(Config{})
	plan, err := c.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return e, c, plan
}

// TestSyncBetweenPlanAndExecute: a source is removed and gc plans its
// packages away; before gc executes, another source syncs the same
// repository and links every package. Execute keeps them and their files,
// and counts what it left.
func TestSyncBetweenPlanAndExecute(t *testing.T) {
	e, c, plan := planRemoved(t)
	before := e.blobs(t)
	planned := len(plan.Items)
	if planned == 0 {
		t.Fatal("nothing planned after removing the only source")
	}
	if _, err := e.m.Add(context.Background(), mirror.Source{Name: "again", URL: fixtures.Path("repo-v1")}); err != nil {
		t.Fatal(err)
	}
	res, err := e.m.Sync(context.Background(), "again", nil)
	if err != nil || !res.OK() || res.Linked != 9 || res.New != 0 {
		t.Fatalf("sync: %v %s", err, res.Summary())
	}
	freed, err := c.Execute(context.Background(), plan)
	if err != nil {
		t.Fatal(err)
	}
	if freed != 0 || len(plan.Items) != 0 || plan.Changed != planned {
		t.Fatalf("freed %d, executed %s, changed %d of %d", freed, plan.Summary(), plan.Changed, planned)
	}
	if n := e.blobs(t); n != before {
		t.Fatalf("blobs %d -> %d", before, n)
	}
	for _, f := range fixtures.ELFFiles(t) {
		if strings.Contains(f.NEVRA, "1.1-1") {
			continue
		}
		id, _ := index.ParseBuildID(f.BuildID)
		if _, err := e.idx.Lookup(id); err != nil {
			t.Errorf("%s of %s: %v", f.BuildID, f.NEVRA, err)
		}
	}
}

// TestExecuteWaitsForHold: a sync holding the index between storing a
// package's files and committing it keeps gc's execution waiting.
func TestExecuteWaitsForHold(t *testing.T) {
	e, c, plan := planRemoved(t)
	release, err := e.idx.Hold()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Execute(context.Background(), plan)
		done <- err
	}()
	select {
	case err := <-done:
		release()
		t.Fatalf("Execute ran while a sync held the index: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.blobs(t) != 0 {
		t.Fatalf("%d blobs left after the hold ended", e.blobs(t))
	}
}

// TestDeltaBaseKept: once compaction has stored v2's files as deltas on
// v1's, removing v1 collects v1's packages and the files no delta needs,
// but keeps every base: each of v2's files still reads back whole.
func TestDeltaBaseKept(t *testing.T) {
	e := newEnv(t, "repo-v1", "repo-v2")
	res, err := e.m.Compact(context.Background())
	if err != nil || res.Deltas == 0 {
		t.Fatalf("Compact: %+v, %v; want deltas", res, err)
	}
	bases := map[blob.Digest]bool{}
	if err := e.pool.Walk(func(d blob.Digest, _ int64) error {
		if b, ok, err := e.pool.DeltaBase(d); err != nil {
			return err
		} else if ok {
			bases[b] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Remove("repo-v1"); err != nil {
		t.Fatal(err)
	}
	// What v2 names; the rest of the pool only v1 named.
	v2 := map[blob.Digest]bool{}
	if err := e.idx.SourcePackages("repo-v2", func(n index.NEVRA) error {
		p, err := e.idx.Package(n)
		for _, f := range p.Files {
			v2[f.Blob] = true
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{} // v1's blobs that are no base
	keptBases := 0
	if err := e.pool.Walk(func(d blob.Digest, _ int64) error {
		switch {
		case v2[d]:
		case bases[d]:
			keptBases++
		default:
			want[d.String()] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if keptBases == 0 {
		t.Fatal("no base only v1 names: the test shows nothing")
	}
	c := e.collector(Config{})
	plan, err := c.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, it := range plan.Items {
		if it.Kind == KindBlob || it.Kind == KindBlobPlain {
			got[it.Name] = true
		}
	}
	if !maps.Equal(got, want) {
		t.Fatalf("plan removes blobs %v, want %v (v1's that are no base)", got, want)
	}
	if _, err := c.Execute(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	for d := range bases {
		if !e.pool.Has(d) {
			t.Errorf("base %s was removed", d)
		}
	}
	checkEveryFileReads(t, e)
}

// checkEveryFileReads reads every file the index names through Plain,
// which checks its digest.
func checkEveryFileReads(t *testing.T, e *env) {
	t.Helper()
	n := 0
	if err := e.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if f.Blob.IsZero() {
				continue
			}
			e.pool.RemovePlain(f.Blob)
			if _, err := e.pool.Plain(f.Blob); err != nil {
				t.Errorf("%s %s: %v", p.NEVRA, f.Path, err)
			}
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no file to read")
	}
}
