package yum

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"
)

// The hashes in testdata/metalink.xml were written by sha512sum, sha256sum
// and sha1sum over "hello world\n" (current), "abc" and "old\n"
// (alternates).
func TestParseMetalink(t *testing.T) {
	b, err := os.ReadFile("testdata/metalink.xml")
	if err != nil {
		t.Fatal(err)
	}
	ml, err := ParseMetalink(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	wantVersions := []RepomdVersion{
		{Size: 12, Hash: Checksum{Type: "sha512", Value: "db3974a97f2407b7cae1ae637c0030687a11913274d578492558e39c16c017de84eacdc8c62fe34ee4e12b4b1428817f09b6a2760c3f8a664ceae94d2434a593"}},
		{Size: 3, Hash: Checksum{Type: "sha256", Value: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"}},
		{Hash: Checksum{Type: "sha1", Value: "281bac2b704617e807850e07e54bae3469f6a2e7"}},
	}
	if len(ml.Versions) != len(wantVersions) {
		t.Fatalf("versions = %+v, want %+v", ml.Versions, wantVersions)
	}
	for i, v := range wantVersions {
		if ml.Versions[i] != v {
			t.Errorf("version %d = %+v, want %+v", i, ml.Versions[i], v)
		}
	}
	// rsync and the URL that is not a repomd.xml are left out; the rest
	// by preference, ties in document order, no preference last.
	wantBases := []string{
		"http://b.example.net/pub/fedora/linux/updates/40/Everything/x86_64/",
		"https://a.example.net/fedora/updates/40/Everything/x86_64/",
		"https://c.example.net/fedora/updates/40/Everything/x86_64/",
		"https://d.example.net/fedora/updates/40/Everything/x86_64/",
	}
	var got []string
	for _, m := range ml.Mirrors {
		got = append(got, m.Base)
	}
	if strings.Join(got, "\n") != strings.Join(wantBases, "\n") {
		t.Fatalf("mirrors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(wantBases, "\n"))
	}
	if ml.Mirrors[0].Preference != 99 || ml.Mirrors[0].Location != "US" || ml.Mirrors[3].Preference != 0 {
		t.Fatalf("mirror attributes: %+v", ml.Mirrors)
	}

	for _, tt := range []struct {
		body string
		want int // -1: no match
	}{
		{"hello world\n", 0},
		{"abc", 1},
		{"old\n", 2},
		{"hello world!", -1}, // the current size, another hash
		{"abd", -1},
	} {
		i, err := ml.Match([]byte(tt.body))
		if i != tt.want || (err != nil) != (tt.want < 0) {
			t.Errorf("Match(%q) = %d, %v; want %d", tt.body, i, err, tt.want)
		}
	}
	if _, err := ml.Match([]byte("hello world!")); err == nil || !strings.Contains(err.Error(), "the metalink says db3974a9") {
		t.Errorf("mismatch error does not name the hashes: %v", err)
	}
	if _, err := ml.Match([]byte("four")); err == nil || !strings.Contains(err.Error(), "4 bytes, the metalink says 12") {
		t.Errorf("size mismatch error: %v", err)
	}
}

func TestParseMetalinkErrors(t *testing.T) {
	const (
		head = `<metalink version="3.0" xmlns="http://www.metalinker.org/" xmlns:mm0="http://fedorahosted.org/mirrormanager"><files><file name="repomd.xml">`
		hash = `<verification><hash type="sha256">a948904f2f0f479b8f8197694b30184b0d2ed1c1cd2a1ec0fb85d299a192a447</hash></verification>`
		url  = `<resources><url protocol="https" preference="100">https://m.example.net/r/repodata/repomd.xml</url></resources>`
		tail = `</file></files></metalink>`
	)
	tests := []struct{ name, xml, says string }{
		{"not xml", "<html><body>502 Bad Gateway", "metalink at byte"},
		{"empty", "", "metalink at byte"},
		{"wrong root", "<html></html>", "expected element type <metalink>"},
		{"truncated", head + hash, "unexpected EOF"},
		{"no repomd.xml", `<metalink><files><file name="other">` + hash + url + tail, `no <file name="repomd.xml">`},
		{"no hash", head + url + tail, "no sha512"},
		{"md5 only", head + `<verification><hash type="md5">6f5902ac237024bdd0c176cb93063dc4</hash></verification>` + url + tail, "no sha512"},
		{"short hash", head + `<verification><hash type="sha256">a948</hash></verification>` + url + tail, "want 64 hex digits"},
		{"bad size", head + `<size>-1</size>` + hash + url + tail, "size"},
		{"bad alternate", head + hash + `<mm0:alternates><mm0:alternate><size>x</size></mm0:alternate></mm0:alternates>` + url + tail, "alternate 1"},
		{"no http mirror", head + hash + `<resources><url protocol="rsync">rsync://m.example.net/r/repodata/repomd.xml</url></resources>` + tail, "no http(s) URL"},
		{"bad preference", head + hash + `<resources><url preference="high">https://m.example.net/r/repodata/repomd.xml</url></resources>` + tail, "preference"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseMetalink(strings.NewReader(tt.xml))
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("err = %v, want ErrFormat saying %q", err, tt.says)
			}
		})
	}
	if _, err := ParseMetalink(strings.NewReader(head + hash + url + tail)); err != nil {
		t.Fatalf("the minimal metalink: %v", err)
	}
}

func TestParseMirrorlist(t *testing.T) {
	list := "# repo = updates-released-f40 arch = x86_64 country = DE\n" +
		"https://a.example.net/fedora/updates/40/Everything/x86_64/\n" +
		"\n" +
		"  http://b.example.net/fedora/updates/40/Everything/x86_64  \n" +
		"rsync://c.example.net/fedora/updates/40/Everything/x86_64/\n" +
		"ftp://d.example.net/fedora/\n"
	ms, err := ParseMirrorlist(strings.NewReader(list))
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].Base != "https://a.example.net/fedora/updates/40/Everything/x86_64/" || ms[1].Base != "http://b.example.net/fedora/updates/40/Everything/x86_64/" {
		t.Fatalf("mirrors = %+v", ms)
	}
	for _, bad := range []string{"", "# nothing\n", "rsync://c.example.net/x/\n", "<html><body>Not Found</body></html>\n", strings.Repeat("x", 70<<10)} {
		if _, err := ParseMirrorlist(strings.NewReader(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseMirrorlist(%.30q) = %v, want ErrFormat", bad, err)
		}
	}
}

func FuzzParseMetalink(f *testing.F) {
	b, err := os.ReadFile("testdata/metalink.xml")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("https://a.example.net/r/\n# c\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if ml, err := ParseMetalink(bytes.NewReader(b)); err == nil {
			if len(ml.Versions) == 0 || len(ml.Mirrors) == 0 {
				t.Fatalf("a metalink without versions or mirrors passed: %+v", ml)
			}
			for _, m := range ml.Mirrors {
				if !httpURL(m.Base) || !strings.HasSuffix(m.Base, "/") {
					t.Fatalf("mirror %q passed", m.Base)
				}
			}
			if i, err := ml.Match(b); (i < 0) != (err != nil) {
				t.Fatalf("Match = %d, %v", i, err)
			}
		}
		if ms, err := ParseMirrorlist(bytes.NewReader(b)); err == nil {
			for _, m := range ms {
				if !httpURL(m.Base) {
					t.Fatalf("mirror %q passed", m.Base)
				}
			}
		}
	})
}
