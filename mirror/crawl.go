package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/gocolly/colly/v2"
)

// treeMaxListing bounds one directory listing's body. The crawl's other
// bounds are the mirror's CrawlConfig.
const treeMaxListing = 32 << 20

var (
	errLeavesTree = errors.New("redirect leaves the tree")
	// errWalked stops a redirect to a directory the crawl has walked.
	errWalked = errors.New("directory already walked")
)

// crawl walks the tree under base with colly: same host, under base's
// path, at most Crawl.MaxDepth levels and Crawl.MaxListings listings,
// Crawl.Parallelism at a time with Crawl.Delay after each, following
// directory links only. Every directory is asked for again, conditionally
// (ETag / Last-Modified); a directory whose listing is unchanged (304, or
// the same bytes) is not parsed again and its children are taken from the
// state. It returns the package files found, with the checksums CHECKSUM
// files gave. A directory for which skip (given its path relative to
// base) is true is not walked.
func (m *Mirror) crawl(ctx context.Context, base *url.URL, st *treeState, skip func(dir string) bool) (rpms map[string]string, fetched int64, errs []error) {
	cr := &crawler{
		m: m, cfg: m.cfg.Crawl, base: base, st: st, skip: skip,
		rpms: map[string]string{}, seenDirs: map[string]bool{},
		listings: 1, // the root
	}
	c, err := cr.collector(ctx)
	if err != nil {
		return nil, 0, []error{err}
	}
	root := base.String()
	cr.seenDirs[root] = true
	if err := c.Visit(root); err != nil {
		return nil, cr.fetched, []error{fmt.Errorf("tree: %s: %w", root, err)}
	}
	c.Wait()
	return cr.finish()
}

// crawler is one crawl of a tree source. colly calls its methods from
// several goroutines at once; mu guards the fields below it and st.
type crawler struct {
	m      *Mirror
	cfg    CrawlConfig
	base   *url.URL
	skip   func(dir string) bool
	client http.Client // the mirror's, bounded per listing

	mu       sync.Mutex
	st       *treeState
	rpms     map[string]string // package file URL -> sha256 from a CHECKSUM file, or ""
	seenDirs map[string]bool   // directories asked for, or reached by a redirect
	// Listings are counted here rather than by colly's MaxRequests, which
	// async visits can overshoot: listings asked for, and directory links
	// refused once MaxListings was reached.
	listings, refused int
	fetched           int64 // bytes of listings received
	errs              []error
}

// collector returns colly's collector for the crawl, its callbacks set.
func (cr *crawler) collector(ctx context.Context) (*colly.Collector, error) {
	base := cr.base
	prefix := regexp.MustCompile("^" + regexp.QuoteMeta(base.Scheme+"://"+base.Host+base.Path))
	c := colly.NewCollector(
		colly.AllowedDomains(base.Hostname()),
		colly.URLFilters(prefix),
		colly.MaxDepth(cr.cfg.MaxDepth),
		colly.MaxBodySize(treeMaxListing),
		colly.IgnoreRobotsTxt(),
		colly.ParseHTTPErrorResponse(),
		colly.StdlibContext(ctx),
		colly.Async(true),
		colly.UserAgent("retraced"),
	)
	// A copy of the mirror's client, bounded per listing: the mirror's
	// own has no overall timeout, for large package downloads.
	cr.client = *cr.m.cfg.Client
	if cr.client.Timeout <= 0 || cr.client.Timeout > cr.cfg.ListingTimeout {
		cr.client.Timeout = cr.cfg.ListingTimeout
	}
	cr.client.CheckRedirect = cr.checkRedirect
	c.SetClient(&cr.client)
	if err := c.Limit(&colly.LimitRule{DomainGlob: "*", Parallelism: cr.cfg.Parallelism, Delay: cr.cfg.Delay}); err != nil {
		return nil, err
	}
	c.OnRequest(cr.onRequest)
	c.OnResponse(func(r *colly.Response) { cr.onResponse(ctx, r) })
	c.OnError(func(r *colly.Response, err error) { cr.onError(ctx, r, err) })
	return c, nil
}

// checkRedirect keeps a listing's redirects on the same scheme and host
// under base's path, and does not walk a directory twice because a
// redirect led to it: colly checks its URL filters on redirects only with
// its own client.
func (cr *crawler) checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 10 {
		return errors.New("stopped after 10 redirects")
	}
	u, base := req.URL, cr.base
	if u.Scheme != base.Scheme || u.Host != base.Host || !strings.HasPrefix(u.Path, base.Path) {
		return fmt.Errorf("%w: %s is outside %s (not followed; if the tree moved, give the source its new URL)", errLeavesTree, u, base)
	}
	key := *u
	key.RawQuery, key.Fragment = "", ""
	cr.mu.Lock()
	defer cr.mu.Unlock()
	if cr.seenDirs[key.String()] {
		return errWalked
	}
	cr.seenDirs[key.String()] = true
	return nil
}

// fail records an error of one listing; the crawl goes on.
func (cr *crawler) fail(err error) {
	cr.mu.Lock()
	cr.errs = append(cr.errs, err)
	cr.mu.Unlock()
}

