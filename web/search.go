package web

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
)

var searchTmpl = page("search.html")

// maxSearchMatches bounds the files the search page lists.
const maxSearchMatches = 200

// searchData is the data of search.html.
type searchData struct {
	Query   string // as typed, for the box
	ID      string // the build-id, normalized; "" when malformed
	Error   string // why there is no result
	Matches []searchMatch
	More    int // matches beyond maxSearchMatches
}

type searchMatch struct {
	NEVRA, Kind, Path, Size, AltLink string
}

// search is GET /search?buildid=HEX: the files that carry a build-id,
// found in the index as GET /api/v1/buildid/{id} finds them, as a page.
// A malformed id is answered 400, an unknown one 404, each with a page
// that says so and keeps the search box.
func (s *Status) search(c *gin.Context) {
	q := strings.TrimSpace(c.Query("buildid"))
	d := searchData{Query: q}
	if len(d.Query) > 2*index.MaxBuildIDLen+8 {
		d.Query = d.Query[:2*index.MaxBuildIDLen+8]
	}
	code := http.StatusOK
	id, err := index.ParseBuildID(strings.ToLower(q))
	switch {
	case q == "":
		code, d.Error = http.StatusBadRequest, "Type a build-id: the hex digits of an ELF file's NT_GNU_BUILD_ID note (eu-unstrip -n --core shows them for a core)."
	case err != nil:
		code, d.Error = http.StatusBadRequest, "Not a build-id: "+err.Error()+"."
	default:
		d.ID = id.String()
		ms, err := s.idx.Lookup(id)
		switch {
		case errors.Is(err, index.ErrNotFound):
			code, d.Error = http.StatusNotFound, "No mirrored package ships a file with build-id "+d.ID+"."
		case err != nil:
			code, d.Error = http.StatusInternalServerError, "The index could not be read: "+err.Error()
		}
		for i, m := range ms {
			if i == maxSearchMatches {
				d.More = len(ms) - i
				break
			}
			sm := searchMatch{NEVRA: m.NEVRA.String(), Kind: m.Kind.String(), Path: m.Path, Size: mirror.HumanBytes(m.Size)}
			if !m.AltLink.IsZero() {
				sm.AltLink = m.AltLink.String()
			}
			d.Matches = append(d.Matches, sm)
		}
	}
	render(c, code, searchTmpl, d)
}

// render executes t into the response with status code.
func render(c *gin.Context, code int, t *template.Template, data any) {
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(code)
	if err := t.Execute(c.Writer, data); err != nil {
		// Headers are out; record it for gin's logger.
		c.Error(err) //nolint:errcheck
	}
}
