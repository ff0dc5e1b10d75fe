package resolver

// Writing a debuginfod answer: the headers elfutils sends,
// X-DEBUGINFOD-MAXSIZE, ranges and conditions through http.ServeContent,
// sendfile for large files.

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

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
