package yum

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Bounds of what a metalink or a mirror list may hold.
const (
	// MaxMirrors is how many mirrors ParseMetalink and ParseMirrorlist
	// keep; the rest are dropped (after sorting by preference).
	MaxMirrors = 1000
	// maxVersions bounds the repomd.xml versions (current and alternates).
	maxVersions = 64
)

// A Mirror is one copy of a repository, as a metalink or a mirror list
// names it: Base is the repository's URL (http or https, ending in "/"),
// under which repodata/repomd.xml is found.
type Mirror struct {
	Base string
	// Preference is the metalink's preference (1 to 100; higher is
	// tried first), 0 in a mirror list.
	Preference int
	// Location is the metalink's country code, "" when not given.
	Location string
}

// A RepomdVersion is a repomd.xml a metalink vouches for: its size (0 when
// not given) and its digest by the strongest hash the metalink gives.
type RepomdVersion struct {
	Size int64
	Hash Checksum
}

// Metalink is what a MirrorManager metalink (metalink 3.0, as Fedora's
// mirror manager serves it for a repository) says of repodata/repomd.xml.
type Metalink struct {
	// Versions are the repomd.xml files a mirror may serve: the current
	// one first, then the alternates, older ones that mirrors not yet
	// up to date still serve.
	Versions []RepomdVersion
	// Mirrors are the http(s) mirrors, by preference, highest first; of
	// equal preference, in the document's order. Other protocols (rsync,
	// ftp) are left out.
	Mirrors []Mirror
}

// hashStrength lists the hash types a metalink may give, strongest first.
// md5 is not used: it proves nothing against a mirror that means harm.
var hashStrength = []string{"sha512", "sha384", "sha256", "sha224", "sha1"}

type metalinkHash struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

type metalinkVersion struct {
	Size   string         `xml:"size"`
	Hashes []metalinkHash `xml:"verification>hash"`
}

type metalinkDoc struct {
	XMLName xml.Name `xml:"metalink"`
	Files   []struct {
		Name string `xml:"name,attr"`
		metalinkVersion
		Alternates []metalinkVersion `xml:"alternates>alternate"`
		URLs       []struct {
			Protocol   string `xml:"protocol,attr"`
			Location   string `xml:"location,attr"`
			Preference string `xml:"preference,attr"`
			Value      string `xml:",chardata"`
		} `xml:"resources>url"`
	} `xml:"files>file"`
}

// ParseMetalink reads a metalink for a repository: its <file
// name="repomd.xml"> must give at least one hash of sha1 or stronger, and
// list at least one http(s) URL ending in repodata/repomd.xml. Errors wrap
// ErrFormat and say where the document went wrong.
func ParseMetalink(r io.Reader) (*Metalink, error) {
	var doc metalinkDoc
	d := xml.NewDecoder(r)
	if err := d.Decode(&doc); err != nil {
		return nil, fmt.Errorf("%w: metalink at byte %d: %v", ErrFormat, d.InputOffset(), err)
	}
	for _, f := range doc.Files {
		if f.Name != "repomd.xml" {
			continue
		}
		cur, err := f.metalinkVersion.version()
		if err != nil {
			return nil, fmt.Errorf("%w: metalink: repomd.xml: %v", ErrFormat, err)
		}
		ml := &Metalink{Versions: []RepomdVersion{cur}}
		for i, a := range f.Alternates {
			if len(ml.Versions) == maxVersions {
				break
			}
			v, err := a.version()
			if err != nil {
				return nil, fmt.Errorf("%w: metalink: repomd.xml alternate %d: %v", ErrFormat, i+1, err)
			}
			ml.Versions = append(ml.Versions, v)
		}
		for _, u := range f.URLs {
			raw := strings.TrimSpace(u.Value)
			base, ok := strings.CutSuffix(raw, "/repodata/repomd.xml")
			if !ok || !httpURL(base) {
				continue // rsync, ftp, or not a repository's repomd.xml
			}
			pref := 0
			if u.Preference != "" {
				p, err := strconv.Atoi(u.Preference)
				if err != nil || p < 0 || p > 100 {
					return nil, fmt.Errorf("%w: metalink: %s: preference %q: want 0 to 100", ErrFormat, raw, u.Preference)
				}
				pref = p
			}
			ml.Mirrors = append(ml.Mirrors, Mirror{Base: base + "/", Preference: pref, Location: strings.TrimSpace(u.Location)})
		}
		if len(ml.Mirrors) == 0 {
			return nil, fmt.Errorf("%w: metalink lists no http(s) URL of a repodata/repomd.xml", ErrFormat)
		}
		sort.SliceStable(ml.Mirrors, func(i, j int) bool { return ml.Mirrors[i].Preference > ml.Mirrors[j].Preference })
		if len(ml.Mirrors) > MaxMirrors {
			ml.Mirrors = ml.Mirrors[:MaxMirrors]
		}
		return ml, nil
	}
	return nil, fmt.Errorf("%w: metalink has no <file name=\"repomd.xml\">", ErrFormat)
}

