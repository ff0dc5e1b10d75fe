package worker

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/gc"
)

// sysrootTestBuild makes a sysroot of size bytes.
func sysrootTestBuild(size int64, builds *atomic.Int32) func(context.Context, string) (*sysrootManifest, error) {
	return func(_ context.Context, dir string) (*sysrootManifest, error) {
		builds.Add(1)
		time.Sleep(10 * time.Millisecond)
		if err := os.WriteFile(filepath.Join(dir, "f"), make([]byte, size), 0o444); err != nil {
			return nil, err
		}
		return &sysrootManifest{Files: 1, Bytes: size}, nil
	}
}

func sysrootTestKey(name string) string { return sysrootKey([]string{name}) }

// testCache is a sysroot cache on a fresh directory, with a clock that
// ticks a second per reading and sysroots of 100 bytes.
type testCache struct {
	t      *testing.T
	dir    string
	now    func() time.Time
	c      *sysrootCache
	builds atomic.Int32
}

func newTestCache(t *testing.T, budget int64) *testCache {
	t.Helper()
	var clock atomic.Int64
	tc := &testCache{t: t, dir: t.TempDir(), now: func() time.Time { return time.Unix(clock.Add(1), 0) }}
	c, err := openSysrootCache(tc.dir, budget, tc.now)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	tc.c = c
	return tc
}

// use acquires the sysroot of the package set {name}.
func (tc *testCache) use(name string) *sysrootLease {
	tc.t.Helper()
	l, err := tc.c.acquire(context.Background(), sysrootTestKey(name), sysrootTestBuild(100, &tc.builds))
	if err != nil {
		tc.t.Fatal(err)
	}
	return l
}

