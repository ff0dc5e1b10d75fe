package index

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/retraced/retraced/index/kv"

	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index/blob"
)

// both runs test once on each engine; openTest opens the engine its
// subtest is named after.
func both(t *testing.T, test func(t *testing.T)) {
	t.Run("badger", test)
	t.Run("postgres", test)
}

// openTest opens an empty store: in PostgreSQL (a cluster of the test's
// own) under a subtest named postgres, in Badger otherwise.
func openTest(t testing.TB) *Store {
	t.Helper()
	var s *Store
	var err error
	if strings.HasSuffix(t.Name(), "/postgres") {
		s, err = OpenPostgres(context.Background(), servers.Postgres(t), Options{Node: "test"})
	} else {
		s, err = Open(filepath.Join(t.TempDir(), "index"), Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

func mustNEVRA(t testing.TB, s string) NEVRA {
	t.Helper()
	n, err := ParseNEVRA(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func mustID(t testing.TB, s string) BuildID {
	t.Helper()
	id, err := ParseBuildID(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func pkg(t testing.TB, nevra, source string, files ...File) *Package {
	return &Package{NEVRA: mustNEVRA(t, nevra), Sources: []string{source}, Files: files, Checksum: "sha256:00"}
}

func TestPutLookup(t *testing.T) {
	both(t, func(t *testing.T) {
		s := openTest(t)
		id := mustID(t, "60ab14b93363b97940e389f6abed7ac2441653e4")
		other := mustID(t, "0123")
		content := blob.Sum([]byte("x"))
		if err := s.PutPackage(pkg(t, "counter-1.0-1.x86_64", "fx",
			File{Path: "/usr/lib64/libcounter.so.1.0.0", BuildID: id, Kind: KindExecutable, Blob: content, Size: 1},
			File{Path: "/usr/lib64/libcounter.so.1", Link: "libcounter.so.1.0.0"},
		)); err != nil {
			t.Fatal(err)
		}
		// An identical rebuild: same id, newer release.
		if err := s.PutPackage(pkg(t, "counter-1.0-2.x86_64", "fx",
			File{Path: "/usr/lib64/libcounter.so.1.0.0", BuildID: id, Kind: KindExecutable, Blob: content, Size: 1})); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPackage(pkg(t, "counter-debuginfo-1.0-1.x86_64", "fx",
			File{Path: "/usr/lib/debug/usr/lib64/libcounter.so.1.0.0-1.0-1.x86_64.debug", BuildID: id, Kind: KindDebuginfo, Blob: content})); err != nil {
			t.Fatal(err)
		}
		ms, err := s.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, m := range ms {
			got = append(got, m.NEVRA.String()+" "+m.Kind.String())
		}
		want := []string{"counter-debuginfo-1.0-1.x86_64 debuginfo", "counter-1.0-2.x86_64 executable", "counter-1.0-1.x86_64 executable"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("matches:\n got %q\nwant %q", got, want)
		}
		if _, err := s.Lookup(other); !errors.Is(err, ErrNotFound) {
			t.Fatalf("unknown id: err = %v, want ErrNotFound", err)
		}
		c, err := s.Counts()
		if err != nil {
			t.Fatal(err)
		}
		if c.Packages != 3 || c.BuildIDs != 1 || c.Files != 4 {
			t.Fatalf("counts = %+v, want 3 packages, 1 build-id, 4 files", c)
		}
	})
}

func TestPutPackageTwiceMergesSources(t *testing.T) {
	both(t, func(t *testing.T) {
		s := openTest(t)
		id := mustID(t, "aabb")
		for _, src := range []string{"a", "b", "a"} {
			if err := s.PutPackage(pkg(t, "x-1-1.x86_64", src, File{Path: "/usr/bin/x", BuildID: id, Kind: KindExecutable})); err != nil {
				t.Fatal(err)
			}
		}
		views, err := resolve(s, id)
		if err != nil {
			t.Fatal(err)
		}
		if len(views) != 1 || strings.Join(views[0].Repos, ",") != "a,b" {
			t.Fatalf("Resolve = %+v, want one match with repos a,b", views)
		}
		for _, src := range []string{"a", "b"} {
			ok, err := s.HasMembership(src, mustNEVRA(t, "x-1-1.x86_64"))
			if err != nil || !ok {
				t.Fatalf("HasMembership(%s) = %v, %v", src, ok, err)
			}
		}
		if c, _ := s.Counts(); c.Packages != 1 || c.BuildIDs != 1 {
			t.Fatalf("counts after re-put = %+v", c)
		}
	})
}

// TestReposKey follows a package's sources through put, a second
// source's membership and delete, and checks that a store written before
// the repos key existed still answers from the package record.
func TestReposKey(t *testing.T) {
	both(t, func(t *testing.T) {
		s := openTest(t)
		id := mustID(t, "ccdd")
		n := mustNEVRA(t, "y-1-1.x86_64")
		repos := func() string {
			t.Helper()
			views, err := resolve(s, id)
			if err != nil {
				t.Fatal(err)
			}
			return strings.Join(views[0].Repos, ",")
		}
		if err := s.PutPackage(pkg(t, "y-1-1.x86_64", "a", File{Path: "/usr/bin/y", BuildID: id, Kind: KindExecutable})); err != nil {
			t.Fatal(err)
		}
		if got := repos(); got != "a" {
			t.Fatalf("repos after put = %q, want a", got)
		}
		if err := s.AddMembership("b", n, "sha256:00"); err != nil {
			t.Fatal(err)
		}
		if got := repos(); got != "a,b" {
			t.Fatalf("repos after AddMembership = %q, want a,b", got)
		}
		// An older store: no repos key.
		if err := s.update(func(txn kv.Txn) error { return txn.Delete(reposKey(n)) }); err != nil {
			t.Fatal(err)
		}
		if got := repos(); got != "a,b" {
			t.Fatalf("repos without the repos key = %q, want a,b from the package", got)
		}
		if err := s.DeletePackage(n); err != nil {
			t.Fatal(err)
		}
		if found, err := s.has(reposKey(n)); err != nil || found {
			t.Fatalf("repos key after delete: found %v, err %v", found, err)
		}
	})
}

func TestSources(t *testing.T) {
	both(t, func(t *testing.T) {
		s := openTest(t)
		if err := s.PutSource("fx", []byte(`{"name":"fx"}`)); err != nil {
			t.Fatal(err)
		}
		rec, err := s.Source("fx")
		if err != nil || string(rec) != `{"name":"fx"}` {
			t.Fatalf("Source = %q, %v", rec, err)
		}
		if err := s.DeleteSource("fx"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Source("fx"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("after delete: %v", err)
		}
		if err := s.DeleteSource("fx"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestSecondWriterRefused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := Open(dir, Options{}); err == nil {
		s2.Close()
		t.Fatal("second Open of the same directory succeeded")
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	good := encodeMatches([]Match{{NEVRA: NEVRA{Name: "a", Version: "1", Release: "1", Arch: "x"}, Kind: KindExecutable, Path: "/a"}})
	for i := 0; i < len(good); i++ {
		if _, err := decodeMatches(good[:i]); err == nil {
			t.Fatalf("decode of %d/%d bytes succeeded", i, len(good))
		}
	}
}

// TestCodecAltLink: matches with a dwz multifile round-trip; a value
// without the trailer (as written before altlinks were stored) decodes
// with none; a cut trailer is an error.
func TestCodecAltLink(t *testing.T) {
	alt := mustID(t, "6424f162dfc250ce48d2f9799250817b83847827")
	ms := []Match{
		{NEVRA: NEVRA{Name: "a-debuginfo", Version: "1", Release: "1", Arch: "x"}, Kind: KindDebuginfo, Path: "/usr/lib/debug/a.debug", AltLink: alt},
		{NEVRA: NEVRA{Name: "a", Version: "1", Release: "1", Arch: "x"}, Kind: KindExecutable, Path: "/a"},
	}
	b := encodeMatches(ms)
	got, err := decodeMatches(b)
	if err != nil || len(got) != 2 || got[0].AltLink != alt || !got[1].AltLink.IsZero() {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	old := encodeMatches([]Match{ms[1]})
	if got, err := decodeMatches(old); err != nil || len(got) != 1 || !got[0].AltLink.IsZero() {
		t.Fatalf("value without a trailer: %+v, %v", got, err)
	}
	if len(b) <= len(encodeMatches([]Match{{NEVRA: ms[0].NEVRA, Kind: ms[0].Kind, Path: ms[0].Path}, ms[1]}))+20 {
		t.Fatalf("no trailer written: %d bytes", len(b))
	}
	if _, err := decodeMatches(b[:len(b)-1]); err == nil {
		t.Fatal("a cut trailer decoded")
	}
}

func FuzzDecodeMatches(f *testing.F) {
	f.Add(encodeMatches([]Match{{NEVRA: NEVRA{Name: "a", Version: "1", Release: "1", Arch: "x"}, Path: "/a"}}))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		ms, err := decodeMatches(b)
		if err != nil {
			return
		}
		if again, err := decodeMatches(encodeMatches(ms)); err != nil || len(again) != len(ms) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// fill writes n synthetic packages of one build-id each.
func fill(b testing.TB, s *Store, n int) []BuildID {
	ids := make([]BuildID, n)
	for i := range n {
		id := mustID(b, fmt.Sprintf("%040x", uint64(i)*0x9e3779b97f4a7c15))
		ids[i] = id
		if err := s.PutPackage(pkg(b, fmt.Sprintf("pkg%d-1.0-1.x86_64", i), "bench",
			File{Path: fmt.Sprintf("/usr/lib64/lib%d.so.1", i), BuildID: id, Kind: KindExecutable})); err != nil {
			b.Fatal(err)
		}
	}
	return ids
}

// BenchmarkLookup measures point lookups from GOMAXPROCS goroutines,
// through the lookup cache (warm: every id looked up before) and straight
// from Badger (cache off), with ids drawn uniformly. The floor is
// 1M lookups/s on 2 cores. With 100,000 ids the default cache (65,536
// entries) holds about two thirds of them, so uniform draws miss it a third
// of the time; BenchmarkLookupSkewed draws as crash reports do.
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		for _, cached := range []bool{true, false} {
			o := Options{CacheEntries: -1}
			if cached {
				o.CacheEntries = 0
			}
			s, err := Open(filepath.Join(b.TempDir(), "index"), o)
			if err != nil {
				b.Fatal(err)
			}
			ids := fill(b, s, n)
			for _, id := range ids {
				if _, err := s.Lookup(id); err != nil {
					b.Fatal(err)
				}
			}
			if err := s.db.Compact(); err != nil {
				b.Fatal(err)
			}
			b.Run(fmt.Sprintf("entries=%d/cache=%v", n, cached), func(b *testing.B) {
				var i atomic.Uint64
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						k := i.Add(0x9e3779b9) % uint64(len(ids))
						if _, err := s.Lookup(ids[k]); err != nil {
							b.Fatal(err)
						}
					}
				})
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
			})
			s.Close()
		}
	}
}

// BenchmarkLookupSkewed looks up 100,000 ids drawn from a Zipf
// distribution (s = 1.1): crash reports name the same libraries (libc,
// libstdc++, the crashing program's own) again and again, so a few ids
// take most lookups. Default cache, cold at the start.
func BenchmarkLookupSkewed(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "index"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ids := fill(b, s, 100_000)
	if err := s.db.Compact(); err != nil {
		b.Fatal(err)
	}
	var seed atomic.Uint64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		z := rand.NewZipf(rand.New(rand.NewPCG(seed.Add(1), 7)), 1.1, 1, uint64(len(ids)-1))
		for pb.Next() {
			if _, err := s.Lookup(ids[z.Uint64()]); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "lookups/s")
}

func TestDeletePackage(t *testing.T) {
	both(t, func(t *testing.T) {
		s := openTest(t)
		id := mustID(t, "aa01")
		shared := mustID(t, "bb02")
		if err := s.PutPackage(pkg(t, "a-1-1.x86_64", "src",
			File{Path: "/usr/bin/a", BuildID: id, Kind: KindExecutable},
			File{Path: "/usr/lib64/libs.so", BuildID: shared, Kind: KindExecutable})); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPackage(pkg(t, "a-1-2.x86_64", "src",
			File{Path: "/usr/lib64/libs.so", BuildID: shared, Kind: KindExecutable})); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(id); err != nil { // warm the cache: deletion must drop it
			t.Fatal(err)
		}
		if err := s.DeletePackage(mustNEVRA(t, "a-1-1.x86_64")); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lookup(id); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted package's id still resolves: %v", err)
		}
		ms, err := s.Lookup(shared)
		if err != nil || len(ms) != 1 || ms[0].NEVRA.Release != "2" {
			t.Fatalf("shared id: %+v %v", ms, err)
		}
		if ok, _ := s.HasMembership("src", mustNEVRA(t, "a-1-1.x86_64")); ok {
			t.Fatal("membership survived")
		}
		if c, _ := s.Counts(); c.Packages != 1 || c.BuildIDs != 1 || c.Files != 1 {
			t.Fatalf("counts %+v", c)
		}
		if err := s.DeletePackage(mustNEVRA(t, "a-1-1.x86_64")); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

// TestInBatches: a batch Badger finds too big is halved until it fits,
// every item is committed once and in order, and an item too big on its
// own is an error.
func TestInBatches(t *testing.T) {
	items := make([]int, 23)
	for i := range items {
		items[i] = i
	}
	var got []int
	var sizes []int
	err := inBatches(items, 10, func(b []int) error {
		if len(b) > 3 {
			return kv.ErrTooBig
		}
		sizes = append(sizes, len(b))
		got = append(got, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(items) {
		t.Fatalf("committed %v, want %v", got, items)
	}
	for _, n := range sizes {
		if n > 3 {
			t.Fatalf("a batch of %d was committed", n)
		}
	}
	err = inBatches(items, 10, func(b []int) error { return kv.ErrTooBig })
	if !errors.Is(err, kv.ErrTooBig) {
		t.Fatalf("an item too big alone: err = %v", err)
	}
}

// sourcedMatch is a match with the sources of its package, as the
// resolver's Resolve pairs them.
type sourcedMatch struct {
	Match
	Repos []string
}

// resolve looks id up and adds the sources of each match's package.
func resolve(s *Store, id BuildID) ([]sourcedMatch, error) {
	ms, err := s.Lookup(id)
	if err != nil {
		return nil, err
	}
	var out []sourcedMatch
	for _, m := range ms {
		r, err := s.SourcesOf(m.NEVRA)
		if err != nil {
			return nil, err
		}
		out = append(out, sourcedMatch{Match: m, Repos: r})
	}
	return out, nil
}
