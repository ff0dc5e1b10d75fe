package mirror

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"time"

	"golang.org/x/net/html"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror/rpmfile"
)

// treeState is what a tree source remembers between syncs, persisted in
// the index beside the source: each directory's validators and what its
// listing held, and which package files were ingested.
type treeState struct {
	Dirs map[string]*treeDir `json:"dirs"`
	// Seen maps a package file's URL to the NEVRA ingested from it.
	Seen map[string]string `json:"seen"`
}

type treeDir struct {
	ETag         string            `json:"etag,omitempty"`
	LastModified string            `json:"last_modified,omitempty"`
	Hash         string            `json:"hash"`
	Subdirs      []string          `json:"subdirs,omitempty"`
	RPMs         []string          `json:"rpms,omitempty"`
	Checksums    map[string]string `json:"checksums,omitempty"` // file name -> sha256
}

func (m *Mirror) loadTreeState(name string) *treeState {
	st := &treeState{Dirs: map[string]*treeDir{}, Seen: map[string]string{}}
	if b, err := m.idx.SourceState(name); err == nil {
		if json.Unmarshal(b, st) != nil {
			st = &treeState{}
		}
	}
	if st.Dirs == nil {
		st.Dirs = map[string]*treeDir{}
	}
	if st.Seen == nil {
		st.Seen = map[string]string{}
	}
	return st
}

func (m *Mirror) saveTreeState(name string, st *treeState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return m.idx.PutSourceState(name, b)
}

// fileName is the unescaped last element of a file's URL, as a checksum
// file names it.
func fileName(u string) string {
	name := u[strings.LastIndexByte(u, '/')+1:]
	if s, err := url.PathUnescape(name); err == nil {
		return s
	}
	return name
}

func looksLikeHTML(b []byte) bool {
	head := bytes.ToLower(b[:min(len(b), 512)])
	return bytes.Contains(head, []byte("<html")) || bytes.Contains(head, []byte("<!doctype html"))
}

// links returns every <a href> of an HTML page.
func links(body []byte) []string {
	var out []string
	z := html.NewTokenizer(bytes.NewReader(body))
	for {
		switch z.Next() {
		case html.ErrorToken:
			return out
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			if string(name) != "a" || !hasAttr {
				continue
			}
			for {
				k, v, more := z.TagAttr()
				if string(k) == "href" {
					out = append(out, string(v))
				}
				if !more {
					break
				}
			}
		}
	}
}

func isChecksumFile(name string) bool {
	switch {
	case name == "CHECKSUM", name == "SHA256SUMS", name == "sha256sum.txt", strings.HasSuffix(name, "-CHECKSUM"):
		return true
	}
	return false
}

// readChecksums reads a checksum file of a tree directory; see
// parseChecksums.
func (m *Mirror) readChecksums(ctx context.Context, u string, timeout time.Duration) (map[string]string, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b, err := m.readAll(ctx, u, 16<<20)
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("not complete within %v (mirror.crawl_listing_timeout): %w", timeout, err)
		}
		return nil, err
	}
	return parseChecksums(b), nil
}

