package mirror

import (
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
)

// TestSyncIndexesAltLinks: a sync of the Fedora-style repository records,
// for each dwz-processed debug file, the build-id its .gnu_debugaltlink
// names (expected/altlinks-dist.txt, read with readelf), and the files
// without one have none; every build-id of the repository is indexed as
// the reference lists it.
func TestSyncIndexesAltLinks(t *testing.T) {
	m := newTestMirror(t, "")
	m.add(t, "dist", fixtures.Path("repo-dist"))
	if res := m.sync(t, "dist"); !res.OK() {
		t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
	}
	want := map[string]string{} // NEVRA PATH -> altlink build-id
	for _, a := range fixtures.AltLinks(t) {
		want[a.NEVRA+" "+a.Path] = a.AltBuildID
	}
	if len(want) == 0 {
		t.Fatal("altlinks-dist.txt is empty")
	}
	found := 0
	for _, e := range fixtures.DistELFFiles(t) {
		id, err := index.ParseBuildID(e.BuildID)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := m.idx.Lookup(id)
		if err != nil {
			t.Fatalf("%s %s: %v", e.NEVRA, e.Path, err)
		}
		for _, mt := range ms {
			if mt.NEVRA.String() != e.NEVRA || mt.Path != e.Path {
				continue
			}
			found++
			if got := mt.AltLink.String(); got != want[e.NEVRA+" "+e.Path] { // "" for none
				t.Errorf("%s %s: altlink %q, want %q", e.NEVRA, e.Path, got, want[e.NEVRA+" "+e.Path])
			}
		}
	}
	if found != len(fixtures.DistELFFiles(t)) {
		t.Errorf("%d of %d ELF files indexed", found, len(fixtures.DistELFFiles(t)))
	}
}
