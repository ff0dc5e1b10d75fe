package mirror

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/mirror/rpmfile"
)

// signedSource is repo-signed served at url, trusting the RSA and Ed25519
// test keys.
func signedSource(t *testing.T, name, url string) Source {
	return Source{Name: name, URL: url, Kind: KindYum, GPGCheck: true, RepoGPGCheck: true,
		GPGKeys: []string{fixtures.Key(t, "rsa.asc"), fixtures.Key(t, "ed25519.asc")}}
}

// TestSignedSync: with gpgcheck, the packages rpmsign signed with a trusted
// key (RSA and EdDSA) land; the unsigned one, the one signed by another
// key, the one whose payload was altered after signing and the one whose
// header was altered are each refused with their reason, as rpm -K judges
// them, and none of their build-ids is indexed. The three refused at the
// header leave nothing in the pool; the one refused at the end of its
// payload leaves only its own files, unreferenced, for gc.
func TestSignedSync(t *testing.T) {
	url := fixtures.NewServer(fixtures.FS("repo-signed")).Start(t)
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), signedSource(t, "signed", url)); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "signed")
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	reasons := map[string]struct {
		err  error
		text string
	}{
		"counter-1.0-1.x86_64.rpm": {rpmfile.ErrUnsigned, "not signed"},
		"counter-1.1-1.x86_64.rpm": {rpmfile.ErrUnknownKey, "not one of the trusted keys"},
		"crashme-1.1-1.x86_64.rpm": {ErrPayloadDigest, "altered"},
		"greeter-1.1-1.x86_64.rpm": {rpmfile.ErrBadSignature, "does not verify"},
	}
	failed := map[string]error{}
	for _, f := range res.Failed {
		failed[filepath.Base(f.Location)] = f.Err
	}
	okNEVRAs := map[string]bool{}
	badNEVRAs := map[string]bool{}
	for _, v := range fixtures.SignedPackages(t) {
		nevra := strings.TrimSuffix(v.File, ".rpm")
		if nevra == "counter-1.1-1.x86_64" {
			nevra = "counter-1:1.1-1.x86_64"
		}
		err, refused := failed[v.File]
		if refused == v.OK {
			t.Errorf("%s: refused=%v (%v), rpm -K says %q", v.File, refused, err, v.RPM)
		}
		if !refused {
			okNEVRAs[nevra] = true
			continue
		}
		badNEVRAs[nevra] = true
		want, ok := reasons[v.File]
		if !ok || !errors.Is(err, want.err) || !strings.Contains(err.Error(), want.text) {
			t.Errorf("%s: refused with %q, want %v mentioning %q", v.File, err, want.err, want.text)
		}
		t.Logf("%s: %v", v.File, err)
	}
	if len(failed) != len(reasons) || res.New != len(okNEVRAs) {
		t.Fatalf("%s; failed %v", res.Summary(), failed)
	}
	// The signed packages' build-ids are all there, the refused ones' none.
	ids, want := expectedLines(t, func(e fixtures.ELFFile) bool { return okNEVRAs[e.NEVRA] })
	diffLines(t, m.lookupLines(t, ids), want)
	badIDs := map[string]bool{}
	for _, e := range fixtures.ELFFiles(t) {
		if !badNEVRAs[e.NEVRA] {
			continue
		}
		badIDs[e.BuildID] = true
		id, _ := index.ParseBuildID(e.BuildID)
		if ms, err := m.idx.Lookup(id); !errors.Is(err, index.ErrNotFound) {
			t.Errorf("%s of refused %s is indexed: %v %v", e.BuildID, e.NEVRA, ms, err)
		}
	}
	for n := range badNEVRAs {
		nv, err := index.ParseNEVRA(n)
		if err != nil {
			t.Fatal(err)
		}
		if have, _ := m.idx.HasPackage(nv); have {
			t.Errorf("refused %s is in the index", n)
		}
	}
	// The pool: every blob is named by an indexed package; the package
	// refused after its payload streamed (crashme-1.1) left nothing.
	named := map[blob.Digest]bool{}
	if err := m.idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			named[f.Blob] = true
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := m.pool.Walk(func(d blob.Digest, _ int64) error {
		if !named[d] {
			t.Errorf("blob %s is named by no package: a refused package's file", d)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if temps, _ := filepath.Glob(filepath.Join(m.pool.Dir(), "tmp", "*")); len(temps) != 0 {
		t.Errorf("temp files left: %v", temps)
	}
	// The status: each refused package with its reason.
	src, err := m.Source("signed")
	if err != nil {
		t.Fatal(err)
	}
	if len(src.State.Failed) != len(reasons) || !strings.HasPrefix(src.State.LastResult, "partial") {
		t.Errorf("state: %s, %v", src.State.LastResult, src.State.Failed)
	}
}

// TestSignedLinking: a package the index has from an unchecked source is
// linked to a gpgcheck source only when the verified package's files are
// those indexed; a NEVRA indexed with other content is refused.
func TestSignedLinking(t *testing.T) {
	url := fixtures.NewServer(fixtures.FS("repo-signed")).Start(t)
	m := newTestMirror(t, "")
	// The unsigned repository's copies of the same builds first.
	m.add(t, "plain", fixtures.Path("repo-v1"))
	if res := m.sync(t, "plain"); !res.OK() {
		t.Fatal(res.Summary())
	}
	if _, err := m.Add(context.Background(), signedSource(t, "signed", url)); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "signed")
	// crashme-1.0, crashme-debuginfo-1.0, greeter-1.0 and
	// greeter-debuginfo-1.0: verified, the same content as repo-v1's.
	if res.Linked != 4 || res.New != 0 {
		t.Fatalf("%s: want 4 linked", res.Summary())
	}
	n, _ := index.ParseNEVRA("crashme-1.0-1.x86_64")
	if ok, err := m.idx.HasMembership("signed", n); !ok || err != nil {
		t.Fatalf("crashme-1.0 not linked to signed: %v", err)
	}
}

// TestRepomdSignature: with repo_gpgcheck, a repomd.xml that does not
// match its repomd.xml.asc, or has none, fails the sync before anything
// is fetched.
func TestRepomdSignature(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, fixtures.FS("repo-signed")); err != nil {
		t.Fatal(err)
	}
	repomd := filepath.Join(dir, "repodata", "repomd.xml")
	b, err := os.ReadFile(repomd)
	if err != nil {
		t.Fatal(err)
	}
	// Still valid XML, with the same checksums: only the signature tells.
	if err := os.WriteFile(repomd, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	m := newTestMirror(t, "")
	if _, err := m.Add(context.Background(), signedSource(t, "altered", dir)); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "altered")
	if !errors.Is(res.Err, rpmfile.ErrBadSignature) || !strings.Contains(res.Err.Error(), "repomd.xml.asc") || res.New != 0 {
		t.Fatalf("altered repomd.xml: %v, %s", res.Err, res.Summary())
	}
	if _, err := m.Add(context.Background(), signedSource(t, "unsigned", fixtures.Path("repo"))); err != nil {
		t.Fatal(err)
	}
	if res := m.sync(t, "unsigned"); res.Err == nil || !strings.Contains(res.Err.Error(), "repomd.xml.asc") || res.New != 0 {
		t.Fatalf("no repomd.xml.asc: %v, %s", res.Err, res.Summary())
	}
}

// TestGPGCheckNeedsKeys: gpgcheck without a key, a secret key, or garbage
// as a key is refused when the source is added.
func TestGPGCheckNeedsKeys(t *testing.T) {
	m := newTestMirror(t, "")
	for name, s := range map[string]Source{
		"nokey":   {GPGCheck: true},
		"garbage": {GPGCheck: true, GPGKeys: []string{"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnope\n-----END PGP PUBLIC KEY BLOCK-----\n"}},
		"repo":    {RepoGPGCheck: true},
	} {
		s.Name, s.URL, s.Kind = name, fixtures.Path("repo-signed"), KindYum
		if _, err := m.Add(context.Background(), s); !errors.Is(err, ErrBadSource) {
			t.Errorf("%s: %v, want ErrBadSource", name, err)
		}
	}
}
