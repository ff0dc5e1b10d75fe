package retrace

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

func TestSysrootPaths(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
		ok   bool
	}{
		{"/usr/bin/x", "usr/bin/x", true},
		{"/usr//bin/x", "", false},
		{"/usr/../etc/passwd", "", false},
		{"usr/bin/x", "", false},
		{"/", "", false},
		{"/usr/bin/", "", false},
		{"/usr/./bin", "", false},
		{"/a\x00b", "", false},
	} {
		got, ok := sysrootRel(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("sysrootRel(%q) = %q %v, want %q %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		rel, target, want string
	}{
		// Fedora's .build-id links.
		{"usr/lib/debug/.build-id/6f/9ed0", "../../../../../usr/bin/crashme", "../../../../bin/crashme"},
		{"usr/lib64/libx.so.1", "libx.so.1.0.0", "libx.so.1.0.0"},
		// Absolute targets stay inside.
		{"usr/lib64/libx.so", "/usr/lib64/libx.so.1", "libx.so.1"},
		{"usr/lib64/evil", "/etc/shadow", "../../etc/shadow"},
		// ".." past the root stops at the root, as in a chroot.
		{"usr/evil", "../../../../../etc/shadow", "../etc/shadow"},
		{"lib64", "usr/lib64", "usr/lib64"},
	} {
		got, ok := sysrootLinkTarget(tc.rel, tc.target)
		if !ok || got != tc.want {
			t.Errorf("sysrootLinkTarget(%q, %q) = %q %v, want %q", tc.rel, tc.target, got, ok, tc.want)
		}
	}
	if _, ok := sysrootLinkTarget("usr/x", ""); ok {
		t.Error("empty link target accepted")
	}
}

// TestSysrootAutoLoad: a package's gdb auto-load script lands beside its
// object file and beside the soname link that leads to it, where GDB with
// "set sysroot" finds it; nothing a package ships is replaced.
func TestSysrootAutoLoad(t *testing.T) {
	var d blob.Digest
	d[0] = 1
	reg := func(p string) index.File { return index.File{Path: p, Mode: 0o644, Blob: d, Size: 1} }
	link := func(p, to string) index.File { return index.File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: to} }
	lib := &index.Package{NEVRA: index.NEVRA{Name: "tb-libs", Version: "2.0", Release: "1", Arch: "x86_64"}, Files: []index.File{
		reg("/usr/lib64/libtb.so.1.0.0"),
		link("/usr/lib64/libtb.so.1", "libtb.so.1.0.0"),
		reg("/usr/share/gdb/auto-load/usr/lib64/libtb.so.1.0.0-gdb.py"),
		// A script for a path through /lib64 (a link to usr/lib64).
		reg("/usr/share/gdb/auto-load/lib64/libother.so.2-gdb.py"),
		reg("/usr/lib64/libother.so.2"),
		// A package that ships the file beside its object already.
		reg("/usr/lib64/libown.so.3"),
		reg("/usr/lib64/libown.so.3-gdb.py"),
		reg("/usr/share/gdb/auto-load/usr/lib64/libown.so.3-gdb.py"),
	}}
	pl := planSysroot([]*index.Package{lib}, nil)
	got := map[string]string{}
	for _, l := range pl.links {
		got[l.rel] = l.target
	}
	want := map[string]string{
		"usr/lib64/libtb.so.1.0.0-gdb.py": "../share/gdb/auto-load/usr/lib64/libtb.so.1.0.0-gdb.py",
		"usr/lib64/libtb.so.1-gdb.py":     "../share/gdb/auto-load/usr/lib64/libtb.so.1.0.0-gdb.py",
		"usr/lib64/libother.so.2-gdb.py":  "../share/gdb/auto-load/lib64/libother.so.2-gdb.py",
	}
	for rel, target := range want {
		if got[rel] != target {
			t.Errorf("link %s -> %q, want %q", rel, got[rel], target)
		}
	}
	if _, ok := got["usr/lib64/libown.so.3-gdb.py"]; ok {
		t.Error("a shipped file was replaced by a link")
	}
	for rel := range got {
		if strings.HasPrefix(rel, "usr/share/gdb/") {
			t.Errorf("link %s inside the auto-load directory", rel)
		}
	}
}