// visit asks for the listing of dir, found in r's listing, unless skip
// excludes it, it was asked for already, or MaxListings is reached.
func (cr *crawler) visit(r *colly.Request, dir string) {
	if cr.skip(strings.TrimPrefix(dir, cr.base.String())) {
		return
	}
	cr.mu.Lock()
	if cr.seenDirs[dir] {
		cr.mu.Unlock()
		return
	}
	if cr.listings >= cr.cfg.MaxListings {
		cr.refused++
		cr.mu.Unlock()
		return
	}
	cr.seenDirs[dir] = true
	cr.listings++
	cr.mu.Unlock()
	var already *colly.AlreadyVisitedError
	if err := r.Visit(dir); err != nil && !errors.As(err, &already) {
		if errors.Is(err, colly.ErrMaxDepth) {
			cr.fail(fmt.Errorf("tree: %s: %v (bounded; the rest of the tree was not walked)", dir, err))
		}
	}
}

// onRequest makes a listing's request conditional on what the state
// remembers of it.
func (cr *crawler) onRequest(r *colly.Request) {
	cr.mu.Lock()
	d := cr.st.Dirs[r.URL.String()]
	cr.mu.Unlock()
	if d != nil {
		if d.ETag != "" {
			r.Headers.Set("If-None-Match", d.ETag)
		}
		if d.LastModified != "" {
			r.Headers.Set("If-Modified-Since", d.LastModified)
		}
	}
}

// onResponse takes a listing: the state's when unchanged (304, or the
// same bytes), else parsed anew.
func (cr *crawler) onResponse(ctx context.Context, r *colly.Response) {
	dir := r.Request.URL.String()
	cr.mu.Lock()
	cr.fetched += int64(len(r.Body))
	old := cr.st.Dirs[dir]
	cr.mu.Unlock()
	switch {
	case r.StatusCode == http.StatusNotModified && old != nil:
		cr.use(r, dir, old)
		return
	case r.StatusCode != http.StatusOK:
		cr.fail(fmt.Errorf("tree: GET %s: %d %s", dir, r.StatusCode, http.StatusText(r.StatusCode)))
		return
	}
	sum := sha256.Sum256(r.Body)
	hash := hex.EncodeToString(sum[:])
	if old != nil && old.Hash == hash {
		old.ETag, old.LastModified = r.Headers.Get("ETag"), r.Headers.Get("Last-Modified")
		cr.use(r, dir, old)
		return
	}
	d, checksumFiles, err := cr.parse(r, dir, hash)
	if err != nil {
		cr.fail(err)
		return
	}
	cr.readChecksums(ctx, d, checksumFiles)
	cr.use(r, dir, d)
}

// parse reads the HTML listing of dir: its subdirectories, package files
// and CHECKSUM files under base, sorted.
func (cr *crawler) parse(r *colly.Response, dir, hash string) (d *treeDir, checksumFiles []string, err error) {
	ct := r.Headers.Get("Content-Type")
	hrefs := links(r.Body)
	if !looksLikeHTML(r.Body) && (!strings.Contains(ct, "html") || len(hrefs) == 0) {
		return nil, nil, fmt.Errorf("tree: %s is not an HTML directory listing (Content-Type %q)", dir, ct)
	}
	d = &treeDir{ETag: r.Headers.Get("ETag"), LastModified: r.Headers.Get("Last-Modified"), Hash: hash}
	for _, href := range hrefs {
		abs, err := r.Request.URL.Parse(href)
		if err != nil || abs.Host != cr.base.Host || !strings.HasPrefix(abs.Path, cr.base.Path) {
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
	return d, checksumFiles, nil
}

// readChecksums adds to d the sums of the CHECKSUM files its listing
// links. A file that cannot be read leaves d without validators, so that
// the next sync reads the directory, and the file, again.
func (cr *crawler) readChecksums(ctx context.Context, d *treeDir, files []string) {
	for _, cf := range files {
		sums, err := cr.m.readChecksums(ctx, cf, cr.cfg.ListingTimeout)
		if err != nil {
			cr.fail(fmt.Errorf("tree: %s: %w", cf, err))
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
}

// use records d as dir's listing, takes its package files and visits its
// subdirectories.
func (cr *crawler) use(r *colly.Response, dir string, d *treeDir) {
	cr.mu.Lock()
	cr.st.Dirs[dir] = d
	for _, f := range d.RPMs {
		cr.rpms[f] = d.Checksums[fileName(f)]
	}
	cr.mu.Unlock()
	for _, sub := range d.Subdirs {
		cr.visit(r.Request, sub)
	}
}

// onError records a failed listing; a 304 and a redirect to a directory
// already walked are not failures.
func (cr *crawler) onError(ctx context.Context, r *colly.Response, err error) {
	if r.StatusCode == http.StatusNotModified || errors.Is(err, errWalked) {
		return
	}
	var ne net.Error
	if ctx.Err() == nil && errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("listing not complete within %v (mirror.crawl_listing_timeout): %w", cr.client.Timeout, err)
	}
	cr.fail(fmt.Errorf("tree: GET %s: %w", r.Request.URL, err))
}

// finish, once colly is done, reports the listings refused, forgets the
// directories no longer linked (so that the state does not grow) and
// returns what the crawl found.
func (cr *crawler) finish() (rpms map[string]string, fetched int64, errs []error) {
	if cr.refused > 0 {
		cr.errs = append(cr.errs, fmt.Errorf("tree: %d listings fetched, the most a sync may (mirror.crawl_max_listings); %d more links to directories were not followed (bounded)", cr.cfg.MaxListings, cr.refused))
	}
	for dir := range cr.st.Dirs {
		if !cr.seenDirs[dir] {
			delete(cr.st.Dirs, dir)
		}
	}
	return cr.rpms, cr.fetched, cr.errs
}
