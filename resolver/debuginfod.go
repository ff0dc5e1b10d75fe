package resolver

// The debuginfod protocol, as elfutils' debuginfod serves it, from the
// files the mirror stored: no RPM is read again.
//
//	GET|HEAD /buildid/ID/executable      the binary or library carrying ID
//	GET|HEAD /buildid/ID/debuginfo       the .debug file carrying ID
//	GET|HEAD /buildid/ID/source/PATH     a source file of ID's package
//	GET|HEAD /buildid/ID/section/NAME    the bytes of ELF section NAME
//	GET|HEAD /metadata?key=K&value=V     the files whose path is V (key
//	                                     file) or matches glob V (key glob)
//
// Every answer has X-DEBUGINFOD-SIZE (bytes of the whole artifact: the
// file, or the section), X-DEBUGINFOD-FILE (the file's path in its
// package), X-DEBUGINFOD-ARCHIVE (the RPM's file name) and Last-Modified
// (the package's build time). A client's X-DEBUGINFOD-MAXSIZE is honoured
// (406). Range and conditional requests go through http.ServeContent.
//
// The bytes come from the blob pool's uncompressed (plain) copies: content
// up to 64 KiB (sources, most sections, small binaries) is kept in memory
// after its first request, larger files are handed to sendfile. Lookups
// of packages, file lists, plain copies and section headers are cached,
// so a warm request costs a few small allocations and no disk access.
//
// The server is split by concern: this file routes and serves the
// executable and debuginfo artifacts; debuginfod_send.go writes answers
// (headers, ranges, sendfile); debuginfod_section.go serves /section from
// ELF section tables; debuginfod_source.go serves /source from package
// file trees; debuginfod_metadata.go answers /metadata from the index's
// path index; debuginfod_files.go caches what answers read (package
// metadata, plain copies, small contents).

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/singleflight"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// DebuginfodIndex is what the debuginfod server needs of the index.
type DebuginfodIndex interface {
	// Lookup returns every file carrying id, newest package first, or an
	// error wrapping index.ErrNotFound. The caller must not modify the
	// slice.
	Lookup(id index.BuildID) ([]index.Match, error)
	// Package returns the package n, or an error wrapping
	// index.ErrNotFound. A package, once stored, never changes but for the
	// sources that list it; gc may delete it.
	Package(n index.NEVRA) (*index.Package, error)
	// ScanPaths calls fn for each file with a build-id whose path is
	// path (exact) or starts with it and that match accepts, in path
	// order, until fn returns false or ctx ends (an error wrapping
	// ctx.Err()); it fails with index.ErrNoPathIndex when the store has
	// no path index.
	ScanPaths(ctx context.Context, path string, exact bool, match func(path string) bool, fn func(index.PathEntry) bool) error
}

var _ DebuginfodIndex = (*index.Store)(nil)

// BlobSource is what the debuginfod server needs of the blob pool.
type BlobSource interface {
	// Plain returns the path of a read-only, uncompressed copy of blob d,
	// or an error wrapping blob.ErrNotFound when the pool does not hold d.
	// The copy may be deleted whenever nobody holds it open; Plain then
	// makes it again.
	Plain(d blob.Digest) (string, error)
}

var _ BlobSource = (*blob.Pool)(nil)

// Limits on what a request may name. Longer input is a client's mistake
// (400), not a lookup.
const (
	// MaxSourcePath bounds the path of a /source request, in bytes
	// (Linux's PATH_MAX).
	MaxSourcePath = 4096
	// MaxSectionName bounds the name of a /section request, in bytes.
	MaxSectionName = 256
)

// Cache budgets, in entries unless said otherwise. Packages and ELF files
// never change under a name (a package's NEVRA, a blob's digest), so
// cached entries are only ever dropped for room, or when gc deleted what
// they point at.
const (
	metaBudget    = 1 << 16  // packages' header values
	treeBudget    = 1 << 20  // files of source-serving packages, summed
	plainBudget   = 1 << 18  // paths of plain copies
	sectionBudget = 1 << 19  // section headers, summed over ELF files
	contentBudget = 64 << 20 // bytes of small files and sections kept in memory
	maxInMemory   = 64 << 10 // what is small: larger content is sent from disk
	maxLinkHops   = 8        // symlinks followed inside a package
)