// TestSysrootAliases: an object the core names at another path than its
// package's gets a link there, placed through the sysroot's own links
// (lib -> usr/lib), never over a file a package ships.
func TestSysrootAliases(t *testing.T) {
	var d blob.Digest
	d[0] = 1
	glibc := &index.Package{NEVRA: index.NEVRA{Name: "glibc", Version: "2.36", Release: "1", Arch: "x86_64"}, Files: []index.File{
		{Path: "/usr/lib64/libc.so.6", Mode: 0o755, Blob: d, Size: 1},
		{Path: "/usr/lib64/libm.so.6", Mode: 0o755, Blob: d, Size: 1},
	}}
	pl := planSysroot([]*index.Package{glibc}, map[string]string{
		"/lib/x86_64-linux-gnu/libc.so.6": "/usr/lib64/libc.so.6",
		"/usr/lib64/libm.so.6":            "/usr/lib64/libc.so.6", // shipped: kept
		"relative/path":                   "/usr/lib64/libc.so.6",
	})
	got := map[string]string{}
	for _, l := range pl.links {
		got[l.rel] = l.target
	}
	if got["usr/lib/x86_64-linux-gnu/libc.so.6"] != "../../lib64/libc.so.6" {
		t.Errorf("alias link: %v", got)
	}
	if _, ok := got["lib/x86_64-linux-gnu/libc.so.6"]; ok {
		t.Error("alias placed under the lib link instead of through it")
	}
	if _, ok := got["usr/lib64/libm.so.6"]; ok {
		t.Error("alias replaced a shipped file")
	}
	if len(pl.skipped) != 1 || !strings.Contains(pl.skipped[0], "relative/path") {
		t.Errorf("skipped %v", pl.skipped)
	}
}

func TestSysrootSRPMName(t *testing.T) {
	for in, want := range map[string]string{
		"crashme-1.0-1.src.rpm":             "crashme",
		"python-foo-bar-2.1-3.fc40.src.rpm": "python-foo-bar",
		"x-1-1.nosrc.rpm":                   "x",
		"":                                  "",
		"nodash.src.rpm":                    "",
		"bash-5.2.26-3.fc40.x86_64.rpm":     "",
	} {
		if got := srpmName(in); got != want {
			t.Errorf("srpmName(%q) = %q, want %q", in, got, want)
		}
	}
}

