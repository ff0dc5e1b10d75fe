package index

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/retraced/retraced/index/kv"
)

func all(string) bool { return true }

// scanAll returns what ScanPaths passes, as "path nevra kind id archive".
func scanAll(t *testing.T, s *Store, path string, exact bool) []string {
	t.Helper()
	var got []string
	err := s.ScanPaths(context.Background(), path, exact, all, func(e PathEntry) bool {
		got = append(got, strings.Join([]string{e.Path, e.NEVRA.String(), e.Kind.String(), e.BuildID.String(), e.Archive}, " "))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func putPathFixtures(t *testing.T, s *Store) {
	t.Helper()
	a, b := mustID(t, "aa01"), mustID(t, "bb02")
	p1 := pkg(t, "a-1-1.x86_64", "src",
		File{Path: "/usr/bin/a", BuildID: a, Kind: KindExecutable},
		File{Path: "/usr/bin/a-helper", BuildID: b, Kind: KindExecutable},
		File{Path: "/usr/bin/a.sh"}, // no build-id: not indexed
		File{Path: "/usr/lib/.build-id/aa/01", Link: "../../../bin/a"},
	)
	p1.FileName = "a-1-1.x86_64.rpm"
	p2 := pkg(t, "a-1:2-1.x86_64", "src", File{Path: "/usr/bin/a", BuildID: b, Kind: KindExecutable})
	// no FileName: the archive is NEVRA.rpm
	p3 := pkg(t, "a-debuginfo-1-1.x86_64", "src", File{Path: "/usr/lib/debug/usr/bin/a-1-1.x86_64.debug", BuildID: a, Kind: KindDebuginfo})
	p3.FileName = "a-debuginfo-1-1.x86_64.rpm"
	if err := s.PutPackages([]*Package{p1, p2, p3}); err != nil {
		t.Fatal(err)
	}
}

// TestPathIndex: the path index holds the files with build-id matches,
// found by exact path or prefix, and loses a package's entries when the
// package is deleted.
func TestPathIndex(t *testing.T) {
	both(t, func(t *testing.T) {
		s := openTest(t)
		putPathFixtures(t, s)
		exact := scanAll(t, s, "/usr/bin/a", true)
		want := []string{
			"/usr/bin/a a-1-1.x86_64 executable aa01 a-1-1.x86_64.rpm",
			"/usr/bin/a a-1:2-1.x86_64 executable bb02 a-1:2-1.x86_64.rpm",
		}
		if !slices.Equal(exact, want) {
			t.Fatalf("exact /usr/bin/a:\n got %q\nwant %q", exact, want)
		}
		prefix := scanAll(t, s, "/usr/bin/a", false)
		want = append(want, "/usr/bin/a-helper a-1-1.x86_64 executable bb02 a-1-1.x86_64.rpm")
		if !slices.Equal(prefix, want) {
			t.Fatalf("prefix /usr/bin/a:\n got %q\nwant %q", prefix, want)
		}
		if all := scanAll(t, s, "", false); len(all) != 4 {
			t.Fatalf("whole index: %d entries, want 4 (no link, no file without a build-id): %q", len(all), all)
		}
		n := 0
		if err := s.ScanPaths(context.Background(), "", false, all, func(PathEntry) bool { n++; return false }); err != nil || n != 1 {
			t.Fatalf("a scan fn stops after its first entry: %d calls, %v", n, err)
		}
		var passed []string
		if err := s.ScanPaths(context.Background(), "/usr/", false, func(p string) bool {
			passed = append(passed, p)
			return strings.HasSuffix(p, "-helper")
		}, func(e PathEntry) bool {
			if e.Path != "/usr/bin/a-helper" {
				t.Errorf("fn got %s, which match refused", e.Path)
			}
			return true
		}); err != nil || len(passed) != 4 {
			t.Fatalf("match saw %q (%v), want the 4 paths under /usr/", passed, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := s.ScanPaths(ctx, "", false, all, func(PathEntry) bool { return true }); !errors.Is(err, context.Canceled) {
			t.Fatalf("scan under an ended context: %v, want context.Canceled", err)
		}
		if err := s.DeletePackage(mustNEVRA(t, "a-1-1.x86_64")); err != nil {
			t.Fatal(err)
		}
		got := scanAll(t, s, "/usr/bin/", false)
		if want := []string{"/usr/bin/a a-1:2-1.x86_64 executable bb02 a-1:2-1.x86_64.rpm"}; !slices.Equal(got, want) {
			t.Fatalf("after deleting a-1-1: %q, want %q", got, want)
		}
	})
}

// TestPathIndexBuiltOnOpen: a store written before the path index existed
// (its path keys and mark removed here) gets it when opened writable, and
// an empty store writes nothing until its first package.
func TestPathIndexBuiltOnOpen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "index")
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	keys := func() int {
		n := 0
		if err := s.db.View(func(r kv.Reader) error {
			return r.Scan(nil, true, func(_, _ []byte) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := keys(); n != 0 {
		t.Fatalf("a new store holds %d keys, want none (migrate copies into empty stores only)", n)
	}
	putPathFixtures(t, s)
	want := scanAll(t, s, "", false)
	if ok, _ := s.has([]byte(keyPathsBuilt)); !ok {
		t.Fatal("the first put did not mark the path index built")
	}
	// Make it a store of the days before the path index.
	if err := s.db.Update(func(txn kv.Txn) error {
		var old [][]byte
		if err := txn.Scan([]byte(prefixPath), true, func(k, _ []byte) error {
			old = append(old, append([]byte(nil), k...))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range append(old, []byte(keyPathsBuilt)) {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	ro, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := ro.ScanPaths(context.Background(), "", false, all, func(PathEntry) bool { return true }); err != ErrNoPathIndex {
		t.Fatalf("read-only store without a path index: %v, want ErrNoPathIndex", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if got := scanAll(t, s, "", false); !slices.Equal(got, want) {
		t.Fatalf("rebuilt path index:\n got %q\nwant %q", got, want)
	}
	if ok, _ := s.has([]byte(keyPathsBuilt)); !ok {
		t.Fatal("the rebuild did not mark the path index built")
	}
}

// BenchmarkScanPaths reads a path index of 100000 files (10000 packages
// of ten libraries) whole: the cost of a /metadata glob that starts with
// a wildcard, per entry.
func BenchmarkScanPaths(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "index"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	const pkgs, perPkg = 10000, 10
	var batch []*Package
	for p := range pkgs {
		pk := &Package{NEVRA: NEVRA{Name: fmt.Sprintf("lib%d", p), Version: "1.0", Release: "1", Arch: "x86_64"},
			FileName: fmt.Sprintf("lib%d-1.0-1.x86_64.rpm", p), Sources: []string{"b"}, Checksum: "sha256:0"}
		for f := range perPkg {
			id, _ := BuildIDFromBytes([]byte(fmt.Sprintf("%08d%08d%04d", p, f, 0)))
			pk.Files = append(pk.Files, File{Path: fmt.Sprintf("/usr/lib64/lib%d_%d.so.1", p, f), BuildID: id, Kind: KindExecutable})
		}
		if batch = append(batch, pk); len(batch) == 1000 {
			if err := s.PutPackages(batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := s.Flatten(); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		match func(string) bool
		want  int
	}{{"decode-all", all, pkgs * perPkg}, {"match-none", func(string) bool { return false }, 0}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				n := 0
				if err := s.ScanPaths(context.Background(), "", false, bc.match, func(PathEntry) bool { n++; return true }); err != nil || n != bc.want {
					b.Fatalf("%d entries, %v", n, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*pkgs*perPkg), "ns/entry")
		})
	}
}