// Debuginfod serves the debuginfod protocol. It is safe for concurrent use.
type Debuginfod struct {
	idx  DebuginfodIndex
	pool BlobSource

	meta     *cache[index.NEVRA, *pkgMeta]
	trees    *cache[index.NEVRA, pkgTree]
	plains   *cache[blob.Digest, string]
	sections *cache[blob.Digest, elfSections]
	contents *cache[contentKey, []byte]
	// inMemory is the largest content kept in memory (maxInMemory; tests
	// lower it to send everything from disk).
	inMemory int64

	// plainCopies: concurrent requests for one blob wait for a single
	// Plain rather than each decompressing it.
	plainCopies singleflight.Group

	// Upstream, when set, is asked for executables and debug files the
	// index lacks (federation; resolver/federate's Client, which counts
	// how each request went).
	Upstream Upstream

	// MetadataMaxResults and MetadataMaxTime bound a /metadata search:
	// past either, the answer says "complete": false (defaults
	// DefaultMetadataMaxResults and DefaultMetadataMaxTime; a
	// MetadataMaxTime of 0 does not limit time). OnMetadata, when set, is
	// told of every answered search: its key and whether it completed.
	MetadataMaxResults int
	MetadataMaxTime    time.Duration
	OnMetadata         func(key string, complete bool)
}

// Upstream is federation: other debuginfod servers asked for a file of
// kind ("executable" or "debuginfo") carrying build-id id. forwardedFor
// is the request's X-Forwarded-For and client its sender, for loop
// protection. It returns a local copy's path.
type Upstream interface {
	Fetch(ctx context.Context, id, kind, forwardedFor, client string) (path string, fromCache bool, err error)
}

// NewDebuginfod returns the debuginfod server over idx and pool.
func NewDebuginfod(idx DebuginfodIndex, pool BlobSource) *Debuginfod {
	return &Debuginfod{
		idx:      idx,
		pool:     pool,
		meta:     newCache[index.NEVRA, *pkgMeta](metaBudget, 32),
		trees:    newCache[index.NEVRA, pkgTree](treeBudget, 4),
		plains:   newCache[blob.Digest, string](plainBudget, 32),
		sections: newCache[blob.Digest, elfSections](sectionBudget, 8),
		contents: newCache[contentKey, []byte](contentBudget, 16),
		inMemory: maxInMemory,

		MetadataMaxResults: DefaultMetadataMaxResults,
		MetadataMaxTime:    DefaultMetadataMaxTime,
	}
}

// Register adds the debuginfod routes, GET and HEAD, to r.
func (d *Debuginfod) Register(r gin.IRouter) {
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		r.Handle(m, "/buildid/:id/executable", d.executable)
		r.Handle(m, "/buildid/:id/debuginfo", d.debuginfo)
		r.Handle(m, "/buildid/:id/source", d.source) // no path: 400, not gin's redirect
		r.Handle(m, "/buildid/:id/source/*path", d.source)
		r.Handle(m, "/buildid/:id/section/:name", d.section)
		r.Handle(m, "/metadata", d.metadata)
	}
}

// errMiss marks a request the store has no answer for: 404.
var errMiss = errors.New("not found")

// plainError writes a plain-text error; net/http drops the body of a HEAD
// answer.
func plainError(c *gin.Context, code int, msg string) {
	c.Data(code, "text/plain; charset=utf-8", []byte(msg+"\n"))
	c.Abort()
}

// fail maps an error to its status: a miss is 404, anything else is ours.
func fail(c *gin.Context, err error, what string) {
	if errors.Is(err, errMiss) || errors.Is(err, index.ErrNotFound) || errors.Is(err, blob.ErrNotFound) {
		plainError(c, http.StatusNotFound, what+": not found")
		return
	}
	plainError(c, http.StatusInternalServerError, what+": "+err.Error())
}

// lookup parses the :id parameter and looks it up. It has answered the
// request when ok is false.
func (d *Debuginfod) lookup(c *gin.Context) (id string, ms []index.Match, ok bool) {
	id = c.Param("id")
	bid, err := index.ParseBuildID(id)
	if err != nil {
		plainError(c, http.StatusBadRequest, err.Error())
		return id, nil, false
	}
	ms, err = d.idx.Lookup(bid)
	if err != nil {
		fail(c, err, "build-id "+id)
		return id, nil, false
	}
	return id, ms, true
}

