package resolver

// The debuginfod protocol, as elfutils' debuginfod serves it, from the
// files the mirror stored: no RPM is read again.
//
//	GET|HEAD /buildid/ID/executable      the binary or library carrying ID
//	GET|HEAD /buildid/ID/debuginfo       the .debug file carrying ID
//	GET|HEAD /buildid/ID/source/PATH     a source file of ID's package
//	GET|HEAD /buildid/ID/section/NAME    the bytes of ELF section NAME
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

import (
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/sync/singleflight"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/elfnote"
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
	id, ms, ok := d.lookup(c)
	if !ok {
		return
	}
	err := errMiss
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
	if err != nil {
		fail(c, err, "build-id "+id+" "+k.String())
	}
}

// hasDWARF reports whether the ELF file in blob b carries debug
// information of its own: a .debug_info section with contents.
func (d *Debuginfod) hasDWARF(b blob.Digest) (bool, error) {
	secs, err := d.sectionsOf(b, nil)
	if err != nil {
		return false, err
	}
	for _, name := range [...]string{".debug_info", ".zdebug_info"} {
		if s, ok := secs[name]; ok && !s.nobits && s.size > 0 {
			return true, nil
		}
	}
	return false, nil
}

// sectionsOf returns the section table of blob b, from the cache or read
// from f (opened from the plain copy when nil; the caller closes an f it
// passed).
func (d *Debuginfod) sectionsOf(b blob.Digest, f *os.File) (elfSections, error) {
	if secs, ok := d.sections.get(b); ok {
		return secs, nil
	}
	if f == nil {
		var err error
		if f, err = d.open(b); err != nil {
			return nil, err
		}
		defer f.Close()
	}
	secs := readSections(f)
	return d.sections.put(b, secs, int64(len(secs))+1), nil
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

// body is what an answer sends: mem, or size bytes of f from off (all of
// f when whole). Neither, for a HEAD.
type body struct {
	mem   []byte
	f     *os.File
	off   int64
	whole bool
}

var (
	hdrOctetStream = []string{"application/octet-stream"}
	hdrPublic      = []string{"public"}
	hdrBytes       = []string{"bytes"}
)

// send answers with the debuginfod headers and the body. The header names
// are written as elfutils writes them (net/http sends map keys as they
// are); the shared slices are never appended to in place, since their
// capacity is their length.
//
// A request for all of it, unconditionally (what clients send), is
// answered here: from memory, or from the plain copy by sendfile. Ranges
// and conditions go through http.ServeContent.
func send(c *gin.Context, meta *pkgMeta, file string, size int64, b body) {
	w, r := c.Writer, c.Request
	if v := r.Header["X-Debuginfod-Maxsize"]; len(v) > 0 {
		// A client's DEBUGINFOD_MAXSIZE: elfutils answers 406 and ignores
		// a value that is not a positive number.
		if max, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64); err == nil && max > 0 && size > max {
			plainError(c, http.StatusNotAcceptable, "file too large, max size="+strconv.FormatInt(max, 10))
			return
		}
	}
	h := w.Header()
	sz := []string{strconv.FormatInt(size, 10)}
	h["Content-Type"] = hdrOctetStream
	h["Cache-Control"] = hdrPublic
	h["X-DEBUGINFOD-SIZE"] = sz
	h["X-DEBUGINFOD-FILE"] = []string{file}
	h["X-DEBUGINFOD-ARCHIVE"] = meta.archive
	if !unconditional(r.Header) {
		var rs io.ReadSeeker
		switch {
		case r.Method == http.MethodHead:
			rs = &sizeOnly{size: size}
		case b.f == nil:
			rs = bytes.NewReader(b.mem)
		case b.whole:
			rs = b.f
		default:
			rs = io.NewSectionReader(b.f, b.off, size)
		}
		http.ServeContent(sendfileWriter(w), r, "", meta.modTime, rs)
		return
	}
	if meta.lastModified != nil {
		h["Last-Modified"] = meta.lastModified
	}
	h["Accept-Ranges"] = hdrBytes
	h["Content-Length"] = sz
	w.WriteHeader(http.StatusOK)
	var err error
	switch {
	case r.Method == http.MethodHead:
		w.WriteHeaderNow()
	case b.f == nil:
		_, err = w.Write(b.mem)
	case b.whole:
		_, err = io.Copy(sendfileWriter(w), b.f)
	default:
		_, err = io.Copy(sendfileWriter(w), io.NewSectionReader(b.f, b.off, size))
	}
	if err != nil {
		c.Error(err) // the client went away: for the logs, nothing to answer
	}
}

