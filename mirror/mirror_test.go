package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/internal/decompress"
	"github.com/retraced/retraced/internal/decompress/decompresstest"
	"github.com/retraced/retraced/mirror/yum"
)

// testMirror is a mirror on a fresh data directory.
type testMirror struct {
	*Mirror
	idx  *index.Store
	pool *blob.Pool
	dir  string
}

func newTestMirror(t testing.TB, dir string) *testMirror {
	t.Helper()
	return newTestMirrorConfig(t, dir, Config{Workers: 2})
}

func newTestMirrorConfig(t testing.TB, dir string, cfg Config) *testMirror {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	pool, err := blob.Open(filepath.Join(dir, "blobs"), blob.Config{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(idx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &testMirror{Mirror: m, idx: idx, pool: pool, dir: dir}
}

func (m *testMirror) add(t testing.TB, name, url string) {
	t.Helper()
	if _, err := m.Add(context.Background(), Source{Name: name, URL: url}); err != nil {
		t.Fatal(err)
	}
}

func (m *testMirror) sync(t testing.TB, name string) *Result {
	t.Helper()
	res, err := m.Sync(context.Background(), name, nil)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// lookupLines renders every expected build-id's matches as the reference
// file writes them: "BUILDID NEVRA KIND PATH".
func (m *testMirror) lookupLines(t testing.TB, ids []string) []string {
	t.Helper()
	var out []string
	for _, s := range ids {
		id, err := index.ParseBuildID(s)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := m.idx.Lookup(id)
		if errors.Is(err, index.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, mt := range ms {
			out = append(out, fmt.Sprintf("%s %s %s %s", id, mt.NEVRA, mt.Kind, mt.Path))
		}
	}
	sort.Strings(out)
	return out
}

func expectedLines(t testing.TB, keep func(fixtures.ELFFile) bool) (ids, lines []string) {
	seen := map[string]bool{}
	for _, e := range fixtures.ELFFiles(t) {
		if keep != nil && !keep(e) {
			continue
		}
		if !seen[e.BuildID] {
			seen[e.BuildID] = true
			ids = append(ids, e.BuildID)
		}
		lines = append(lines, fmt.Sprintf("%s %s %s %s", e.BuildID, e.NEVRA, e.Kind, e.Path))
	}
	sort.Strings(lines)
	return ids, lines
}

func diffLines(t testing.TB, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("index does not match eu-readelf's reference:\n got:\n  %s\nwant:\n  %s",
			strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestSyncIndexesEveryBuildID mirrors the fixture repository over HTTP and
// checks every build-id against the reference list made by eu-readelf.
func TestSyncIndexesEveryBuildID(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo"))
	url := srv.Start(t)
	m := newTestMirror(t, "")
	m.add(t, "fx", url)
	res := m.sync(t, "fx")
	if !res.OK() {
		t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
	}
	pkgs := fixtures.Packages(t)
	if res.New != len(pkgs) {
		t.Fatalf("ingested %d packages, the repository has %d", res.New, len(pkgs))
	}
	ids, want := expectedLines(t, nil)
	diffLines(t, m.lookupLines(t, ids), want)

	src, err := m.Source("fx")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, p := range pkgs {
		n, err := index.ParseNEVRA(p.NEVRA)
		if err != nil {
			t.Fatal(err)
		}
		names[n.Name] = true
	}
	if src.State.Packages != len(names) || src.State.Versions != len(pkgs) {
		t.Fatalf("state counts %d packages %d versions, want %d and %d", src.State.Packages, src.State.Versions, len(names), len(pkgs))
	}
	var fetched int64
	for _, p := range pkgs {
		fetched += p.Size
	}
	if src.State.BytesFetched < fetched {
		t.Fatalf("bytes fetched %d, less than the RPMs' %d", src.State.BytesFetched, fetched)
	}
	if src.State.BytesStored <= 0 || src.State.BytesStored >= fetched {
		t.Fatalf("bytes stored %d, want between 0 and %d", src.State.BytesStored, fetched)
	}
	if src.State.Repomd == "" || !strings.HasPrefix(src.State.LastResult, "ok") {
		t.Fatalf("state after a clean sync: %+v", src.State)
	}
}

// TestKeepsOnlyWhatRetracingNeeds checks the stored file list of every
// package against the policy, and that each distinct content is stored once.
func TestKeepsOnlyWhatRetracingNeeds(t *testing.T) {
	m := newTestMirror(t, "")
	m.add(t, "fx", fixtures.Path("repo"))
	if res := m.sync(t, "fx"); !res.OK() {
		t.Fatalf("sync: %s", res.Summary())
	}
	referenced := map[blob.Digest]bool{}
	var sawLib, sawDebugSource, sawBuildIDLink bool
	err := m.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			for _, dropped := range []string{"/usr/share/doc/", "/usr/share/man/", "/usr/share/locale/", "/usr/share/licenses/"} {
				if strings.HasPrefix(f.Path, dropped) {
					t.Errorf("%s: stored %s", p.NEVRA, f.Path)
				}
			}
			if !f.Blob.IsZero() {
				referenced[f.Blob] = true
				if !m.pool.Has(f.Blob) {
					t.Errorf("%s: %s names blob %s, which is not in the pool", p.NEVRA, f.Path, f.Blob)
				}
			}
			sawLib = sawLib || (strings.HasPrefix(f.Path, "/usr/lib64/lib") && f.Link != "")
			sawDebugSource = sawDebugSource || strings.HasPrefix(f.Path, "/usr/src/debug/")
			sawBuildIDLink = sawBuildIDLink || (strings.HasPrefix(f.Path, "/usr/lib/debug/.build-id/") && f.Link != "")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !sawLib || !sawDebugSource || !sawBuildIDLink {
		t.Fatalf("missing kept files: library symlink %v, debug source %v, build-id link %v", sawLib, sawDebugSource, sawBuildIDLink)
	}
	stored := 0
	if err := m.pool.Walk(func(d blob.Digest, size int64) error {
		stored++
		if !referenced[d] {
			t.Errorf("blob %s is stored but no package names it", d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored != len(referenced) {
		t.Fatalf("%d blobs stored for %d distinct contents", stored, len(referenced))
	}
}

func TestUnchangedRepomdMakesOneRequest(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo"))
	url := srv.Start(t)
	m := newTestMirror(t, "")
	m.add(t, "fx", url)
	m.sync(t, "fx")
	srv.ResetRequests()
	res := m.sync(t, "fx")
	if !res.Unchanged || !res.OK() {
		t.Fatalf("second sync: %s", res.Summary())
	}
	if n := srv.TotalRequests(); n != 1 {
		t.Fatalf("unchanged sync made %d requests, want 1", n)
	}
}

// TestDroppedVersionStays: upstream first serves version 1, then only
// version 2; the mirror keeps both, and fetches only what is new.
func TestDroppedVersionStays(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo-v1"))
	url := srv.Start(t)
	m := newTestMirror(t, "")
	m.add(t, "fx", url)
	first := m.sync(t, "fx")
	srv.SetRoot(fixtures.FS("repo-v2"))
	srv.ResetRequests()
	second := m.sync(t, "fx")
	if !first.OK() || !second.OK() {
		t.Fatalf("syncs: %s / %s", first.Summary(), second.Summary())
	}
	if first.New+second.New != len(fixtures.Packages(t)) {
		t.Fatalf("ingested %d+%d, want %d in all", first.New, second.New, len(fixtures.Packages(t)))
	}
	rpms := 0
	for p, n := range requestsByPath(t, srv) {
		if strings.HasSuffix(p, ".rpm") {
			rpms += n
		}
	}
	if rpms != second.New {
		t.Fatalf("second sync fetched %d RPMs for %d new packages", rpms, second.New)
	}
	ids, want := expectedLines(t, nil)
	diffLines(t, m.lookupLines(t, ids), want)
	src, _ := m.Source("fx")
	if src.State.Versions != len(fixtures.Packages(t)) {
		t.Fatalf("versions = %d, want %d", src.State.Versions, len(fixtures.Packages(t)))
	}
}

// requestsByPath counts requests for the RPMs the sync ingested.
func requestsByPath(t testing.TB, srv *fixtures.Server) map[string]int {
	out := map[string]int{}
	for _, p := range fixtures.Packages(t) {
		if n := srv.Requests("/Packages/" + p.File); n > 0 {
			out[p.File] = n
		}
	}
	return out
}

// TestFaults: one package broken in transit fails alone, is reported,
// and is fetched again by the next sync; nothing half-done is indexed.
func TestFaults(t *testing.T) {
	victim := "crashme-1.0-1.x86_64.rpm"
	victimNEVRA := index.NEVRA{Name: "crashme", Version: "1.0", Release: "1", Arch: "x86_64"}
	tests := []struct {
		name  string
		fault fixtures.Fault
		want  string
	}{
		{"checksum mismatch", fixtures.Corrupt(), ""},
		{"truncated download", fixtures.Truncate(3000), ""},
		{"upstream 500", fixtures.Status(http.StatusInternalServerError), "500"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fixtures.NewServer(fixtures.FS("repo"))
			url := srv.Start(t)
			srv.Inject("/Packages/"+victim, tt.fault)
			m := newTestMirror(t, "")
			m.add(t, "fx", url)
			res := m.sync(t, "fx")
			if len(res.Failed) != 1 || !strings.HasSuffix(res.Failed[0].Location, victim) {
				t.Fatalf("failed = %v, want just %s", res.Failed, victim)
			}
			if !strings.Contains(res.Failed[0].Error(), tt.want) {
				t.Fatalf("error %q does not say %q", res.Failed[0].Error(), tt.want)
			}
			if res.New != len(fixtures.Packages(t))-1 {
				t.Fatalf("the rest did not land: %s", res.Summary())
			}
			if ok, _ := m.idx.HasPackage(victimNEVRA); ok {
				t.Fatal("the broken package is in the index")
			}
			src, _ := m.Source("fx")
			if len(src.State.Errors) != 1 || !strings.HasPrefix(src.State.LastResult, "partial") {
				t.Fatalf("state does not report the failure: %+v", src.State)
			}
			srv.ClearFaults()
			srv.ResetRequests()
			again := m.sync(t, "fx")
			if !again.OK() || again.New != 1 || srv.Requests("/Packages/"+victim) != 1 {
				t.Fatalf("retry: %s, %d requests for the package", again.Summary(), srv.Requests("/Packages/"+victim))
			}
			ids, want := expectedLines(t, nil)
			diffLines(t, m.lookupLines(t, ids), want)
		})
	}
}

func TestBadMetadata(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		fault   fixtures.Fault
		want    string
	}{
		{"repomd not XML", "/repodata/repomd.xml", fixtures.Replace([]byte("<html>not a repository")), "repomd.xml"},
		{"repomd 500", "/repodata/repomd.xml", fixtures.Status(500), "500"},
		{"primary corrupt", "*-primary.xml.gz", fixtures.Corrupt(), "checksum mismatch"},
		{"primary truncated", "*-primary.xml.gz", fixtures.Truncate(100), "primary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := fixtures.NewServer(fixtures.FS("repo"))
			url := srv.Start(t)
			m := newTestMirror(t, "")
			m.add(t, "fx", url)
			srv.Inject(tt.pattern, tt.fault)
			res := m.sync(t, "fx")
			if res.Err == nil || !strings.Contains(res.Err.Error(), tt.want) {
				t.Fatalf("sync error = %v, want one mentioning %q", res.Err, tt.want)
			}
			if c, _ := m.idx.Counts(); c.Packages != 0 {
				t.Fatalf("%d packages indexed from bad metadata", c.Packages)
			}
			src, _ := m.Source("fx")
			if !strings.HasPrefix(src.State.LastResult, "failed") || src.State.Repomd != "" {
				t.Fatalf("state = %+v", src.State)
			}
			srv.ClearFaults()
			if res := m.sync(t, "fx"); !res.OK() || res.New != len(fixtures.Packages(t)) {
				t.Fatalf("sync after the fault cleared: %s", res.Summary())
			}
		})
	}
}

// TestBadPackages syncs the crafted repository: each bad RPM fails with a
// reason naming what is wrong, the good ones land.
func TestBadPackages(t *testing.T) {
	m := newTestMirror(t, "")
	m.add(t, "bad", fixtures.Path("repo-bad"))
	res := m.sync(t, "bad")
	want := map[string]string{
		"badabsolute-1.0-1.x86_64.rpm":  "absolute path",
		"badtraversal-1.0-1.x86_64.rpm": "climbs out",
		"badgarbage-1.0-1.x86_64.rpm":   "payload",
		"badtrunc-1.0-1.x86_64.rpm":     "truncated",
		"badnote-1.0-1.x86_64.rpm":      "note",
	}
	got := map[string]string{}
	for _, f := range res.Failed {
		got[filepath.Base(f.Location)] = f.Err.Error()
	}
	for file, reason := range want {
		if !strings.Contains(got[file], reason) {
			t.Errorf("%s: error %q, want one mentioning %q", file, got[file], reason)
		}
	}
	if len(got) != len(want) {
		t.Errorf("failed: %v", got)
	}
	good := 0
	for _, p := range fixtures.BadPackages(t) {
		if _, bad := want[p.File]; !bad {
			good++
		}
	}
	if res.New != good {
		t.Fatalf("%d good packages landed, want %d: %s", res.New, good, res.Summary())
	}
	// Nothing a crafted package wrote escaped the pool.
	if matches, _ := filepath.Glob(filepath.Join(m.dir, "..", "evil*")); len(matches) > 0 {
		t.Fatalf("files outside the data directory: %v", matches)
	}
}

func TestSyncCancelled(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo"))
	url := srv.Start(t)
	srv.Inject("*.rpm", fixtures.Slow(512, 50*time.Millisecond))
	m := newTestMirror(t, "")
	m.add(t, "fx", url)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	res, err := m.Sync(ctx, "fx", nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Err == nil || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("cancelled sync: %v", res.Err)
	}
	src, _ := m.Source("fx")
	if src.State.Repomd != "" {
		t.Fatal("an interrupted sync recorded the repomd checksum; the next sync would skip the rest")
	}
}

func TestConcurrentSyncRefused(t *testing.T) {
	srv := fixtures.NewServer(fixtures.FS("repo"))
	url := srv.Start(t)
	srv.Inject("*.rpm", fixtures.Slow(1024, 20*time.Millisecond).Times(1))
	m := newTestMirror(t, "")
	m.add(t, "fx", url)
	srv.ResetRequests()
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.sync(t, "fx")
	}()
	deadline := time.Now().Add(5 * time.Second)
	for srv.TotalRequests() == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if _, err := m.Sync(context.Background(), "fx", nil); !errors.Is(err, ErrSyncing) {
		t.Errorf("second sync: %v, want ErrSyncing", err)
	}
	<-done
}

func TestAddDetectsKindAndValidates(t *testing.T) {
	m := newTestMirror(t, "")
	s, err := m.Add(context.Background(), Source{Name: "fx", URL: fixtures.Path("repo")})
	if err != nil || s.Kind != KindYum {
		t.Fatalf("Add = %+v, %v; want kind yum", s, err)
	}
	s, err = m.Add(context.Background(), Source{Name: "tree", URL: fixtures.Path("cores")})
	if err != nil || s.Kind != KindTree {
		t.Fatalf("Add = %+v, %v; want kind tree", s, err)
	}
	for _, bad := range []Source{
		{Name: "fx", URL: fixtures.Path("repo")},
		{Name: "bad name", URL: fixtures.Path("repo")},
		{Name: "x", URL: "ftp://example.invalid/"},
		{Name: "y", URL: fixtures.Path("repo"), Include: "("},
		{Name: "z", URL: fixtures.Path("repo"), Kind: "apt"},
	} {
		if _, err := m.Add(context.Background(), bad); err == nil {
			t.Errorf("Add(%+v) succeeded", bad)
		}
	}
	if err := m.Remove("fx"); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove("fx"); !errors.Is(err, index.ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
}

func TestIncludeExclude(t *testing.T) {
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), Source{Name: "fx", URL: fixtures.Path("repo"), Include: "crashme", Exclude: "debugsource"}); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "fx")
	want := 0
	for _, p := range fixtures.Packages(t) {
		if strings.Contains(p.File, "crashme") && !strings.Contains(p.File, "debugsource") {
			want++
		}
	}
	if !res.OK() || res.New != want || res.Listed != want {
		t.Fatalf("sync: %s, want %d packages", res.Summary(), want)
	}
}

// TestSyncPauses: a sync whose Pause starts failing (the disk ran low)
// stops with that error before its next package, keeps what landed and is
// not recorded as complete; the next sync ingests the rest.
func TestSyncPauses(t *testing.T) {
	errLow := errors.New("disk low")
	var asked atomic.Int32
	var low atomic.Bool
	// Asked once as the sync starts, then before each package: the
	// fifth question, before the fourth package, finds the disk low.
	m := newTestMirrorConfig(t, "", Config{Workers: 1, Pause: func() error {
		if asked.Add(1) > 4 && low.Load() {
			return errLow
		}
		return nil
	}})
	m.add(t, "fx", fixtures.Path("repo"))
	low.Store(true)
	res, err := m.Sync(context.Background(), "fx", nil)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(res.Err, errLow) || res.New != 3 {
		t.Fatalf("paused sync: %v, %d new, want the pause error after 3", res.Err, res.New)
	}
	if src, err := m.Source("fx"); err != nil || src.State.LastResult != "failed: disk low" {
		t.Fatalf("last result after the pause: %v %+v", err, src)
	}
	// Paused from the start: nothing is fetched, and the source says why.
	asked.Store(10)
	res, err = m.Sync(context.Background(), "fx", nil)
	if err != nil || !errors.Is(res.Err, errLow) || res.New != 0 || res.Listed != 0 {
		t.Fatalf("sync paused at its start: %v %+v", err, res)
	}
	low.Store(false)
	again := m.sync(t, "fx")
	if !again.OK() || again.New != again.Listed-3 || again.New == 0 {
		t.Fatalf("next sync: %s", again.Summary())
	}
	if third := m.sync(t, "fx"); third.New != 0 {
		t.Fatalf("third sync: %s", third.Summary())
	}
}

// hostileRepo writes a yum repository into a new directory whose
// repomd.xml lists primary, a file named name, with its true checksum:
// what a hostile or broken mirror serves.
func hostileRepo(t *testing.T, name string, primary []byte) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "repodata"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "repodata", name), primary, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(primary)
	repomd := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>
<data type="primary"><checksum type="sha256">%x</checksum><location href="repodata/%s"/><size>%d</size></data>
</repomd>`, sum, name, len(primary))
	if err := os.WriteFile(filepath.Join(dir, "repodata", "repomd.xml"), []byte(repomd), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// fixturePrimary returns the fixture repository's primary.xml,
// decompressed.
func fixturePrimary(t *testing.T) []byte {
	t.Helper()
	f, err := os.Open(fixtures.Path("repo", "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	md, err := yum.ParseRepomd(f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := md.Primary()
	if err != nil {
		t.Fatal(err)
	}
	gz, err := os.Open(fixtures.Path("repo", filepath.FromSlash(d.Location.Href)))
	if err != nil {
		t.Fatal(err)
	}
	defer gz.Close()
	zr, err := gzip.NewReader(gz)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestHostilePrimary: a primary.xml that asks its decompressor for
// gigabytes, up front or in a later block, or that decompresses past
// MaxMetadataSize, fails the sync with the reason, quickly and without
// allocating what it asks for; nothing is indexed.
func TestHostilePrimary(t *testing.T) {
	xml := fixturePrimary(t)
	one := decompresstest.XZ(t, xml, 0)
	multi := decompresstest.XZ(t, xml, 2<<10)
	blocks := decompresstest.XZBlocks(t, multi)
	if len(blocks) < 2 {
		t.Fatalf("%d xz blocks, want 2 or more", len(blocks))
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(xml)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, file  string
		primary     []byte
		maxMetadata int64
		want        string
	}{
		{"xz asking for a 4 GiB dictionary", "primary.xml.xz", decompresstest.WithXZDict(t, one, 40, 12), 0,
			"primary repodata/primary.xml.xz: xz block at byte 12 needs a 4095 MiB dictionary, more than the 64 MiB allowed"},
		{"xz asking for 1.5 GiB in its second block", "primary.xml.xz", decompresstest.WithXZDict(t, multi, 37, blocks[1]), 0,
			fmt.Sprintf("xz block at byte %d needs a 1536 MiB dictionary", blocks[1])},
		{"gzip over MaxMetadataSize", "primary.xml.gz", gz.Bytes(), int64(len(xml)) - 1,
			fmt.Sprintf("gzip data decompresses to more than %d bytes", len(xml)-1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestMirrorConfig(t, "", Config{Workers: 2, MaxMetadataSize: tt.maxMetadata})
			m.add(t, "hostile", hostileRepo(t, tt.file, tt.primary))
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			start := time.Now()
			res := m.sync(t, "hostile")
			runtime.ReadMemStats(&after)
			if res.Err == nil || !strings.Contains(res.Err.Error(), tt.want) {
				t.Fatalf("sync error = %v, want one saying %q", res.Err, tt.want)
			}
			if !errors.Is(res.Err, decompress.ErrTooLarge) {
				t.Errorf("sync error %v does not match decompress.ErrTooLarge", res.Err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %s", d)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
				t.Errorf("allocated %d MiB to refuse it", alloc>>20)
			}
			if c, _ := m.idx.Counts(); c.Packages != 0 {
				t.Fatalf("%d packages indexed", c.Packages)
			}
			src, _ := m.Source("hostile")
			if !strings.HasPrefix(src.State.LastResult, "failed") || !strings.Contains(src.State.LastResult, tt.want) {
				t.Errorf("last result %q, want a failure saying %q", src.State.LastResult, tt.want)
			}
		})
	}
}