func (d *Debuginfod) executable(c *gin.Context) { d.artifact(c, index.KindExecutable) }
func (d *Debuginfod) debuginfo(c *gin.Context)  { d.artifact(c, index.KindDebuginfo) }

// artifact serves the newest file of kind k carrying the build-id. A
// match whose blob gc has just removed is passed over for an older one.
func (d *Debuginfod) artifact(c *gin.Context, k index.Kind) {
	id := c.Param("id")
	bid, err := index.ParseBuildID(id)
	if err != nil {
		plainError(c, http.StatusBadRequest, err.Error())
		return
	}
	ms, err := d.idx.Lookup(bid)
	if err != nil {
		if !d.federate(c, err, id, k) {
			fail(c, err, "build-id "+id)
		}
		return
	}
	err = errMiss
	for i := range ms {
		m := &ms[i]
		if m.Kind != k {
			continue
		}
		if err = d.serveFile(c, m.NEVRA, m.Path, m.Blob, m.Size); !errors.Is(err, blob.ErrNotFound) {
			break
		}
	}
	if k == index.KindDebuginfo && (errors.Is(err, errMiss) || errors.Is(err, blob.ErrNotFound)) {
		// No separate debug file: an executable that was never stripped
		// is its own debuginfo, and debuginfod answers with it.
		for i := range ms {
			m := &ms[i]
			if m.Kind != index.KindExecutable {
				continue
			}
			has, herr := d.hasDWARF(m.Blob)
			if herr != nil && !errors.Is(herr, blob.ErrNotFound) {
				err = herr
				break
			}
			if !has {
				continue
			}
			if err = d.serveFile(c, m.NEVRA, m.Path, m.Blob, m.Size); !errors.Is(err, blob.ErrNotFound) {
				break
			}
		}
	}
	if err != nil && !d.federate(c, err, id, k) {
		fail(c, err, "build-id "+id+" "+k.String())
	}
}

// federate answers a miss (err) from the upstreams, and reports whether
// it answered; an upstream's failure is a 404 like any miss, and a loop
// is 404 too, as elfutils' debuginfod answers it.
func (d *Debuginfod) federate(c *gin.Context, err error, id string, k index.Kind) bool {
	if d.Upstream == nil || !(errors.Is(err, errMiss) || errors.Is(err, index.ErrNotFound) || errors.Is(err, blob.ErrNotFound)) {
		return false
	}
	path, _, ferr := d.Upstream.Fetch(c.Request.Context(), id, k.String(), c.GetHeader("X-Forwarded-For"), c.ClientIP())
	if ferr != nil {
		plainError(c, http.StatusNotFound, "build-id "+id+" "+k.String()+": not found here nor upstream")
		return true
	}
	f, err := os.Open(path)
	if err != nil {
		fail(c, err, "build-id "+id+" "+k.String())
		return true
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		fail(c, err, "build-id "+id+" "+k.String())
		return true
	}
	c.Header("X-DEBUGINFOD-SIZE", strconv.FormatInt(fi.Size(), 10))
	c.Header("X-DEBUGINFOD-FILE", "/upstream/"+id+"/"+k.String())
	c.Header("Content-Type", "application/octet-stream")
	http.ServeContent(c.Writer, c.Request, "", fi.ModTime(), f)
	return true
}

// serveFile sends blob b, the file at path in package n, whole or in the
// ranges asked for. It writes nothing when it returns an error.
func (d *Debuginfod) serveFile(c *gin.Context, n index.NEVRA, path string, b blob.Digest, size int64) error {
	meta, err := d.pkgMeta(n)
	if err != nil {
		return err
	}
	var bd body
	switch {
	case c.Request.Method == http.MethodHead:
		// The index knows the size: a HEAD need not make the plain copy.
	case size <= d.inMemory:
		if bd.mem, err = d.content(contentKey{blob: b}, nil, 0, size); err != nil {
			return err
		}
	default:
		if bd.f, err = d.open(b); err != nil {
			return err
		}
		defer bd.f.Close()
		bd.whole = true
	}
	send(c, meta, path, size, bd)
	return nil
}
