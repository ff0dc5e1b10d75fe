package worker

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/retrace"
)

// TestSysrootsOwner: retraced gc with no worker running plans what a
// dead worker left and the sysroots beyond the budget (as the next
// worker would remove them), removes nothing until told, and cannot
// plan while a worker holds the directory.
func TestSysrootsOwner(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sysroots")
	owner := &Sysroots{Dir: dir, Budget: 250}
	if items, err := owner.Plan(context.Background(), time.Now()); err != nil || len(items) != 0 {
		t.Fatalf("no directory: %v %v", items, err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("planning made the directory: %v", err)
	}

	var clock atomic.Int64
	now := func() time.Time { return time.Unix(1e9+clock.Add(1), 0) }
	c, err := openSysrootCache(dir, 1000, now)
	if err != nil {
		t.Fatal(err)
	}
	var builds atomic.Int32
	for _, n := range []string{"A", "B", "C"} {
		l, err := c.acquire(context.Background(), sysrootTestKey(n), sysrootTestBuild(100, &builds))
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := owner.Plan(context.Background(), time.Now()); !errors.Is(err, ErrSysrootDirBusy) {
		t.Errorf("planning while a worker has the directory: %v, want ErrSysrootDirBusy", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// A killed worker's run directory and half-built sysroot.
	for _, junk := range []string{".run-123", ".tmp-0123456789abcdef-9"} {
		if err := os.MkdirAll(filepath.Join(dir, junk), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, junk, "core"), make([]byte, 77), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	items, err := owner.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"sysroot .run-123", "sysroot .tmp-0123456789abcdef-9", "sysroot A"}
	if got := sysrootItemNames(items); !slices.Equal(got, want) {
		t.Fatalf("planned %v, want %v", got, want)
	}
	for i, b := range []int64{77, 77, 100} {
		if items[i].Bytes != b {
			t.Errorf("item %+v: want %d bytes", items[i], b)
		}
	}
	all := []string{".run-123", ".tmp-0123456789abcdef-9", "A", "B", "C"}
	if got := sysrootTestNames(t, dir); !slices.Equal(got, all) {
		t.Fatalf("after planning: %v, want all of %v", got, all)
	}
	if err := owner.Delete(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if got := sysrootTestNames(t, dir); !slices.Equal(got, []string{"B", "C"}) {
		t.Errorf("after deleting: %v, want B C", got)
	}
	if items, err := owner.Plan(context.Background(), time.Now()); err != nil || len(items) != 0 {
		t.Errorf("second plan: %v %v, want nothing", sysrootItemNames(items), err)
	}
	// The next worker finds the two survivors.
	c, err = openSysrootCache(dir, 250, now)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if n, total, _ := c.stats(); n != 2 || total != 200 {
		t.Errorf("reopened: %d sysroots, %d bytes", n, total)
	}
}

// TestWorkerCollectsSysroots: the Worker, the task server's Retracer, is
// gc's owner of the sysroots beside the server (serve registers both): a
// real collection plans the idle ones beyond the budget, as the Worker's,
// never one a retrace holds, and removes them on execution.
func TestWorkerCollectsSysroots(t *testing.T) {
	workerNeedsGDB(t)
	st := fixturestore.New(t, "repo")
	w := newTestWorker(t, st.Index, st.Pool, Config{})
	keys := map[string]string{}
	for _, name := range []string{"crashme-1.0.core.zst", "counter-1.1.core.zst"} {
		var log bytes.Buffer
		if _, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, name)), &log); err != nil {
			t.Fatal(err)
		}
		keys[name] = workerSysrootKey(t, w, log.String())
	}
	s, err := retrace.New(filepath.Join(t.TempDir(), "tasks"), w, retrace.Config{MinFreeSpace: -1, DeleteAfter: -1})
	if err != nil {
		t.Fatal(err)
	}
	col := gc.New(st.Index, st.Pool, func() ([]string, error) { return []string{"repo"}, nil }, gc.Config{}, s, w)
	sysroots := func(p *gc.Plan) []string {
		var names []string
		for _, it := range p.Items {
			if it.Kind == KindSysroot {
				names = append(names, it.Name)
			}
		}
		return names
	}
	plan, err := col.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got := sysroots(plan); len(got) != 0 {
		t.Fatalf("within the budget, gc plans sysroots %v", got)
	}

	// The budget shrinks below both; counter's sysroot is in use.
	w.cache.mu.Lock()
	w.cache.budget = 1
	w.cache.mu.Unlock()
	held, err := w.cache.acquire(context.Background(), keys["counter-1.1.core.zst"], nil)
	if err != nil || !held.Reused {
		t.Fatalf("hold counter's sysroot: %v", err)
	}
	if plan, err = col.Plan(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if got := sysroots(plan); !slices.Equal(got, []string{keys["crashme-1.0.core.zst"]}) {
		t.Fatalf("gc plans sysroots %v, want only crashme's %s", got, keys["crashme-1.0.core.zst"])
	}
	for _, it := range plan.Items {
		if it.Kind == KindSysroot && (it.Owner != w || it.Bytes <= 0) {
			t.Errorf("item %+v: want the worker as owner and the sysroot's bytes", it)
		}
	}
	if _, err := col.Execute(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(w.cfg.SysrootDir, keys["crashme-1.0.core.zst"])); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("crashme's sysroot is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.cfg.SysrootDir, keys["counter-1.1.core.zst"], "usr/bin/counter")); err != nil {
		t.Errorf("the sysroot in use was touched: %v", err)
	}
	if err := held.Release(); err != nil { // now idle and over budget: the worker evicts it
		t.Fatal(err)
	}
	if n, _, _ := w.cache.stats(); n != 0 {
		t.Errorf("%d sysroots left", n)
	}
}
