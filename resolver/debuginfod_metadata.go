package resolver

// GET|HEAD /metadata?key=file|glob&value=V: elfutils 0.192's search of
// the index by file name, as "debuginfod-find metadata" asks it. The
// answer is a JSON object: "results", one object per matching file with
// "type" (executable or debuginfo), "buildid", "file" (its path in the
// package) and "archive" (the RPM's file name, as X-DEBUGINFOD-ARCHIVE
// gives it), and "complete", false when the search was cut short by its
// bounds (MetadataMaxResults, MetadataMaxTime).
//
// key=file matches one path exactly; key=glob is a shell pattern matched
// as fnmatch(3) with FNM_PATHNAME matches it: "*", "?" and bracket
// classes never match "/". The search reads the index's path index
// (index.Store.ScanPaths) from the glob's literal start ("/usr/lib64/libc"
// of "/usr/lib64/libc*"), so a pattern that starts with a literal
// directory reads only the entries under it; one that starts with a
// wildcard reads the whole path index, until a bound stops it.

import (
	"context"
	"errors"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/index"
)

// Bounds of a /metadata search.
const (
	// MaxMetadataValue bounds the value of a /metadata request, a path or
	// a glob, in bytes (Linux's PATH_MAX).
	MaxMetadataValue = 4096
	// DefaultMetadataMaxResults is Debuginfod.MetadataMaxResults' default.
	DefaultMetadataMaxResults = 10000
	// DefaultMetadataMaxTime is Debuginfod.MetadataMaxTime's default,
	// elfutils debuginfod's --metadata-maxtime default.
	DefaultMetadataMaxTime = 5 * time.Second
)

// metadataAnswer is the JSON of a /metadata answer.
type metadataAnswer struct {
	Results  []metadataResult `json:"results"`
	Complete bool             `json:"complete"`
}

type metadataResult struct {
	Type    string `json:"type"`
	BuildID string `json:"buildid"`
	File    string `json:"file"`
	Archive string `json:"archive,omitempty"`
}

// metadata answers /metadata. A bad request (no key or value, an unknown
// key, an empty or over-long value, a malformed glob) is 400; a store
// without its path index is 503.
func (d *Debuginfod) metadata(c *gin.Context) {
	key, hasKey := c.GetQuery("key")
	value, hasValue := c.GetQuery("value")
	if !hasKey || !hasValue {
		plainError(c, http.StatusBadRequest, "/metadata needs key and value")
		return
	}
	if value == "" {
		plainError(c, http.StatusBadRequest, "/metadata: empty value")
		return
	}
	if len(value) > MaxMetadataValue {
		plainError(c, http.StatusBadRequest, "/metadata: value longer than 4096 bytes")
		return
	}
	if strings.IndexByte(value, 0) >= 0 {
		plainError(c, http.StatusBadRequest, "/metadata: value holds a NUL byte, which no path does")
		return
	}
	var (
		prefix = value
		exact  = true
		match  = func(string) bool { return true }
	)
	switch key {
	case "file":
	case "glob":
		m, err := compileGlob(value)
		if err != nil {
			plainError(c, http.StatusBadRequest, "/metadata: glob "+err.Error())
			return
		}
		prefix, exact, match = globPrefix(value), false, m
	default:
		plainError(c, http.StatusBadRequest, "/metadata: unsupported key "+truncate(key, 40)+": want file or glob")
		return
	}

	ctx := c.Request.Context()
	if d.MetadataMaxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.MetadataMaxTime)
		defer cancel()
	}
	ans := metadataAnswer{Results: []metadataResult{}, Complete: true}
	err := d.idx.ScanPaths(ctx, prefix, exact, match, func(e index.PathEntry) bool {
		if len(ans.Results) >= d.MetadataMaxResults {
			ans.Complete = false
			return false
		}
		ans.Results = append(ans.Results, metadataResult{
			Type: e.Kind.String(), BuildID: e.BuildID.String(), File: e.Path, Archive: e.Archive,
		})
		return true
	})
	if c.Request.Context().Err() != nil {
		c.Abort() // the client is gone
		return
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// Out of time: what was found, incomplete.
		ans.Complete, err = false, nil
	}
	if errors.Is(err, index.ErrNoPathIndex) {
		plainError(c, http.StatusServiceUnavailable, "/metadata: "+err.Error())
		return
	}
	if err != nil {
		fail(c, err, "/metadata")
		return
	}
	if d.OnMetadata != nil {
		d.OnMetadata(key, ans.Complete)
	}
	c.JSON(http.StatusOK, ans)
}

// globPrefix is the literal start of a glob: what every path it matches
// begins with.
func globPrefix(glob string) string {
	if i := strings.IndexAny(glob, `*?[\`); i >= 0 {
		return glob[:i]
	}
	return glob
}

// compileGlob returns a matcher of glob with fnmatch(3)'s FNM_PATHNAME
// semantics: the pattern and the path are compared a "/"-separated
// segment at a time with path.Match, so no wildcard or class crosses a
// "/". A class negated with "!" (fnmatch's spelling) is read as "^" (Go's).
// Patterns fnmatch would read with a meaning path.Match lacks are refused
// rather than matched differently: class names ("[:alpha:]"), and an
// unterminated "[" (fnmatch's literal "[").
func compileGlob(glob string) (func(string) bool, error) {
	segs := strings.Split(glob, "/")
	for i, s := range segs {
		var b strings.Builder
		inClass := false
		for j := 0; j < len(s); j++ {
			ch := s[j]
			switch {
			case ch == '\\' && j+1 < len(s):
				b.WriteByte(ch)
				j++
				ch = s[j]
			case !inClass && ch == '[':
				inClass = true
				b.WriteByte(ch)
				if j+1 < len(s) && s[j+1] == '!' {
					b.WriteByte('^')
					j++
				}
				if j+1 < len(s) && s[j+1] == ']' { // a leading ] is literal
					b.WriteByte(']')
					j++
				}
				continue
			case inClass && ch == '[' && j+1 < len(s) && (s[j+1] == ':' || s[j+1] == '=' || s[j+1] == '.'):
				return nil, errors.New("class names and collating elements ([:alpha:], [=a=], [.a.]) are not supported")
			case inClass && ch == ']':
				inClass = false
			}
			b.WriteByte(ch)
		}
		segs[i] = b.String()
		if _, err := path.Match(segs[i], ""); err != nil {
			return nil, errors.New("malformed: " + err.Error())
		}
	}
	return func(name string) bool {
		for i, seg := range segs {
			part, rest, more := strings.Cut(name, "/")
			if more != (i < len(segs)-1) {
				return false
			}
			if ok, _ := path.Match(seg, part); !ok {
				return false
			}
			name = rest
		}
		return true
	}, nil
}

// truncate shortens s to n bytes for an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
