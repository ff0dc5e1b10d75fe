package crashes

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/retraced/retraced/index"
)

// Window is the span a report covers.
type Window string

// The windows of the reports.
const (
	Window24h Window = "24h"
	Window7d  Window = "7d"
	Window30d Window = "30d"
)

// Windows are the windows in the order the page offers them.
var Windows = []Window{Window24h, Window7d, Window30d}

// ParseWindow reads "24h", "7d" or "30d"; "" is 7d.
func ParseWindow(s string) (Window, error) {
	switch w := Window(s); w {
	case "":
		return Window7d, nil
	case Window24h, Window7d, Window30d:
		return w, nil
	}
	return "", fmt.Errorf("window %q: want 24h, 7d or 30d", truncate(s, 20))
}

// buckets are the chart's bars of w ending at now: 24 hours for 24h, else
// one per UTC day (7 or 30), oldest first, as Bucket.At of Entry's Hours
// or Days, and their labels.
func (w Window) buckets(now time.Time) ([]int32, []string) {
	n, at, label := 7, dayOf(now), dayLabel
	switch w {
	case Window24h:
		n, at, label = 24, hourOf(now), hourLabel
	case Window30d:
		n = 30
	}
	keys, labels := make([]int32, n), make([]string, n)
	for i := range keys {
		keys[i] = at - int32(n-1-i)
		labels[i] = label(keys[i])
	}
	return keys, labels
}

// start is when w begins: 24 hours ago (to the hour), or the first day's
// midnight.
func (w Window) start(now time.Time) time.Time {
	keys, _ := w.buckets(now)
	if w == Window24h {
		return time.Unix(int64(keys[0])*3600, 0).UTC()
	}
	return time.Unix(int64(keys[0])*86400, 0).UTC()
}

// Row is one signature in a report.
type Row struct {
	*Entry
	// Counts are the window's buckets (Window.buckets), Count their sum.
	Counts      []int64 `json:"-"`
	WindowCount int64   `json:"-"`
	// New: first seen in the window. Gone: not seen since a newer
	// version of its package appeared (in any signature).
	New, Gone bool
	// Newer is that newer version when Gone.
	Newer string
}

// Report is the top signatures of a window.
type Report struct {
	Window    Window
	Now       time.Time
	Buckets   []string // labels of the chart's bars
	keys      []int32
	Rows      []Row
	Total     int // signatures with a crash in the window
	AllTotal  int // signatures in the store
	Truncated bool
}

// Report returns the signatures with crashes in window w, the most
// frequent first (ties: the most recently seen), at most limit of them.
func (s *Store) Report(w Window, limit int) *Report {
	now := s.opt.Now().UTC()
	entries, gen := s.snapshot()
	r := &Report{Window: w, Now: now, AllTotal: len(entries)}
	r.keys, r.Buckets = w.buckets(now)
	start := w.start(now)
	first, last := r.keys[0], r.keys[len(r.keys)-1]
	// Candidates first, small to sort; rows only for those shown.
	type cand struct {
		e *Entry
		n int64
	}
	cands := make([]cand, 0, 64)
	for _, e := range entries {
		if e.LastSeen.Before(start) {
			continue
		}
		counts := e.Days
		if w == Window24h {
			counts = e.Hours
		}
		var n int64
		for i := len(counts) - 1; i >= 0 && counts[i].At >= first; i-- {
			if counts[i].At <= last {
				n += int64(counts[i].N)
			}
		}
		if n > 0 {
			cands = append(cands, cand{e, n})
		}
	}
	r.Total = len(cands)
	// before orders the report: most crashes first, then the most
	// recently seen, then by ID.
	before := func(a, b cand) int {
		if a.n != b.n {
			if a.n > b.n {
				return -1
			}
			return 1
		}
		if c := b.e.LastSeen.Compare(a.e.LastSeen); c != 0 {
			return c
		}
		return strings.Compare(a.e.ID, b.e.ID)
	}
	if limit > 0 && len(cands) > limit {
		// The top limit only: a heap of the best so far, its worst on
		// top, instead of sorting them all.
		top := cands[:limit]
		worstFirst := func(i, j int) bool { return before(top[i], top[j]) > 0 }
		for i := limit/2 - 1; i >= 0; i-- {
			siftDown(len(top), i, worstFirst, func(i, j int) { top[i], top[j] = top[j], top[i] })
		}
		for _, c := range cands[limit:] {
			if before(c, top[0]) < 0 {
				top[0] = c
				siftDown(len(top), 0, worstFirst, func(i, j int) { top[i], top[j] = top[j], top[i] })
			}
		}
		cands, r.Truncated = top, true
	}
	slices.SortFunc(cands, before)
	rows := make([]Row, len(cands))
	for i, c := range cands {
		rows[i] = Row{Entry: c.e, WindowCount: c.n}
	}
	newest := s.newestVersions(entries, gen)
	for i := range rows {
		row := &rows[i]
		row.Counts = row.Entry.counts(w, r.keys)
		row.New = !row.FirstSeen.Before(start)
		row.Newer = goneFor(row.Entry, newest)
		row.Gone = row.Newer != ""
	}
	r.Rows = rows
	return r
}

