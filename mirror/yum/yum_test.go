package yum

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

func primaryOf(t testing.TB, repo string) []byte {
	t.Helper()
	f, err := os.Open(fixtures.Path(repo, "repodata", "repomd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	md, err := ParseRepomd(f)
	if err != nil {
		t.Fatal(err)
	}
	d, err := md.Primary()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(fixtures.Path(repo, filepath.FromSlash(d.Location.Href)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseFixturePrimary(t *testing.T) {
	dec, err := Decompress(bytes.NewReader(primaryOf(t, "repo")), 0)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := ParsePrimary(dec, func(p *Package) error {
		e, err := p.Epoch()
		if err != nil {
			return err
		}
		evr := p.Version.Ver + "-" + p.Version.Rel
		if e != 0 {
			evr = p.Version.Epoch + ":" + evr
		}
		got[filepath.Base(p.Location.Href)] = p.Name + "-" + evr + "." + p.Arch + " " + strings.TrimSpace(p.Checksum.Value)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := fixtures.Packages(t)
	if len(got) != len(want) {
		t.Fatalf("parsed %d packages, createrepo_c listed %d", len(got), len(want))
	}
	for _, p := range want {
		if got[p.File] != p.NEVRA+" "+p.SHA256 {
			t.Errorf("%s: parsed %q, want %q", p.File, got[p.File], p.NEVRA+" "+p.SHA256)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, xml string }{
		{"not xml", "<html><body>502 Bad Gateway"},
		{"wrong root", "<html></html>"},
		{"empty", ""},
		{"package without name", `<metadata><package type="rpm"><arch>x86_64</arch><version ver="1" rel="1"/><location href="a.rpm"/></package></metadata>`},
		{"truncated", `<metadata><package type="rpm"><name>a</name>`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ParsePrimary(strings.NewReader(tt.xml), func(*Package) error { return nil })
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
		})
	}
	if _, err := ParseRepomd(strings.NewReader("garbage")); !errors.Is(err, ErrFormat) {
		t.Fatalf("repomd garbage: %v", err)
	}
	md, err := ParseRepomd(strings.NewReader(`<repomd><data type="filelists"/></repomd>`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := md.Primary(); !errors.Is(err, ErrFormat) {
		t.Fatalf("repomd without primary: %v", err)
	}
}

func FuzzParsePrimary(f *testing.F) {
	dec, err := Decompress(bytes.NewReader(primaryOf(f, "repo")), 0)
	if err != nil {
		f.Fatal(err)
	}
	b, err := io.ReadAll(dec)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte(`<metadata><package><name>a</name><arch>x</arch><version epoch="1" ver="1" rel="1"/><location href="a"/></package></metadata>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_ = ParsePrimary(bytes.NewReader(b), func(p *Package) error {
			if p.Name == "" || p.Location.Href == "" {
				t.Fatalf("package without name or location passed: %+v", p)
			}
			_, err := p.Epoch()
			return err
		})
	})
}
