package crashes

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
)

//go:embed templates/*.html
var templates embed.FS

var (
	listTmpl = template.Must(template.New("crashes.html").Funcs(funcs).ParseFS(templates, "templates/crashes.html"))
	sigTmpl  = template.Must(template.New("signature.html").Funcs(funcs).ParseFS(templates, "templates/signature.html"))
	funcs    = template.FuncMap{"when": when, "join": strings.Join}
)

// Page bounds: how many signatures a report lists by default and at most.
const (
	DefaultLimit = 100
	MaxLimit     = 1000
)

// Register adds the report routes: GET /crashes, /crashes/:sig,
// /api/v1/crashes and /api/v1/crashes/:sig.
func (s *Store) Register(r gin.IRouter) {
	r.GET("/crashes", s.listPage)
	r.GET("/crashes/:sig", s.signaturePage)
	r.GET("/api/v1/crashes", s.listAPI)
	r.GET("/api/v1/crashes/:sig", s.signatureAPI)
}

// reportParams reads ?window= and ?limit=.
func reportParams(c *gin.Context) (Window, int, error) {
	w, err := ParseWindow(c.Query("window"))
	if err != nil {
		return "", 0, err
	}
	limit := DefaultLimit
	if l := c.Query("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > MaxLimit {
			return "", 0, fmt.Errorf("limit %q: want 1 to %d", truncate(l, 20), MaxLimit)
		}
		limit = n
	}
	return w, limit, nil
}