// unconditional reports whether a request asks for all of the content
// whatever its state: no Range, no If-* headers.
func unconditional(h http.Header) bool {
	return len(h["Range"]) == 0 && len(h["If-Modified-Since"]) == 0 && len(h["If-None-Match"]) == 0 &&
		len(h["If-Match"]) == 0 && len(h["If-Unmodified-Since"]) == 0
}

// sizeOnly is content of a known size that is never read: what
// http.ServeContent needs to answer a HEAD (it only seeks, to learn the
// size and the ranges' starts).
type sizeOnly struct{ size, off int64 }

var errHeadOnly = errors.New("content of a HEAD answer read")

func (s *sizeOnly) Read([]byte) (int, error) { return 0, errHeadOnly }

func (s *sizeOnly) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		off += s.off
	case io.SeekEnd:
		off += s.size
	default:
		return 0, errors.New("seek: bad whence")
	}
	if off < 0 {
		return 0, errors.New("seek: negative position")
	}
	s.off = off
	return off, nil
}

// sendfileWriter lets io.Copy and http.ServeContent reach the connection's
// ReadFrom (sendfile for a plain copy) through gin's writer, which has
// none: gin's writer still records the status, its byte count misses the
// body.
func sendfileWriter(w gin.ResponseWriter) http.ResponseWriter {
	if _, ok := w.(io.ReaderFrom); ok {
		return w
	}
	if u, ok := w.(interface{ Unwrap() http.ResponseWriter }); ok {
		if rf, ok := u.Unwrap().(io.ReaderFrom); ok {
			return &readFromWriter{ResponseWriter: w, rf: rf}
		}
	}
	return w
}

type readFromWriter struct {
	gin.ResponseWriter
	rf io.ReaderFrom
}

func (w *readFromWriter) ReadFrom(r io.Reader) (int64, error) {
	w.ResponseWriter.WriteHeaderNow()
	return w.rf.ReadFrom(r)
}

// contentKey names small content kept in memory: a whole blob, or one
// section of it.
type contentKey struct {
	blob    blob.Digest
	section string
}

// content returns size bytes at off of blob k.blob, from memory or read
// from f (the blob's plain copy; opened here when nil).
func (d *Debuginfod) content(k contentKey, f *os.File, off, size int64) ([]byte, error) {
	if b, ok := d.contents.get(k); ok {
		return b, nil
	}
	if f == nil {
		var err error
		if f, err = d.open(k.blob); err != nil {
			return nil, err
		}
		defer f.Close()
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, off); n < len(b) {
		return nil, fmt.Errorf("read %s at %d: %w", k.blob, off+int64(n), err)
	}
	return d.contents.put(k, b, size+int64(len(k.section))+64), nil
}

// source serves a source file for the build-id: PATH as the DWARF of the
// build-id's debuginfo names it (comp_dir joined with the file name, as
// debugedit rewrote them), looked up in the package that ships the
// sources of that build: the -debugsource package of the same source RPM,
// version and arch as the package holding the debuginfo (or the
// executable), then the -debuginfo package itself, as rpm did before
// -debugsource existed.
//
// Like elfutils, the path is resolved lexically first: clients send
// DWARF's "dir/../file" and "//" as they are. A ".." climbing above "/" is
// a malformed path.
func (d *Debuginfod) source(c *gin.Context) {
	raw := c.Param("path")
	p, err := cleanSourcePath(raw)
	if err != nil {
		plainError(c, http.StatusBadRequest, err.Error())
		return
	}
	id, ms, ok := d.lookup(c)
	if !ok {
		return
	}
	var tried [8]index.NEVRA
	seen := tried[:0]
	for _, k := range [...]index.Kind{index.KindDebuginfo, index.KindExecutable} {
		for i := range ms {
			m := &ms[i]
			if m.Kind != k {
				continue
			}
			meta, err := d.pkgMeta(m.NEVRA)
			if errors.Is(err, index.ErrNotFound) {
				continue
			}
			if err != nil {
				fail(c, err, "build-id "+id+" source")
				return
			}
			cands := [2]index.NEVRA{meta.debugsource, m.NEVRA}
			nc := 2
			if k == index.KindExecutable { // the binary package ships no sources
				nc = 1
			}
			for _, n := range cands[:nc] {
				if n.Name == "" || containsNEVRA(seen, n) {
					continue
				}
				seen = append(seen, n)
				served, err := d.serveSource(c, n, p)
				if err != nil {
					fail(c, err, "build-id "+id+" source "+p)
					return
				}
				if served {
					return
				}
			}
		}
	}
	plainError(c, http.StatusNotFound, "build-id "+id+" source "+p+": not found")
}

func containsNEVRA(ns []index.NEVRA, n index.NEVRA) bool {
	for i := range ns {
		if ns[i] == n {
			return true
		}
	}
	return false
}

