package web

import (
	"embed"
	"html/template"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
)

//go:embed templates/*.html
var templates embed.FS

// page parses one page with the shared parts (style.html).
func page(name string) *template.Template {
	return template.Must(template.New(name).ParseFS(templates, "templates/style.html", "templates/"+name))
}

var statusTmpl = page("status.html")

// TaskSummary is what the status page shows of the retrace queue.
type TaskSummary struct {
	Running, Pending, MaxRunning int
	// Recent lists the running tasks, the pending ones, then the last
	// finished ones.
	Recent []TaskLine
}

// TaskLine is one task, in words: State is "running", "pending",
// "finished" or "failed"; the times are formatted, "" when not yet.
type TaskLine struct {
	ID, State, Created, Started, Finished, Step string
}

// Class is the CSS class of the task's state.
func (l TaskLine) Class() string {
	switch l.State {
	case "finished":
		return "ok"
	case "failed":
		return "bad"
	case "running":
		return "warn"
	}
	return "muted"
}

// GCSummary is the last garbage collection.
type GCSummary struct {
	When, Freed, Summary string
}

// NodeSummary is this node and who holds which lease: with a shared
// (PostgreSQL) index, each source's sync and gc run on one node at a
// time.
type NodeSummary struct {
	Self   string
	Leases []LeaseLine
	Err    string
}

// LeaseLine is one lease held somewhere: "sync/SOURCE" or "gc".
type LeaseLine struct {
	Name, Node string
	Self       bool
}

// StatusSources are the optional parts of the page, provided by the
// components that own them; nil funcs are shown as not running.
type StatusSources struct {
	Tasks func() *TaskSummary
	GC    func() *GCSummary
	// DiskFree reports free bytes and whether it is below the minimum.
	DiskFree func() (free int64, low bool)
	Nodes    func() *NodeSummary
	// Blocked lists the clients refused for their failed attempts (by
	// address; behind a trusted proxy, the address it forwards), each
	// with when that ends.
	Blocked func() map[string]time.Time
}

// BlockedClient is one line of the page's refused clients.
type BlockedClient struct {
	Client, Until string
}

// Index is what the status pages read of the index: its totals, and the
// files that carry a build-id (the search box).
type Index interface {
	Counter
	// Lookup returns every file carrying id, newest package first, or
	// an error wrapping index.ErrNotFound. The slice is not modified.
	Lookup(id index.BuildID) ([]index.Match, error)
}

var _ Index = (*index.Store)(nil)

// Status renders the status page and the build-id search page.
type Status struct {
	ops   *Ops
	idx   Index
	extra StatusSources
	now   func() time.Time
}

// NewStatus returns the status page over ops (sources, sync progress,
// schedules and sync history) and idx (totals, build-id search).
func NewStatus(ops *Ops, idx Index, extra StatusSources) *Status {
	return &Status{ops: ops, idx: idx, extra: extra, now: time.Now}
}

// StoredRatio is stored/fetched as "0.123", or "-" before anything was
// fetched.
func StoredRatio(stored, fetched int64) string {
	if fetched <= 0 {
		return "-"
	}
	return strconv.FormatFloat(float64(stored)/float64(fetched), 'f', 3, 64)
}

// Register adds GET / and GET /search.
func (s *Status) Register(r gin.IRouter) {
	r.GET("/", s.page)
	r.GET("/search", s.search)
}

// historyRows is how many of a source's last syncs the page lists.
const historyRows = mirror.MaxHistory

// historyRow is one past sync, in words, for the page.
type historyRow struct {
	When, Took, Result, Class, Error string
	New, Failed                      int
	Fetched, Stored, TotalStored     string
}

func viewHistory(h []mirror.SyncRecord) []historyRow {
	var out []historyRow
	for i := len(h) - 1; i >= 0 && len(out) < historyRows; i-- {
		r := h[i]
		row := historyRow{When: r.Start.Local().Format("2006-01-02 15:04:05"), Took: r.Duration.Round(time.Millisecond).String(),
			Result: r.Result, Error: r.Error, New: r.New, Failed: r.Failed,
			Fetched: mirror.HumanBytes(r.BytesFetched), Stored: mirror.HumanBytes(r.BytesStored), TotalStored: mirror.HumanBytes(r.TotalStored)}
		switch r.Result {
		case "ok", "unchanged":
			row.Class = "ok"
		case "partial":
			row.Class = "warn"
		default:
			row.Class = "bad"
		}
		out = append(out, row)
	}
	return out
}