// counts are e's counts in the buckets of w.
func (e *Entry) counts(w Window, keys []int32) []int64 {
	src := e.Days
	if w == Window24h {
		src = e.Hours
	}
	out := make([]int64, len(keys))
	j := 0
	for i, k := range keys {
		for j < len(src) && src[j].At < k {
			j++
		}
		if j < len(src) && src[j].At == k {
			out[i] = int64(src[j].N)
		}
	}
	return out
}

// seenVersion is a package version and when crashes of it were first
// seen.
type seenVersion struct {
	nevra index.NEVRA
	first time.Time
}

// newestVersions returns, per package name, the versions crashes were
// seen in (in any signature) with their first crash.
func newestVersions(entries []*Entry) map[string][]seenVersion {
	first := map[string]time.Time{}
	for _, e := range entries {
		for _, v := range e.Versions {
			if t, ok := first[v.NEVRA]; !ok || v.FirstSeen.Before(t) {
				first[v.NEVRA] = v.FirstSeen
			}
		}
	}
	out := map[string][]seenVersion{}
	for s, t := range first {
		n, err := index.ParseNEVRA(s)
		if err != nil {
			continue
		}
		out[n.Name] = append(out[n.Name], seenVersion{n, t})
	}
	return out
}

// goneFor returns the newer version of e's package, if any, that is
// newer than every version e was seen in and first appeared after e's
// last crash: e was not seen since it appeared. "" when there is none.
func goneFor(e *Entry, versions map[string][]seenVersion) string {
	var newest *index.NEVRA
	for _, v := range e.Versions {
		n, err := index.ParseNEVRA(v.NEVRA)
		if err != nil {
			continue
		}
		if newest == nil || n.Compare(*newest) > 0 {
			newest = &n
		}
	}
	if newest == nil {
		return ""
	}
	var found *seenVersion
	for i, sv := range versions[e.Package] {
		if sv.nevra.Name == newest.Name && sv.nevra.Arch == newest.Arch &&
			sv.nevra.Compare(*newest) > 0 && sv.first.After(e.LastSeen) {
			if found == nil || sv.nevra.Compare(found.nevra) < 0 {
				found = &versions[e.Package][i]
			}
		}
	}
	if found == nil {
		return ""
	}
	return found.nevra.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// siftDown restores the heap property below i in a heap of n elements
// ordered by less (less(i, j): i belongs above j).
func siftDown(n, i int, less func(i, j int) bool, swap func(i, j int)) {
	for {
		top, l, r := i, 2*i+1, 2*i+2
		if l < n && less(l, top) {
			top = l
		}
		if r < n && less(r, top) {
			top = r
		}
		if top == i {
			return
		}
		swap(i, top)
		i = top
	}
}