// serveSource serves path from package n when n ships it. A missing
// package or file is not an error: served is false.
func (d *Debuginfod) serveSource(c *gin.Context, n index.NEVRA, p string) (served bool, err error) {
	for attempt := 0; attempt < 2; attempt++ {
		tree, err := d.pkgTree(n)
		if errors.Is(err, index.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		e, file, ok := tree.resolve(p)
		if !ok {
			return false, nil
		}
		err = d.serveFile(c, n, file, e.blob, e.size)
		if !errors.Is(err, blob.ErrNotFound) {
			return err == nil, err
		}
		// gc removed the blob: the package is gone or was stored again.
		d.trees.drop(n)
		d.meta.drop(n)
	}
	return false, nil
}

// cleanSourcePath checks a requested source path and resolves "//", "."
// and ".." lexically. It returns the path unchanged, without allocating,
// when it is already clean.
func cleanSourcePath(p string) (string, error) {
	switch {
	case len(p) > MaxSourcePath:
		return "", fmt.Errorf("source path longer than %d bytes", MaxSourcePath)
	case p == "" || p[0] != '/':
		return "", errors.New("source path must be absolute")
	case strings.IndexByte(p, 0) >= 0:
		return "", errors.New("source path holds a NUL byte")
	}
	depth := 0
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i+1:], '/') // p[i] is '/'
		if j < 0 {
			j = len(p) - i - 1
		}
		seg := p[i+1 : i+1+j]
		i += 1 + j
		switch seg {
		case "", ".":
		case "..":
			if depth == 0 {
				return "", errors.New("source path climbs above /")
			}
			depth--
		default:
			depth++
		}
	}
	return path.Clean(p), nil
}

// section serves ELF section NAME: from the debuginfo file when it has the
// section with contents, else from the executable, as elfutils does (a
// separate .debug file keeps the allocated sections only as SHT_NOBITS).
// The bytes are the section's as stored in the file: a compressed section
// comes compressed.
func (d *Debuginfod) section(c *gin.Context) {
	name := c.Param("name")
	switch {
	case name == "":
		plainError(c, http.StatusBadRequest, "empty section name")
		return
	case len(name) > MaxSectionName:
		plainError(c, http.StatusBadRequest, fmt.Sprintf("section name longer than %d bytes", MaxSectionName))
		return
	case strings.IndexByte(name, 0) >= 0:
		plainError(c, http.StatusBadRequest, "section name holds a NUL byte")
		return
	}
	id, ms, ok := d.lookup(c)
	if !ok {
		return
	}
	for _, k := range [...]index.Kind{index.KindDebuginfo, index.KindExecutable} {
		for i := range ms {
			m := &ms[i]
			if m.Kind != k {
				continue
			}
			served, err := d.serveSection(c, m, name)
			if errors.Is(err, blob.ErrNotFound) {
				continue // gc removed it: an older identical build may still be there
			}
			if err != nil {
				fail(c, err, "build-id "+id+" section "+name)
				return
			}
			if served {
				return
			}
			break // this kind's file lacks it: try the next kind
		}
	}
	plainError(c, http.StatusNotFound, "build-id "+id+" section "+name+": not found")
}

// serveSection serves section name of the file m when it has one with
// contents.
func (d *Debuginfod) serveSection(c *gin.Context, m *index.Match, name string) (served bool, err error) {
	meta, err := d.pkgMeta(m.NEVRA)
	if err != nil {
		return false, err
	}
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	secs, ok := d.sections.get(m.Blob)
	if !ok {
		if f, err = d.open(m.Blob); err != nil {
			return false, err
		}
		if secs, err = d.sectionsOf(m.Blob, f); err != nil {
			return false, err
		}
	}
	s, ok := secs[name]
	if !ok || s.nobits {
		return false, nil
	}
	bd := body{off: s.off}
	switch {
	case c.Request.Method == http.MethodHead:
	case s.size <= d.inMemory:
		if bd.mem, err = d.content(contentKey{m.Blob, name}, f, s.off, s.size); err != nil {
			return false, err
		}
	default:
		if f == nil {
			if f, err = d.open(m.Blob); err != nil {
				return false, err
			}
		}
		bd.f = f
	}
	send(c, meta, m.Path, s.size, bd)
	return true, nil
}

// elfSections maps a section name to where its bytes are; the first
// section wins over later ones of the same name.
type elfSections map[string]elfSection

type elfSection struct {
	off, size int64
	nobits    bool
}