// parseChecksums returns the SHA-256 sums, by file name, of a checksum file
// in either of the formats coreutils writes:
//
//	SHA256 (bash-5.2.26-3.fc40.x86_64.rpm) = 3f1c...   BSD (sha256sum --tag), as Fedora's CHECKSUM files
//	3f1c...  bash-5.2.26-3.fc40.x86_64.rpm             GNU (sha256sum); "3f1c... *name" in binary mode
//
// It takes a PGP clear-signed file (Fedora signs CHECKSUM) as it is: the
// armour lines are skipped and dash-escaped lines ("- ") unescaped; the
// signature is not checked. A GNU line starting with "\" has its name
// escaped ("\\", "\n"). Other algorithms, malformed sums, and names in
// other directories (with a "/", after a leading "./") are ignored.
func parseChecksums(b []byte) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSuffix(line, "\r")
		line = strings.TrimPrefix(line, "- ")
		var name, sum string
		if rest, ok := strings.CutPrefix(line, "SHA256 ("); ok {
			i := strings.LastIndex(rest, ") = ")
			if i < 0 {
				continue
			}
			name, sum = rest[:i], strings.TrimSpace(rest[i+4:])
		} else {
			escaped := strings.HasPrefix(line, "\\")
			if escaped {
				line = line[1:]
			}
			if len(line) < 67 || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') {
				continue
			}
			name, sum = line[66:], line[:64]
			if escaped {
				name = strings.NewReplacer(`\\`, `\`, `\n`, "\n").Replace(name)
			}
		}
		name = strings.TrimPrefix(name, "./")
		if len(sum) != 64 || name == "" || strings.Contains(name, "/") {
			continue
		}
		if _, err := hex.DecodeString(sum); err != nil {
			continue
		}
		out[name] = strings.ToLower(sum)
	}
	return out
}

func (m *Mirror) syncTree(ctx context.Context, src *Source, keys *rpmfile.Keyring, res *Result, pr *progressState) {
	loc, err := parseLocation(src.URL)
	if err != nil {
		res.Err = err
		return
	}
	if loc.u == nil {
		res.Err = fmt.Errorf("tree sources are crawled over http(s); %s is a local path (make it a yum repository with createrepo_c)", src.URL)
		return
	}
	keep, err := src.filter()
	if err != nil {
		res.Err = err
		return
	}
	skip, err := src.dirFilter()
	if err != nil {
		res.Err = err
		return
	}
	st := m.loadTreeState(src.Name)
	found, fetched, errs := m.crawl(ctx, loc.u, st, skip)
	res.BytesFetched += fetched
	var todo []*want
	var files []string
	for f := range found {
		files = append(files, f)
	}
	sort.Strings(files)
	// A file name met under another URL (an alias directory such as
	// latest/, Koji's data/signed/KEYID/ copies) names the same build, the
	// same NEVRA: it is fetched once, and its other URLs recorded with it.
	seenName := make(map[string]string, len(st.Seen))
	for u, nevra := range st.Seen {
		seenName[fileName(u)] = nevra
	}
	fetching := map[string]*want{}
	aliases := map[*want][]string{}
	for _, f := range files {
		rel := strings.TrimPrefix(f, loc.u.String())
		if !keep(rel) {
			continue
		}
		res.Listed++
		if _, ok := st.Seen[f]; ok {
			continue
		}
		name := fileName(f)
		if nevra, ok := seenName[name]; ok {
			st.Seen[f] = nevra
			continue
		}
		if w, ok := fetching[name]; ok {
			aliases[w] = append(aliases[w], f)
			continue
		}
		w := &want{target: f, location: rel}
		if sum := found[f]; sum != "" {
			w.checksum.Type, w.checksum.Value = "sha256", sum
		}
		// A package the index has from another source (the yum
		// repository a Koji tree feeds) is linked, not fetched again:
		// an RPM's file name is its name-version-release.arch.
		// Under gpgcheck, each package is fetched and verified first
		// (ingestAll links it then).
		if n, err := index.ParseNEVRA(strings.TrimSuffix(name, ".rpm")); err == nil && strings.HasSuffix(name, ".rpm") && keys == nil {
			linked, err := m.link(src.Name, &want{nevra: n, checksum: w.checksum})
			if err != nil {
				res.Err = err
				return
			}
			if linked {
				res.Linked++
				st.Seen[f], seenName[name] = n.String(), n.String()
				continue
			}
		}
		fetching[name] = w
		todo = append(todo, w)
	}
	pr.setPhase("packages")
	pr.total.Store(int64(len(todo)))
	m.ingestAll(ctx, src.Name, keys, todo, res, pr)
	for _, w := range todo {
		if w.done != "" {
			st.Seen[w.target] = w.done
			for _, f := range aliases[w] {
				st.Seen[f] = w.done
			}
		}
	}
	for _, e := range errs {
		res.Failed = append(res.Failed, &PackageError{Location: "(listing)", Err: e})
	}
	if ctx.Err() != nil && res.Err == nil {
		res.Err = fmt.Errorf("interrupted: %w", ctx.Err())
	}
	if err := m.saveTreeState(src.Name, st); err != nil && res.Err == nil {
		res.Err = err
	}
}
