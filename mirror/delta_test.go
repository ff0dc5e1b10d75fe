package mirror

import (
	"context"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// TestCompactDeltas: the fixture repository holds versions 1.0 and 1.1
// of each package (real RPMs from rpmbuild). After compaction every ELF
// file of 1.1 that differs from 1.0's (executables and libraries by
// path; Fedora-style debug files, whose names carry the version, by the
// name without it) is a delta whose base is the same file of 1.0, and a
// whole blob; every file reads back; the source counts delta bytes.
func TestCompactDeltas(t *testing.T) {
	m := newTestMirror(t, "")
	m.add(t, "fx", fixtures.Path("repo"))
	if res := m.sync(t, "fx"); !res.OK() {
		t.Fatalf("sync: %s", res.Summary())
	}
	res, err := m.Compact(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Each file by package name and path with the version taken out.
	type key struct{ name, path string }
	files := map[string]map[key]index.File{} // version -> files
	if err := m.idx.Packages(func(p *index.Package) error {
		v := p.NEVRA.Version
		if files[v] == nil {
			files[v] = map[key]index.File{}
		}
		for _, f := range p.Files {
			if f.BuildID.IsZero() || f.Blob.IsZero() {
				continue
			}
			files[v][key{p.NEVRA.Name, m.lineKey(p.NEVRA, &f)}] = f
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(files["1.0"]) == 0 || len(files["1.0"]) != len(files["1.1"]) {
		t.Fatalf("ELF files: %d of 1.0, %d of 1.1", len(files["1.0"]), len(files["1.1"]))
	}
	deltas := 0
	for k, nf := range files["1.1"] {
		of, ok := files["1.0"][k]
		if !ok {
			t.Errorf("%s %s: no 1.0 counterpart", k.name, nf.Path)
			continue
		}
		if of.Blob == nf.Blob {
			continue
		}
		info, err := m.pool.Info(nf.Blob)
		if err != nil {
			t.Fatal(err)
		}
		if !info.Delta || info.Base != of.Blob {
			t.Errorf("%s %s: %+v; want a delta on 1.0's %s (%s); compaction's delta errors: %q", k.name, nf.Path, info, of.Path, of.Blob, res.DeltaErrors)
			continue
		}
		deltas++
		if oi, err := m.pool.Info(of.Blob); err != nil || oi.Delta || !oi.Compacted {
			t.Errorf("base %s: %+v, %v; want a compacted whole blob", of.Path, oi, err)
		}
	}
	if deltas == 0 || res.Deltas != deltas {
		t.Errorf("%d deltas checked, Compact says %d", deltas, res.Deltas)
	}
	if err := m.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if f.Blob.IsZero() {
				continue
			}
			if _, err := m.pool.Plain(f.Blob); err != nil {
				t.Errorf("%s %s: %v", p.NEVRA, f.Path, err)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	src, err := m.Source("fx")
	if err != nil {
		t.Fatal(err)
	}
	if st := src.State; st.BytesDelta <= 0 || st.BytesDelta >= st.BytesStored {
		t.Errorf("source counts %d bytes of deltas of %d stored", st.BytesDelta, st.BytesStored)
	}
}

// TestCompactNoDeltas: with deltas off every blob stays whole.
func TestCompactNoDeltas(t *testing.T) {
	m := newTestMirrorConfig(t, "", Config{Compact: CompactConfig{NoDeltas: true}})
	m.add(t, "fx", fixtures.Path("repo"))
	if res := m.sync(t, "fx"); !res.OK() {
		t.Fatalf("sync: %s", res.Summary())
	}
	res, err := m.Compact(context.Background())
	if err != nil || res.Deltas != 0 || res.Blobs == 0 {
		t.Fatalf("Compact: %+v, %v", res, err)
	}
	if err := m.pool.Walk(func(d blob.Digest, _ int64) error {
		info, err := m.pool.Info(d)
		if err == nil && info.Delta {
			t.Errorf("%s is a delta", d)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLineKey: version parts out, build-id debug files by their
// executable, paths as under a merged /usr.
func TestLineKey(t *testing.T) {
	m := newTestMirror(t, "")
	n := index.NEVRA{Name: "glibc", Version: "2.39", Release: "17.fc40", Arch: "x86_64"}
	for path, want := range map[string]string{
		"/usr/lib64/libc.so.6": "/usr/lib#/libc.so.#",
		"/usr/lib/debug/usr/lib64/libc.so.6-2.39-17.fc40.x86_64.debug": "/usr/lib/debug/usr/lib#/libc.so.#.debug",
		"/usr/lib/x86_64-linux-gnu/libssl.so.3":                        "/usr/lib/x#_#-linux-gnu/libssl.so.#",
		"/usr/lib/debug/.build-id/ab/cdef.debug":                       "", // no build-id known
		"/lib/x86_64-linux-gnu/libc.so.6":                              "/usr/lib/x#_#-linux-gnu/libc.so.#",
		"/usr/lib/x86_64-linux-gnu/libc.so.6":                          "/usr/lib/x#_#-linux-gnu/libc.so.#",
		"/bin/ls":                                                      "/usr/bin/ls",
		"/sbin/ldconfig":                                               "/usr/bin/ldconfig",
		"/usr/sbin/sshd":                                               "/usr/bin/sshd",
		"/usr/lib/debug/lib64/libc.so.6.debug":                         "/usr/lib/debug/usr/lib#/libc.so.#.debug",
		"/usr/libexec/binary":                                          "/usr/libexec/binary",
		"/library/x":                                                   "/library/x",
	} {
		if got := m.lineKey(n, &index.File{Path: path}); got != want {
			t.Errorf("lineKey(%s) = %q, want %q", path, got, want)
		}
	}
}