// readSections reads the section headers of an ELF file through
// elfnote.NewFile, which checks the header before debug/elf reads it and
// turns a panic of debug/elf into an error. A file that does not parse has
// no sections: it came from a package, so it is a file some tool wrote
// oddly (or a hostile one), not a request error. Sections reaching past
// the end of the file are left out.
func readSections(f *os.File) elfSections {
	fi, err := f.Stat()
	if err != nil {
		return elfSections{}
	}
	ef, err := elfnote.NewFile(f)
	if err != nil {
		return elfSections{}
	}
	secs := make(elfSections, len(ef.Sections))
	for _, s := range ef.Sections {
		if _, dup := secs[s.Name]; dup || s.Name == "" {
			continue
		}
		e := elfSection{off: int64(s.Offset), size: int64(s.FileSize), nobits: s.Type == elf.SHT_NOBITS}
		if !e.nobits && (e.off < 0 || e.size < 0 || e.off > fi.Size() || e.size > fi.Size()-e.off) {
			continue
		}
		secs[s.Name] = e
	}
	return secs
}

// pkgMeta is what answers need of a package, computed once.
type pkgMeta struct {
	archive      []string // X-DEBUGINFOD-ARCHIVE
	modTime      time.Time
	lastModified []string // modTime for Last-Modified; nil when unknown
	// debugsource is the -debugsource package of the same build; its
	// Name is empty when the source RPM is unknown.
	debugsource index.NEVRA
}

func (d *Debuginfod) pkgMeta(n index.NEVRA) (*pkgMeta, error) {
	if m, ok := d.meta.get(n); ok {
		return m, nil
	}
	p, err := d.idx.Package(n)
	if err != nil {
		return nil, err
	}
	m := newPkgMeta(p)
	return d.meta.put(n, m, 1), nil
}

func newPkgMeta(p *index.Package) *pkgMeta {
	m := &pkgMeta{archive: []string{p.FileName}}
	switch {
	case p.BuildTime > 0:
		m.modTime = time.Unix(p.BuildTime, 0).UTC()
	case !p.Added.IsZero():
		m.modTime = p.Added.UTC()
	}
	if !m.modTime.IsZero() {
		m.lastModified = []string{m.modTime.Format(http.TimeFormat)}
	}
	if p.FileName == "" {
		m.archive = []string{p.NEVRA.String() + ".rpm"}
	}
	// name-version-release.src.rpm: the -debugsource package is the
	// source package's name, version and release, with the binary's epoch
	// and arch (sub-packages may carry versions of their own).
	if src, err := index.ParseNEVRA(strings.TrimSuffix(p.SourceRPM, ".rpm")); err == nil {
		m.debugsource = index.NEVRA{
			Name: src.Name + "-debugsource", Epoch: p.NEVRA.Epoch,
			Version: src.Version, Release: src.Release, Arch: p.NEVRA.Arch,
		}
	}
	return m
}

// pkgTree is a package's files by path.
type pkgTree map[string]treeEntry

type treeEntry struct {
	blob blob.Digest
	size int64
	link string // symlink target; blob is zero
	mode fs.FileMode
}

func (d *Debuginfod) pkgTree(n index.NEVRA) (pkgTree, error) {
	if t, ok := d.trees.get(n); ok {
		return t, nil
	}
	p, err := d.idx.Package(n)
	if err != nil {
		return nil, err
	}
	t := make(pkgTree, len(p.Files))
	for _, f := range p.Files {
		t[f.Path] = treeEntry{blob: f.Blob, size: f.Size, link: f.Link, mode: f.Mode}
	}
	return d.trees.put(n, t, int64(len(t))+1), nil
}

// resolve finds the regular file at p, following symlinks that stay
// inside the package. file is the path the content was found at.
func (t pkgTree) resolve(p string) (e treeEntry, file string, ok bool) {
	for range maxLinkHops + 1 {
		e, ok = t[p]
		switch {
		case !ok:
			return e, "", false
		case e.mode&fs.ModeSymlink != 0:
			target := e.link
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(p), target)
			}
			p = path.Clean(target)
		case e.mode.IsRegular() && !e.blob.IsZero():
			return e, p, true
		default:
			return e, "", false
		}
	}
	return e, "", false
}

// open opens the plain copy of blob b, making it when needed. A copy
// removed since its path was cached is made again.
func (d *Debuginfod) open(b blob.Digest) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		p, ok := d.plains.get(b)
		if !ok {
			var err error
			if p, err = d.plain(b); err != nil {
				return nil, err
			}
			d.plains.put(b, p, 1)
		}
		f, err := os.Open(p)
		if err == nil {
			return f, nil
		}
		d.plains.drop(b)
		if !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
			return nil, fmt.Errorf("open plain copy of %s: %w", b, err)
		}
	}
}

func (d *Debuginfod) plain(b blob.Digest) (string, error) {
	path, err, _ := d.plainCopies.Do(b.String(), func() (any, error) { return d.pool.Plain(b) })
	if err != nil {
		return "", err
	}
	return path.(string), nil
}