// TestSysrootCacheLRU: eviction goes by last use, skips sysroots in use,
// and survives a reopen.
func TestSysrootCacheLRU(t *testing.T) {
	tc := newTestCache(t, 250)
	dir, now, c, use, builds := tc.dir, tc.now, tc.c, tc.use, &tc.builds
	var err error
	have := func() []string {
		var names []string
		for _, n := range []string{"A", "B", "C", "D"} {
			if _, err := os.Stat(filepath.Join(dir, sysrootTestKey(n), "f")); err == nil {
				names = append(names, n)
			}
		}
		return names
	}
	release := func(l *sysrootLease) {
		t.Helper()
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
	release(use("A"))
	release(use("B"))
	if l := use("A"); !l.Reused { // A is now newer than B
		t.Error("A rebuilt")
	} else {
		release(l)
	}
	release(use("C")) // 300 > 250: B goes
	if got := have(); !slices.Equal(got, []string{"A", "C"}) {
		t.Errorf("after A B A C: %v, want [A C]", got)
	}
	// In use: never evicted, even over the budget.
	la, lc := use("A"), use("C")
	ld := use("D")
	if got := have(); !slices.Equal(got, []string{"A", "C", "D"}) {
		t.Errorf("all in use: %v, want [A C D]", got)
	}
	release(lc)
	if got := have(); !slices.Equal(got, []string{"A", "D"}) {
		t.Errorf("C released: %v, want [A D]", got)
	}
	release(la)
	release(ld)
	release(ld) // twice is harmless
	if n, total, b := c.stats(); n != 2 || total != 200 || b != 4 {
		t.Errorf("stats %d %d %d", n, total, b)
	}

	// A second cache cannot take the directory; after Close, a new one
	// finds the sysroots and removes leftovers.
	if _, err := openSysrootCache(dir, 250, now); !errors.Is(err, ErrSysrootDirBusy) {
		t.Errorf("second open: %v", err)
	}
	for _, junk := range []string{".tmp-0123-x", ".run-x", ".trash-x", sysrootTestKey("broken")} {
		if err := os.MkdirAll(filepath.Join(dir, junk, "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "unrelated"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	c2, err := openSysrootCache(dir, 250, now)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if n, total, _ := c2.stats(); n != 2 || total != 200 {
		t.Errorf("reopened: %d sysroots, %d bytes", n, total)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{".lock", sysrootTestKey("A"), sysrootTestKey("D"), "unrelated"}
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("after reopen: %v, want %v", names, want)
	}
	l, err := c2.acquire(context.Background(), sysrootTestKey("D"), sysrootTestBuild(100, builds))
	if err != nil || !l.Reused {
		t.Errorf("D after reopen: %v reused %v", err, l != nil && l.Reused)
	}
}

// TestSysrootCacheConcurrent: many retraces needing one package set build
// it once; a failed build is not cached.
func TestSysrootCacheConcurrent(t *testing.T) {
	c, err := openSysrootCache(t.TempDir(), 1<<30, time.Now)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var builds atomic.Int32
	fail := errors.New("no")
	if _, err := c.acquire(context.Background(), sysrootTestKey("X"), func(context.Context, string) (*sysrootManifest, error) { return nil, fail }); !errors.Is(err, fail) {
		t.Fatalf("failing build: %v", err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		name := []string{"X", "Y"}[i%2]
		wg.Go(func() {
			l, err := c.acquire(context.Background(), sysrootTestKey(name), sysrootTestBuild(10, &builds))
			if err != nil {
				errs <- err
				return
			}
			if _, err := os.Stat(filepath.Join(l.Path, "f")); err != nil {
				errs <- fmt.Errorf("%s: %w", name, err)
			}
			errs <- l.Release()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := builds.Load(); n != 2 {
		t.Errorf("%d builds for 2 package sets", n)
	}
	// A waiter whose context ends stops waiting.
	ctx, cancel := context.WithCancel(context.Background())
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		l, err := c.acquire(context.Background(), sysrootTestKey("Z"), func(_ context.Context, dir string) (*sysrootManifest, error) {
			close(started)
			time.Sleep(200 * time.Millisecond)
			return &sysrootManifest{}, nil
		})
		if err == nil {
			err = l.Release()
		}
		if err != nil {
			t.Error(err)
		}
	}()
	<-started
	cancel()
	if _, err := c.acquire(ctx, sysrootTestKey("Z"), sysrootTestBuild(1, &builds)); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled waiter: %v", err)
	}
	<-done
}

// sysrootTestNames lists the entries of a sysroot directory by the test's
// names for them (A, B, ... for sysrootTestKey(A)...), others as they are.
func sysrootTestNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]string{}
	for _, n := range []string{"A", "B", "C", "D"} {
		byKey[sysrootTestKey(n)] = n
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if k, ok := byKey[n]; ok {
			n = k
		}
		if n != ".lock" {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

func sysrootItemNames(items []gc.Item) []string {
	byKey := map[string]string{}
	for _, n := range []string{"A", "B", "C", "D"} {
		byKey[sysrootTestKey(n)] = n
	}
	var names []string
	for _, it := range items {
		n := it.Name
		if k, ok := byKey[n]; ok {
			n = k
		}
		names = append(names, string(it.Kind)+" "+n)
	}
	return names
}

// TestSysrootCacheCollectable: as a gc owner, the open cache plans the
// idle sysroots beyond its budget, least recently used first, never one
// in use, and removes only those still idle.
func TestSysrootCacheCollectable(t *testing.T) {
	tc := newTestCache(t, 1000)
	dir, c, use := tc.dir, tc.c, tc.use
	for _, n := range []string{"A", "B", "C", "D"} {
		if err := use(n).Release(); err != nil {
			t.Fatal(err)
		}
	}
	if items := c.collectable(); len(items) != 0 {
		t.Fatalf("within the budget: %v", items)
	}
	// As if the budget had shrunk while every sysroot was in use: 400
	// bytes against 150; A (the oldest) is in use again.
	la := use("A")
	c.mu.Lock()
	c.budget = 150
	c.mu.Unlock()
	items := c.collectable()
	if got := sysrootItemNames(items); !slices.Equal(got, []string{"sysroot B", "sysroot C", "sysroot D"}) {
		t.Fatalf("planned %v, want B C D (A is in use; 100 bytes fit)", got)
	}
	for _, it := range items {
		if it.Bytes != 100 {
			t.Errorf("item %+v: want its 100 bytes", it)
		}
	}
	// Planning removed nothing.
	if got := sysrootTestNames(t, dir); !slices.Equal(got, []string{"A", "B", "C", "D"}) {
		t.Fatalf("after planning: %v", got)
	}
	// C is taken again before the collection: it stays.
	lc := use("C")
	if err := c.collect(append(sysrootKeys(items), "not-a-key", sysrootTestKey("gone"))); err != nil {
		t.Fatal(err)
	}
	if got := sysrootTestNames(t, dir); !slices.Equal(got, []string{"A", "C"}) {
		t.Errorf("after collecting: %v, want A and C (in use)", got)
	}
	if n, total, _ := c.stats(); n != 2 || total != 200 {
		t.Errorf("stats: %d sysroots, %d bytes", n, total)
	}
	for _, l := range []*sysrootLease{la, lc} {
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
}