// sysrootTestPool is a blob pool holding the given contents.
func sysrootTestPool(t testing.TB, contents ...string) (*blob.Pool, map[string]blob.Digest) {
	t.Helper()
	pool, err := blob.Open(filepath.Join(t.TempDir(), "blobs"), blob.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	ds := map[string]blob.Digest{}
	for _, c := range contents {
		d := blob.Sum([]byte(c))
		if _, err := pool.Put(d, strings.NewReader(c)); err != nil {
			t.Fatal(err)
		}
		ds[c] = d
	}
	return pool, ds
}

// TestSysrootAssemble lays out a hostile package set: links out of the
// root, entries under links, a path that is a file in one package and a
// directory in another.
func TestSysrootAssemble(t *testing.T) {
	pool, ds := sysrootTestPool(t, "exe", "lib", "debug", "other")
	reg := func(p, c string) index.File {
		return index.File{Path: p, Mode: 0o755, Size: int64(len(c)), Blob: ds[c]}
	}
	link := func(p, target string) index.File {
		return index.File{Path: p, Mode: fs.ModeSymlink | 0o777, Link: target}
	}
	nv := func(s string) index.NEVRA {
		n, err := index.ParseNEVRA(s)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	pkgs := []*index.Package{
		{NEVRA: nv("b-1-1.x86_64"), Files: []index.File{
			reg("/usr/bin/b", "exe"),
			reg("/usr/bin/a", "other"), // a ships it too, and sorts first
			reg("/usr/share/x", "other"),
		}},
		{NEVRA: nv("a-1-1.x86_64"), Files: []index.File{
			reg("/usr/bin/a", "exe"),
			reg("/usr/lib64/liba.so.1.0", "lib"),
			link("/usr/lib64/liba.so.1", "liba.so.1.0"),
			link("/usr/lib64/abs.so", "/usr/lib64/liba.so.1.0"),
			link("/usr/lib64/escape", "../../../../../../etc/passwd"),
			link("/usr/lib64/tohost", "/etc"),
			reg("/usr/lib64/tohost/shadow", "other"), // below a link: never written through it
			reg("/usr/share/x/y", "other"),           // /usr/share/x is b's file: b's is skipped
			reg("/usr/lib/debug/usr/bin/a.debug", "debug"),
			{Path: "/usr/share/empty", Mode: fs.ModeDir | 0o755},
			reg("../escape", "other"),
		}},
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	pl := planSysroot(pkgs, nil)
	m, err := assembleSysroot(context.Background(), root, pl, pool, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("manifest: %+v", m)
	if !slices.Equal(m.Packages, []string{"a-1-1.x86_64", "b-1-1.x86_64"}) {
		t.Errorf("packages %v", m.Packages)
	}
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}
	for rel, want := range map[string]string{
		"usr/bin/a":                     "exe", // a's, not b's
		"usr/bin/b":                     "exe",
		"usr/lib64/liba.so.1":           "lib",
		"usr/lib64/abs.so":              "lib",
		"lib64/liba.so.1":               "lib", // merged /usr
		"usr/lib/debug/usr/bin/a.debug": "debug",
	} {
		if got := read(rel); got != want {
			t.Errorf("%s: %q, want %q", rel, got, want)
		}
	}
	for rel, want := range map[string]string{
		"usr/lib64/abs.so":    "liba.so.1.0",
		"usr/lib64/escape":    "../../etc/passwd",
		"usr/lib64/tohost":    "../../etc",
		"lib64":               "usr/lib64",
		"bin":                 "usr/bin",
		"usr/lib64/liba.so.1": "liba.so.1.0",
	} {
		if got, err := os.Readlink(filepath.Join(root, rel)); err != nil || got != want {
			t.Errorf("link %s -> %q (%v), want %q", rel, got, err, want)
		}
	}
	// Nothing leads out: every link resolves inside root or nowhere.
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.Type()&fs.ModeSymlink == 0 {
			return err
		}
		target, err := filepath.EvalSymlinks(p)
		if err != nil {
			return nil // dangling inside root
		}
		if !strings.HasPrefix(target, root+"/") {
			t.Errorf("%s leads out to %s", p, target)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(root, "etc")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("/etc was created through a link: %v", err)
	}
	if st, err := os.Stat(filepath.Join(root, "usr/share/empty")); err != nil || !st.IsDir() {
		t.Errorf("directory entry: %v", err)
	}
	skipped := strings.Join(m.Skipped, "\n")
	for _, want := range []string{"/usr/lib64/tohost/shadow: below a symbolic link", "/usr/share/x: another package's directory", `"../escape": not a clean absolute path`} {
		if !strings.Contains(skipped, want) {
			t.Errorf("skipped list lacks %q:\n%s", want, skipped)
		}
	}
	// Files are hard links of the pool's plain copies, read-only.
	plain, err := pool.Plain(ds["lib"])
	if err != nil {
		t.Fatal(err)
	}
	a, _ := os.Stat(plain)
	b, err := os.Stat(filepath.Join(root, "usr/lib64/liba.so.1.0"))
	if err != nil || !os.SameFile(a, b) || b.Mode().Perm() != 0o444 {
		t.Errorf("not a read-only hard link of the plain copy: %v %v", err, b.Mode())
	}
	if m.Files != 5 || m.Copied != 0 || m.Bytes != int64(len("exe")*2+len("lib")+len("debug")+len("other")) || read("usr/share/x/y") != "other" {
		t.Errorf("manifest files %d copied %d bytes %d", m.Files, m.Copied, m.Bytes)
	}
}

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

// TestServerCollectsSysroots: with the Worker as its Retracer, the task
// server is gc's owner of the sysroots too: a real collection plans the
// idle ones beyond the budget, never one a retrace holds, and removes
// them on execution.
func TestServerCollectsSysroots(t *testing.T) {
	workerNeedsGDB(t)
	st := fixturestore.New(t, "repo")
	w := newTestWorker(t, st.Index, st.Pool, WorkerConfig{})
	keys := map[string]string{}
	for _, name := range []string{"crashme-1.0.core.zst", "counter-1.1.core.zst"} {
		var log bytes.Buffer
		if _, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, name)), &log); err != nil {
			t.Fatal(err)
		}
		keys[name] = workerSysrootKey(t, w, log.String())
	}
	s, err := New(filepath.Join(t.TempDir(), "tasks"), w, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	col := gc.New(st.Index, st.Pool, func() ([]string, error) { return []string{"repo"}, nil }, gc.Config{}, s)
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
		if it.Kind == KindSysroot && (it.Owner != s || it.Bytes <= 0) {
			t.Errorf("item %+v: want the server as owner and the sysroot's bytes", it)
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
