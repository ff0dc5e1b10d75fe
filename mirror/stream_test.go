package mirror

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index/blob"
)

// TestStreamedMembers syncs the fixture repository with every member
// streamed (none held in memory), once finding build-ids in the kept ends
// of each file and once with ends too short for that, so every ELF file is
// read back from its stored copy. Both must index what eu-readelf lists
// and store the same blobs as the in-memory path.
func TestStreamedMembers(t *testing.T) {
	ids, want := expectedLines(t, nil)
	blobs := func(m *testMirror) map[blob.Digest]bool {
		got := map[blob.Digest]bool{}
		if err := m.pool.Walk(func(d blob.Digest, _ int64) error { got[d] = true; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	base := newTestMirror(t, "")
	base.add(t, "fx", fixtures.Path("repo"))
	if res := base.sync(t, "fx"); !res.OK() {
		t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
	}
	wantBlobs := blobs(base)

	for _, tc := range []struct {
		name string
		ends int
	}{{"ends", 256 << 10}, {"read back", 64}} {
		t.Run(tc.name, func(t *testing.T) {
			old := memberEnds
			memberEnds = tc.ends
			defer func() { memberEnds = old }()
			m := newTestMirrorConfig(t, "", Config{Workers: 2, InMemoryMax: 1})
			m.add(t, "fx", fixtures.Path("repo"))
			if res := m.sync(t, "fx"); !res.OK() {
				t.Fatalf("sync: %s %v", res.Summary(), res.Failed)
			}
			diffLines(t, m.lookupLines(t, ids), want)
			got := blobs(m)
			if len(got) != len(wantBlobs) {
				t.Fatalf("%d blobs stored, the in-memory path stores %d", len(got), len(wantBlobs))
			}
			for d := range wantBlobs {
				if !got[d] {
					t.Fatalf("blob %s missing", d)
				}
			}
			left, err := os.ReadDir(filepath.Join(m.pool.Dir(), "tmp"))
			if err != nil || len(left) > 0 {
				t.Fatalf("temp files left behind: %v %v", left, err)
			}
		})
	}
}

// TestEnds checks the kept ends of a stream against the whole of it, for
// reads inside, across and outside the kept ranges.
func TestEnds(t *testing.T) {
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	r := rand.New(rand.NewPCG(1, 2))
	e := newEnds(int64(len(data)), 1000)
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 1+r.IntN(700))
		e.Write(rest[:n])
		rest = rest[n:]
	}
	whole := bytes.NewReader(data)
	for i := 0; i < 2000; i++ {
		off := int64(r.IntN(len(data) + 50))
		p := make([]byte, 1+r.IntN(300))
		q := make([]byte, len(p))
		e.missed = false
		n, err := e.ReadAt(p, off)
		wn, werr := whole.ReadAt(q, off)
		end := off + int64(len(p))
		kept := off >= int64(len(data)) || end <= 1000 || off >= int64(len(data))-1000
		if !kept {
			if !e.missed || err == nil {
				t.Fatalf("ReadAt(%d, %d) outside the ends: n %d err %v missed %v", len(p), off, n, err, e.missed)
			}
			continue
		}
		if n != wn || (err == nil) != (werr == nil) || !bytes.Equal(p[:n], q[:wn]) || e.missed {
			t.Fatalf("ReadAt(%d, %d) = %d, %v; bytes.Reader says %d, %v", len(p), off, n, err, wn, werr)
		}
		if err != nil && err != io.EOF {
			t.Fatalf("ReadAt(%d, %d): %v", len(p), off, err)
		}
	}
	small := newEnds(10, 1000)
	small.Write(data[:10])
	p := make([]byte, 10)
	if n, err := small.ReadAt(p, 0); n != 10 || err != nil || !bytes.Equal(p, data[:10]) {
		t.Fatalf("a stream shorter than its ends: %d %v", n, err)
	}
}