type sourceRow struct {
	SourceView
	LastSync, NextSync     string
	BytesFetched           string
	BytesStored            string
	BytesWhole, BytesDelta string
	StoredRatio            string // stored / fetched
	ResultClass            string
	Progress               *mirror.Progress
	ProgressBytes          string
	ProgressRate, Percent  string
	// Syncs are the last syncs, newest first.
	Syncs []historyRow
}

type pageData struct {
	Now             time.Time
	Counts          index.Counts
	Fetched, Stored string
	Sources         []sourceRow
	Syncing         bool
	Tasks           *TaskSummary
	GC              *GCSummary
	DiskLow         bool
	DiskFree        string
	Nodes           *NodeSummary
	Blocked         []BlockedClient
	// Chart is the storage-over-time chart; Samples its number of points.
	Chart   template.HTML
	Samples int
}

func (s *Status) page(c *gin.Context) {
	srcs, err := s.ops.m.Sources()
	if err != nil {
		c.String(http.StatusInternalServerError, "list sources: %v", err)
		return
	}
	counts, err := s.idx.Counts()
	if err != nil {
		c.String(http.StatusInternalServerError, "index totals: %v", err)
		return
	}
	d := pageData{Now: s.now(), Counts: counts}
	progress, next := s.ops.Progress(), s.ops.NextSync()
	var fetched, stored int64
	for _, src := range srcs {
		v := ViewSource(src)
		fetched += v.BytesFetched
		stored += v.BytesStored
		row := sourceRow{SourceView: v, LastSync: "never", NextSync: "not scheduled",
			BytesFetched: mirror.HumanBytes(v.BytesFetched), BytesStored: mirror.HumanBytes(v.BytesStored),
			BytesWhole: mirror.HumanBytes(v.BytesStored - v.BytesDelta), BytesDelta: mirror.HumanBytes(v.BytesDelta),
			StoredRatio: StoredRatio(v.BytesStored, v.BytesFetched), ResultClass: "muted",
			Syncs: viewHistory(v.History)}
		if v.LastSync != nil {
			row.LastSync = v.LastSync.Local().Format("2006-01-02 15:04:05") + " (" + ago(d.Now.Sub(*v.LastSync)) + " ago)"
		}
		if t, ok := next[v.Name]; ok && !t.IsZero() {
			row.NextSync = t.Local().Format("2006-01-02 15:04:05") + " (in " + ago(t.Sub(d.Now)) + ")"
		}
		switch {
		case len(v.LastResult) >= 2 && v.LastResult[:2] == "ok":
			row.ResultClass = "ok"
		case len(v.LastResult) >= 7 && v.LastResult[:7] == "partial":
			row.ResultClass = "warn"
		case v.LastResult != "":
			row.ResultClass = "bad"
		}
		if p, ok := progress[v.Name]; ok {
			row.Progress = &p
			d.Syncing = true
			row.ProgressBytes = mirror.HumanBytes(p.BytesFetched)
			if el := d.Now.Sub(p.Started).Seconds(); el > 0 {
				row.ProgressRate = mirror.HumanBytes(int64(float64(p.BytesFetched) / el))
			}
			if p.Total > 0 {
				row.Percent = itoa(100 * p.Done / p.Total)
			} else {
				row.Percent = "0"
			}
		}
		d.Sources = append(d.Sources, row)
	}
	d.Fetched, d.Stored = mirror.HumanBytes(fetched), mirror.HumanBytes(stored)
	samples := storageSamples(srcs)
	d.Chart, d.Samples = storageChart(samples), len(samples)
	if s.extra.Tasks != nil {
		d.Tasks = s.extra.Tasks()
	}
	if s.extra.GC != nil {
		d.GC = s.extra.GC()
	}
	if s.extra.Nodes != nil {
		d.Nodes = s.extra.Nodes()
	}
	if s.extra.Blocked != nil {
		for client, until := range s.extra.Blocked() {
			d.Blocked = append(d.Blocked, BlockedClient{Client: client, Until: until.Local().Format("15:04:05")})
		}
		sort.Slice(d.Blocked, func(i, j int) bool { return d.Blocked[i].Client < d.Blocked[j].Client })
	}
	if s.extra.DiskFree != nil {
		free, low := s.extra.DiskFree()
		d.DiskLow, d.DiskFree = low, mirror.HumanBytes(free)
	}
	c.Header("Content-Type", "text/html; charset=utf-8")
	c.Status(http.StatusOK)
	if err := statusTmpl.Execute(c.Writer, d); err != nil {
		// Headers are out; record it for gin's logger.
		c.Error(err) //nolint:errcheck
	}
}

func ago(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return itoa(int(d.Hours())) + "h"
	}
	return itoa(int(d.Hours()/24)) + "d"
}

func itoa(n int) string { return strconv.Itoa(n) }