// version picks the strongest hash of one repomd.xml version.
func (v metalinkVersion) version() (RepomdVersion, error) {
	var out RepomdVersion
	if s := strings.TrimSpace(v.Size); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n <= 0 {
			return out, fmt.Errorf("size %q: want a positive number", s)
		}
		out.Size = n
	}
	for _, typ := range hashStrength {
		for _, h := range v.Hashes {
			if h.Type != typ {
				continue
			}
			val := strings.ToLower(strings.TrimSpace(h.Value))
			hh, _ := NewHash(typ)
			if b, err := hex.DecodeString(val); err != nil || len(b) != hh.Size() {
				return out, fmt.Errorf("%s hash %q: want %d hex digits", typ, val, 2*hh.Size())
			}
			out.Hash = Checksum{Type: typ, Value: val}
			return out, nil
		}
	}
	return out, fmt.Errorf("no sha512, sha384, sha256, sha224 or sha1 hash")
}

// Match reports which of the metalink's versions b (a repomd.xml) is, the
// index into Versions, or an error saying how it differs from the current
// one.
func (ml *Metalink) Match(b []byte) (int, error) {
	sums := map[string]string{}
	for i, v := range ml.Versions {
		if v.Size != 0 && v.Size != int64(len(b)) {
			continue
		}
		sum, ok := sums[v.Hash.Type]
		if !ok {
			h, err := NewHash(v.Hash.Type)
			if err != nil {
				return -1, err
			}
			h.Write(b)
			sum = hex.EncodeToString(h.Sum(nil))
			sums[v.Hash.Type] = sum
		}
		if sum == v.Hash.Value {
			return i, nil
		}
	}
	cur := ml.Versions[0]
	if cur.Size != 0 && cur.Size != int64(len(b)) {
		return -1, fmt.Errorf("repomd.xml is %d bytes, the metalink says %d (and none of its %d older versions matches)", len(b), cur.Size, len(ml.Versions)-1)
	}
	h, _ := NewHash(cur.Hash.Type)
	h.Write(b)
	return -1, fmt.Errorf("repomd.xml has %s %s, the metalink says %s (and none of its %d older versions matches)", cur.Hash.Type, hex.EncodeToString(h.Sum(nil)), cur.Hash.Value, len(ml.Versions)-1)
}

// ParseMirrorlist reads a mirror list: one repository URL a line, blank
// lines and lines starting with "#" ignored. Lines that are not http(s)
// URLs are left out; at least one must be. Errors wrap ErrFormat.
func ParseMirrorlist(r io.Reader) ([]Mirror, error) {
	var out []Mirror
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	line := 0
	for sc.Scan() {
		line++
		s := string(bytes.TrimSpace(sc.Bytes()))
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		if strings.ContainsAny(s, "<>") {
			return nil, fmt.Errorf("%w: mirror list line %d: %.40q is not a URL (an HTML page?)", ErrFormat, line, s)
		}
		if !httpURL(s) {
			continue
		}
		if len(out) < MaxMirrors {
			out = append(out, Mirror{Base: strings.TrimSuffix(s, "/") + "/"})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: mirror list line %d: %v", ErrFormat, line+1, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: mirror list names no http(s) URL", ErrFormat)
	}
	return out, nil
}

// httpURL reports whether s is an absolute http(s) URL with a host.
func httpURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}
