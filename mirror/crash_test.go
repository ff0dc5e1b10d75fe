package mirror

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// The crash test re-runs this test binary as a child that syncs and gets
// killed with SIGKILL part-way.
func TestMain(m *testing.M) {
	if dir := os.Getenv("RETRACED_CHILD_SYNC_DIR"); dir != "" {
		childSync(dir)
		return
	}
	if dir := os.Getenv("RETRACED_CHILD_COMPACT_DIR"); dir != "" {
		childCompact(dir)
		return
	}
	os.Exit(m.Run())
}

func childSync(dir string) {
	m, closeFn, err := openMirror(dir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	defer closeFn()
	res, err := m.Sync(context.Background(), "fx", func(p Progress) {
		fmt.Printf("done %d\n", p.Done-p.Failed)
	})
	if err != nil {
		fmt.Println("error", err)
	} else {
		fmt.Println("result", res.Summary(), res.Failed)
	}
	os.Exit(0)
}

func openMirror(dir string) (*Mirror, func(), error) {
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{})
	if err != nil {
		return nil, nil, err
	}
	pool, err := blob.Open(filepath.Join(dir, "blobs"), blob.Config{NoSync: true})
	if err != nil {
		idx.Close()
		return nil, nil, err
	}
	m, err := New(idx, pool, Config{Workers: 2})
	if err != nil {
		idx.Close()
		return nil, nil, err
	}
	return m, func() { idx.Close() }, nil
}

// snapshot renders everything a sync leaves behind: each package with
// its files (ingest time aside), and the pool's blobs.
func snapshot(t *testing.T, m *testMirror) string {
	t.Helper()
	var lines []string
	if err := m.idx.Packages(func(p *index.Package) error {
		// Which of two packages shipping one file is credited with
		// storing it depends on worker timing, even without a crash.
		p.Added, p.Stored = time.Time{}, 0
		b, err := json.Marshal(p)
		lines = append(lines, string(b))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.pool.Walk(func(d blob.Digest, size int64) error {
		lines = append(lines, fmt.Sprintf("blob %s %d", d, size))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	c, err := m.idx.Counts()
	if err != nil {
		t.Fatal(err)
	}
	lines = append(lines, fmt.Sprintf("counts %+v", c))
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestKillDuringSync: SIGKILL a syncing process, collect garbage, sync
// again, and the store equals one an uninterrupted sync made.
func TestKillDuringSync(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo"))
	url := srv.Start(t)

	ref := newTestMirror(t, "")
	ref.add(t, "fx", url)
	if res := ref.sync(t, "fx"); !res.OK() {
		t.Fatalf("reference sync: %s", res.Summary())
	}

	dir := t.TempDir()
	func() {
		m, closeFn, err := openMirror(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer closeFn()
		if _, err := m.Add(context.Background(), Source{Name: "fx", URL: url}); err != nil {
			t.Fatal(err)
		}
	}()
	srv.Inject("*.rpm", fixtures.Slow(1024, 15*time.Millisecond))
	cmd, sc := startChild(t, "RETRACED_CHILD_SYNC_DIR="+dir)
	killed := false
	var said []string
	for sc.Scan() {
		said = append(said, sc.Text())
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "done %d", &n); err == nil && n >= 4 {
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			killed = true
			break
		}
	}
	werr := cmd.Wait()
	if !killed {
		t.Fatalf("child finished before it could be killed: %v; it said %q", werr, said)
	}
	srv.ClearFaults()

	m := newTestMirror(t, dir)
	if err := m.pool.CleanTemp(); err != nil { // as opening a data directory does
		t.Fatal(err)
	}
	partial, err := m.idx.Counts()
	if err != nil {
		t.Fatal(err)
	}
	if partial.Packages == 0 || int(partial.Packages) >= len(fixtures.Packages(t)) {
		t.Fatalf("killed sync left %d packages; want some but not all", partial.Packages)
	}
	// gc between the kill and the resync takes what the killed sync
	// stored but never committed, and nothing a committed package needs.
	c := gc.New(m.idx, m.pool, func() ([]string, error) { return []string{"fx"}, nil }, gc.Config{})
	plan, err := c.Plan(context.Background(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Execute(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	if err := m.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if !f.Blob.IsZero() && !m.pool.Has(f.Blob) {
				t.Errorf("gc after the kill removed %s of %s", f.Path, p.NEVRA)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "fx")
	if !res.OK() || res.New != len(fixtures.Packages(t))-int(partial.Packages) {
		t.Fatalf("sync after the kill: %s (had %d)", res.Summary(), partial.Packages)
	}
	if got, want := snapshot(t, m), snapshot(t, ref); got != want {
		t.Fatalf("store after kill and resync differs from an uninterrupted one:\n got:\n%s\nwant:\n%s", got, want)
	}
}

func childCompact(dir string) {
	m, closeFn, err := openMirror(dir)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	defer closeFn()
	fmt.Println("start")
	res, err := m.Compact(context.Background())
	fmt.Println("result", res, err)
	os.Exit(0)
}

// TestKillDuringCompact: SIGKILL a process part-way through compaction
// (deltas being written), at several moments: every file the index
// names still reads back whole (Plain checks its digest), and a second
// compaction finishes the job.
func TestKillDuringCompact(t *testing.T) {
	for _, after := range []time.Duration{50 * time.Millisecond, 150 * time.Millisecond, 400 * time.Millisecond} {
		t.Run(after.String(), func(t *testing.T) {
			dir := t.TempDir()
			m := newTestMirror(t, dir)
			m.add(t, "fx", fixtures.Path("repo"))
			if res := m.sync(t, "fx"); !res.OK() {
				t.Fatalf("sync: %s", res.Summary())
			}
			m.idx.Close()
			cmd, sc := startChild(t, "RETRACED_CHILD_COMPACT_DIR="+dir)
			sc.Scan() // "start"
			time.Sleep(after)
			cmd.Process.Signal(syscall.SIGKILL)
			var said []string
			for sc.Scan() {
				said = append(said, sc.Text())
			}
			cmd.Wait()

			m = newTestMirror(t, dir)
			compacted := 0
			readAll := func() {
				t.Helper()
				compacted = 0
				if err := m.idx.Packages(func(p *index.Package) error {
					for _, f := range p.Files {
						if f.Blob.IsZero() {
							continue
						}
						m.pool.RemovePlain(f.Blob)
						if _, err := m.pool.Plain(f.Blob); err != nil {
							t.Errorf("%s %s: %v", p.NEVRA, f.Path, err)
						}
						if done, _ := m.pool.IsCompacted(f.Blob); done {
							compacted++
						}
					}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
			readAll()
			t.Logf("killed after %s (%d files compacted; child said %q)", after, compacted, said)
			if err := m.pool.CleanTemp(); err != nil {
				t.Fatal(err)
			}
			if _, err := m.Compact(context.Background()); err != nil {
				t.Fatal(err)
			}
			if err := m.pool.Walk(func(d blob.Digest, _ int64) error {
				if done, err := m.pool.IsCompacted(d); err != nil || !done {
					t.Errorf("%s not compacted after the second run: %v", d, err)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			readAll()
		})
	}
}

// startChild runs this test binary as a child process (running no test,
// so TestMain's child mode takes over) with env added, and returns it with
// a scanner of its standard output.
func startChild(t *testing.T, env string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewScanner(out)
}