// APIRow is one signature of GET /api/v1/crashes.
type APIRow struct {
	Signature
	// Count is the crashes in the window, Total all kept.
	Count     int64     `json:"count"`
	Total     int64     `json:"total"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
	Versions  []string  `json:"versions"`
	New       bool      `json:"new"`
	Gone      bool      `json:"gone"`
	// NewerVersion is the version that appeared after the last crash,
	// when Gone.
	NewerVersion string `json:"newer_version,omitempty"`
	// Series is the count per bucket of the window (hours for 24h,
	// days else), oldest first.
	Series []DayCount `json:"series"`
}

// APIReport is GET /api/v1/crashes.
type APIReport struct {
	Window     Window    `json:"window"`
	Generated  time.Time `json:"generated"`
	Signatures int       `json:"signatures"` // with a crash in the window
	Truncated  bool      `json:"truncated"`
	Rows       []APIRow  `json:"crashes"`
}

func (r *Report) api() APIReport {
	out := APIReport{Window: r.Window, Generated: r.Now, Signatures: r.Total, Truncated: r.Truncated, Rows: []APIRow{}}
	for _, row := range r.Rows {
		a := APIRow{Signature: row.Signature, Count: row.WindowCount, Total: row.Count, FirstSeen: row.FirstSeen,
			LastSeen: row.LastSeen, New: row.New, Gone: row.Gone, NewerVersion: row.Newer}
		for _, v := range row.Versions {
			a.Versions = append(a.Versions, v.NEVRA)
		}
		for i, b := range r.Buckets {
			a.Series = append(a.Series, DayCount{Day: b, Count: row.Counts[i]})
		}
		out.Rows = append(out.Rows, a)
	}
	return out
}

func (s *Store) listAPI(c *gin.Context) {
	w, limit, err := reportParams(c)
	if err != nil {
		c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, s.Report(w, limit).api())
}

// APISignature is GET /api/v1/crashes/{signature}.
type APISignature struct {
	Entry
	// Days and Hours are Entry's, labelled "2006-01-02" and
	// "2006-01-02T15".
	Days  []DayCount `json:"days"`
	Hours []DayCount `json:"hours"`
	// Example is the example backtrace. Entry's Tasks are the last
	// tasks that still exist.
	Example string `json:"example_backtrace"`
}

func (s *Store) lookup(c *gin.Context) (Entry, string, int, error) {
	id := c.Param("sig")
	if !ValidID(id) {
		return Entry{}, "", http.StatusBadRequest, errors.New("a signature is 32 hex digits")
	}
	e, ex, err := s.Get(id)
	switch {
	case errors.Is(err, ErrNotFound):
		return e, "", http.StatusNotFound, err
	case err != nil:
		return e, "", http.StatusInternalServerError, err
	}
	e.Tasks = s.liveTasks(e.Tasks)
	return e, ex, http.StatusOK, nil
}

// liveTasks drops the task ids older than the tasks are kept, and those
// TaskExists says are gone.
func (s *Store) liveTasks(ts []TaskRef) []TaskRef {
	s.mu.RLock()
	exists := s.opt.TaskExists
	s.mu.RUnlock()
	cutoff := s.opt.Now().Add(-s.opt.TaskTTL)
	out := []TaskRef{}
	for _, t := range ts {
		if t.Time.After(cutoff) && (exists == nil || exists(t.ID)) {
			out = append(out, t)
		}
	}
	return out
}

// SetTaskExists sets Options.TaskExists once the task server is up
// (serve opens the crash store before it).
func (s *Store) SetTaskExists(fn func(id string) bool) {
	s.mu.Lock()
	s.opt.TaskExists = fn
	s.mu.Unlock()
}

func (s *Store) signatureAPI(c *gin.Context) {
	e, ex, code, err := s.lookup(c)
	if err != nil {
		c.JSON(code, gin.H{"error": err.Error()})
		return
	}
	c.JSON(http.StatusOK, APISignature{Entry: e, Example: ex, Days: labelled(e.Days, dayLabel), Hours: labelled(e.Hours, hourLabel)})
}

// listView is the data of crashes.html.
type listView struct {
	*Report
	Windows []Window
	Rows    []rowView
}

type rowView struct {
	Row
	Rank  int
	Chart template.HTML
}

func (s *Store) listPage(c *gin.Context) {
	w, limit, err := reportParams(c)
	if err != nil {
		c.String(http.StatusBadRequest, err.Error())
		return
	}
	var buf bytes.Buffer
	if err := s.renderList(&buf, w, limit); err != nil {
		c.String(http.StatusInternalServerError, err.Error())
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

// renderList writes the /crashes page of window w.
func (s *Store) renderList(buf *bytes.Buffer, w Window, limit int) error {
	r := s.Report(w, limit)
	v := listView{Report: r, Windows: Windows}
	for i, row := range r.Rows {
		v.Rows = append(v.Rows, rowView{Row: row, Rank: i + 1, Chart: chart(row.Counts, r.Buckets, 120, 28)})
	}
	return listTmpl.Execute(buf, v)
}

// sigView is the data of signature.html.
type sigView struct {
	Entry
	Example string
	Chart   template.HTML
	Buckets []string
	Now     time.Time
	Newer   string
}

func (s *Store) signaturePage(c *gin.Context) {
	e, ex, code, err := s.lookup(c)
	if err != nil {
		c.String(code, err.Error())
		return
	}
	now := s.opt.Now().UTC()
	keys, buckets := Window30d.buckets(now)
	v := sigView{Entry: e, Example: ex, Now: now, Buckets: buckets,
		Chart: chart(e.counts(Window30d, keys), buckets, 600, 120),
		Newer: goneFor(&e, s.newestVersions(s.snapshot()))}
	var buf bytes.Buffer
	if err := sigTmpl.Execute(&buf, v); err != nil {
		c.String(http.StatusInternalServerError, err.Error())
		return
	}
	c.Data(http.StatusOK, "text/html; charset=utf-8", buf.Bytes())
}

// chart draws counts as an SVG bar chart w x h pixels, one bar per
// bucket with its key and count as a tooltip. It is made of numbers and
// of the bucket keys, which the store makes (dates), escaped anyway.
func chart(counts []int64, buckets []string, w, h int) template.HTML {
	var peak int64
	for _, n := range counts {
		peak = max(peak, n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="crashes per bucket, peak %d">`, w, h, w, h, peak)
	fmt.Fprintf(&b, `<line x1="0" y1="%d" x2="%d" y2="%d" stroke="#c5ccd6"/>`, h-1, w, h-1)
	n := len(counts)
	if n > 0 {
		bw := float64(w) / float64(n)
		for i, c := range counts {
			bh := 0.0
			if peak > 0 {
				bh = float64(h-2) * float64(c) / float64(peak)
			}
			if c > 0 && bh < 2 {
				bh = 2
			}
			// strconv, not fmt: a page draws thousands of bars.
			b.WriteString(`<rect x="`)
			b.WriteString(strconv.FormatFloat(float64(i)*bw+0.5, 'f', 1, 64))
			b.WriteString(`" y="`)
			b.WriteString(strconv.FormatFloat(float64(h-1)-bh, 'f', 1, 64))
			b.WriteString(`" width="`)
			b.WriteString(strconv.FormatFloat(max(bw-1, 1), 'f', 1, 64))
			b.WriteString(`" height="`)
			b.WriteString(strconv.FormatFloat(bh, 'f', 1, 64))
			b.WriteString(`" fill="#2f6fdb"><title>`)
			b.WriteString(template.HTMLEscapeString(buckets[i]))
			b.WriteString(": ")
			b.WriteString(strconv.FormatInt(c, 10))
			b.WriteString(`</title></rect>`)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and escaped keys only
}

// when formats a time for the pages.
func when(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}
