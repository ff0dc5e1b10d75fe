package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/gocolly/colly/v2"
	"golang.org/x/net/html"

	"github.com/retraced/retraced/index"
)

// treeMaxListing bounds one directory listing's body. The crawl's other
// bounds are the mirror's CrawlConfig.
const treeMaxListing = 32 << 20

var (
	errLeavesTree = errors.New("redirect leaves the tree")
	// errWalked stops a redirect to a directory the crawl has walked.
	errWalked = errors.New("directory already walked")
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

// crawl walks the tree under base with colly: same host, under base's
// path, at most Crawl.MaxDepth levels and Crawl.MaxListings listings,
// Crawl.Parallelism at a time with Crawl.Delay after each, following
// directory links only. Every
// directory is asked for again, conditionally (ETag / Last-Modified); a
// directory whose listing is unchanged (304, or the same bytes) is not
// parsed again and its children are taken from the state. It returns the
// package files found, with the checksums CHECKSUM files gave. A directory
// for which skip (given its path relative to base) is true is not walked.
func (m *Mirror) crawl(ctx context.Context, base *url.URL, st *treeState, skip func(dir string) bool) (rpms map[string]string, fetched int64, errs []error) {
	cc := m.cfg.Crawl
	var mu sync.Mutex
	rpms = map[string]string{}
	seenDirs := map[string]bool{}
	prefix := regexp.MustCompile("^" + regexp.QuoteMeta(base.Scheme+"://"+base.Host+base.Path))
	c := colly.NewCollector(
		colly.AllowedDomains(base.Hostname()),
		colly.URLFilters(prefix),
		colly.MaxDepth(cc.MaxDepth),
		colly.MaxBodySize(treeMaxListing),
		colly.IgnoreRobotsTxt(),
		colly.ParseHTTPErrorResponse(),
		colly.StdlibContext(ctx),
		colly.Async(true),
		colly.UserAgent("retraced"),
	)
	// A copy of the mirror's client, bounded per listing: the mirror's
	// own has no overall timeout, for large package downloads.
	client := *m.cfg.Client
	if client.Timeout <= 0 || client.Timeout > cc.ListingTimeout {
		client.Timeout = cc.ListingTimeout
	}
	// colly checks its URL filters on redirects only with its own client:
	// with ours, CheckRedirect keeps a listing's redirects on the same
	// scheme and host under base's path, and does not walk a directory
	// twice because a redirect led to it.
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		u := req.URL
		if u.Scheme != base.Scheme || u.Host != base.Host || !strings.HasPrefix(u.Path, base.Path) {
			return fmt.Errorf("%w: %s is outside %s (not followed; if the tree moved, give the source its new URL)", errLeavesTree, u, base)
		}
		key := *u
		key.RawQuery, key.Fragment = "", ""
		mu.Lock()
		defer mu.Unlock()
		if seenDirs[key.String()] {
			return errWalked
		}
		seenDirs[key.String()] = true
		return nil
	}
	c.SetClient(&client)
	if err := c.Limit(&colly.LimitRule{DomainGlob: "*", Parallelism: cc.Parallelism, Delay: cc.Delay}); err != nil {
		return nil, 0, []error{err}
	}
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	var visit func(r *colly.Request, dir string)
	// Listings are counted here rather than by colly's MaxRequests, which
	// async visits can overshoot.
	listings, refused := 1, 0 // the root is one
	visit = func(r *colly.Request, dir string) {
		if skip(strings.TrimPrefix(dir, base.String())) {
			return
		}
		mu.Lock()
		if seenDirs[dir] {
			mu.Unlock()
			return
		}
		if listings >= cc.MaxListings {
			refused++
			mu.Unlock()
			return
		}
		seenDirs[dir] = true
		listings++
		mu.Unlock()
		var already *colly.AlreadyVisitedError
		if err := r.Visit(dir); err != nil && !errors.As(err, &already) {
			if errors.Is(err, colly.ErrMaxDepth) {
				fail(fmt.Errorf("tree: %s: %v (bounded; the rest of the tree was not walked)", dir, err))
			}
		}
	}
	c.OnRequest(func(r *colly.Request) {
		mu.Lock()
		d := st.Dirs[r.URL.String()]
		mu.Unlock()
		if d != nil {
			if d.ETag != "" {
				r.Headers.Set("If-None-Match", d.ETag)
			}
			if d.LastModified != "" {
				r.Headers.Set("If-Modified-Since", d.LastModified)
			}
		}
	})
	use := func(r *colly.Response, dir string, d *treeDir) {
		mu.Lock()
		st.Dirs[dir] = d
		for _, f := range d.RPMs {
			rpms[f] = d.Checksums[fileName(f)]
		}
		mu.Unlock()
		for _, sub := range d.Subdirs {
			visit(r.Request, sub)
		}
	}
	c.OnResponse(func(r *colly.Response) {
		dir := r.Request.URL.String()
		mu.Lock()
		fetched += int64(len(r.Body))
		old := st.Dirs[dir]
		mu.Unlock()
		switch {
		case r.StatusCode == http.StatusNotModified && old != nil:
			use(r, dir, old)
			return
		case r.StatusCode != http.StatusOK:
			fail(fmt.Errorf("tree: GET %s: %d %s", dir, r.StatusCode, http.StatusText(r.StatusCode)))
			return
		}
		sum := sha256.Sum256(r.Body)
		hash := hex.EncodeToString(sum[:])
		if old != nil && old.Hash == hash {
			old.ETag, old.LastModified = r.Headers.Get("ETag"), r.Headers.Get("Last-Modified")
			use(r, dir, old)
			return
		}
		ct := r.Headers.Get("Content-Type")
		hrefs := links(r.Body)
		if !looksLikeHTML(r.Body) && (!strings.Contains(ct, "html") || len(hrefs) == 0) {
			fail(fmt.Errorf("tree: %s is not an HTML directory listing (Content-Type %q)", dir, ct))
			return
		}
		d := &treeDir{ETag: r.Headers.Get("ETag"), LastModified: r.Headers.Get("Last-Modified"), Hash: hash}
		var checksumFiles []string
		for _, href := range hrefs {
			abs, err := r.Request.URL.Parse(href)
			if err != nil || abs.Host != base.Host || !strings.HasPrefix(abs.Path, base.Path) {
				continue // other hosts, and links up the tree (loops)
			}
			abs.RawQuery, abs.Fragment = "", ""
			u := abs.String()
			switch {
			case u == dir || len(abs.Path) <= len(r.Request.URL.Path):
				// itself, its parent, or a sort link
			case strings.HasSuffix(abs.Path, "/"):
				d.Subdirs = append(d.Subdirs, u)
			case strings.HasSuffix(abs.Path, ".rpm") && !strings.HasSuffix(abs.Path, ".src.rpm"):
				d.RPMs = append(d.RPMs, u)
			case isChecksumFile(path.Base(abs.Path)):
				checksumFiles = append(checksumFiles, u)
			}
		}
		sort.Strings(d.Subdirs)
		sort.Strings(d.RPMs)
		for _, cf := range checksumFiles {
			sums, err := m.readChecksums(ctx, cf, cc.ListingTimeout)
			if err != nil {
				fail(fmt.Errorf("tree: %s: %w", cf, err))
				// Not remembered as seen, so that the next sync reads
				// the directory, and this file, again.
				d.ETag, d.LastModified, d.Hash = "", "", ""
				continue
			}
			if d.Checksums == nil {
				d.Checksums = map[string]string{}
			}
			for k, v := range sums {
				d.Checksums[k] = v
			}
		}
		use(r, dir, d)
	})
	c.OnError(func(r *colly.Response, err error) {
		if r.StatusCode == http.StatusNotModified || errors.Is(err, errWalked) {
			return
		}
		var ne net.Error
		if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
			err = fmt.Errorf("listing not complete within %v (mirror.crawl_listing_timeout): %w", client.Timeout, err)
		}
		fail(fmt.Errorf("tree: GET %s: %w", r.Request.URL, err))
	})
	root := base.String()
	seenDirs[root] = true
	if err := c.Visit(root); err != nil {
		return nil, fetched, []error{fmt.Errorf("tree: %s: %w", root, err)}
	}
	c.Wait()
	if refused > 0 {
		errs = append(errs, fmt.Errorf("tree: %d listings fetched, the most a sync may (mirror.crawl_max_listings); %d more links to directories were not followed (bounded)", cc.MaxListings, refused))
	}
	// Forget directories no longer linked, so the state does not grow.
	for dir := range st.Dirs {
		if !seenDirs[dir] {
			delete(st.Dirs, dir)
		}
	}
	return rpms, fetched, errs
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

func (m *Mirror) syncTree(ctx context.Context, src *Source, res *Result, pr *progressState) {
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
		if n, err := index.ParseNEVRA(strings.TrimSuffix(name, ".rpm")); err == nil && strings.HasSuffix(name, ".rpm") {
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
	m.ingestAll(ctx, src.Name, todo, res, pr)
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
