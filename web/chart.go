package web

import (
	"fmt"
	"html/template"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/retraced/retraced/mirror"
)

// storagePoint is one sample of the storage-over-time chart: the bytes
// every source had stored and fetched in all after one sync ended.
type storagePoint struct {
	At              time.Time
	Stored, Fetched int64
}

// storageSamples merges the sources' sync histories into the chart's
// samples: one per sync (of any source), in time order, each the sum over
// the sources of their totals as of that sync's end.
func storageSamples(srcs []*mirror.Source) []storagePoint {
	type ev struct {
		at  time.Time
		src int
		rec mirror.SyncRecord
	}
	var evs []ev
	for i, s := range srcs {
		for _, r := range s.State.History {
			evs = append(evs, ev{r.Start.Add(r.Duration), i, r})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].at.Before(evs[j].at) })
	stored := make([]int64, len(srcs))
	fetched := make([]int64, len(srcs))
	var sumS, sumF int64
	out := make([]storagePoint, 0, len(evs))
	for _, e := range evs {
		sumS += e.rec.TotalStored - stored[e.src]
		sumF += e.rec.TotalFetched - fetched[e.src]
		stored[e.src], fetched[e.src] = e.rec.TotalStored, e.rec.TotalFetched
		out = append(out, storagePoint{At: e.at, Stored: sumS, Fetched: sumF})
	}
	return out
}

// Chart geometry, in SVG user units.
const (
	chartW, chartH = 640, 200
	chartLeft      = 72 // room for the byte labels
	chartBottom    = 22 // room for the dates
	chartTop       = 8
	chartRight     = 8
)

// storageChart draws the samples as an SVG line chart, stored bytes in
// blue and fetched bytes in grey, each sample a dot with its time and
// values as a tooltip, as retrace/crashes draws its bar charts: inline
// SVG made of numbers and of strings this package formats (dates, byte
// counts), escaped anyway. No samples: no chart.
func storageChart(pts []storagePoint) template.HTML {
	if len(pts) == 0 {
		return ""
	}
	var peak int64
	for _, p := range pts {
		peak = max(peak, p.Stored, p.Fetched)
	}
	peak = max(peak, 1)
	t0, t1 := pts[0].At, pts[len(pts)-1].At
	span := t1.Sub(t0)
	plotW := float64(chartW - chartLeft - chartRight)
	plotH := float64(chartH - chartTop - chartBottom)
	x := func(t time.Time) float64 {
		if span <= 0 {
			return float64(chartLeft) + plotW/2
		}
		return float64(chartLeft) + plotW*float64(t.Sub(t0))/float64(span)
	}
	y := func(n int64) float64 { return float64(chartTop) + plotH*(1-float64(n)/float64(peak)) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }
	esc := template.HTMLEscapeString

	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" id="storage-chart" xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="bytes stored and fetched over %d syncs, peak %s">`,
		chartW, chartH, chartW, chartH, len(pts), esc(mirror.HumanBytes(peak)))
	// Axes, the peak and zero labels, the first and last dates.
	fmt.Fprintf(&b, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#c5ccd6"/>`, chartLeft, f(y(0)), chartW-chartRight, f(y(0)))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%s" stroke="#c5ccd6"/>`, chartLeft, chartTop, chartLeft, f(y(0)))
	fmt.Fprintf(&b, `<line x1="%d" y1="%s" x2="%d" y2="%s" stroke="#eef1f5"/>`, chartLeft, f(y(peak)), chartW-chartRight, f(y(peak)))
	label := func(xv, yv float64, anchor, text string) {
		fmt.Fprintf(&b, `<text x="%s" y="%s" text-anchor="%s" font-size="11" fill="#5d6675">%s</text>`, f(xv), f(yv), anchor, esc(text))
	}
	label(chartLeft-6, y(peak)+4, "end", mirror.HumanBytes(peak))
	label(chartLeft-6, y(0)+4, "end", "0")
	layout := "2006-01-02 15:04"
	if span < time.Hour {
		layout = "2006-01-02 15:04:05"
	}
	label(chartLeft, chartH-6, "start", t0.Local().Format(layout))
	if span > 0 {
		label(chartW-chartRight, chartH-6, "end", t1.Local().Format(layout))
	}
	for _, s := range []struct {
		class, color string
		v            func(storagePoint) int64
	}{
		{"fetched", "#9aa3b2", func(p storagePoint) int64 { return p.Fetched }},
		{"stored", "#2f6fdb", func(p storagePoint) int64 { return p.Stored }},
	} {
		fmt.Fprintf(&b, `<polyline class="%s" fill="none" stroke="%s" stroke-width="2" points="`, s.class, s.color)
		for i, p := range pts {
			if i > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(f(x(p.At)) + "," + f(y(s.v(p))))
		}
		b.WriteString(`"/>`)
		for _, p := range pts {
			fmt.Fprintf(&b, `<circle class="%s" cx="%s" cy="%s" r="3" fill="%s"><title>%s: %s %s</title></circle>`,
				s.class, f(x(p.At)), f(y(s.v(p))), s.color, esc(p.At.Local().Format("2006-01-02 15:04:05")), esc(mirror.HumanBytes(s.v(p))), s.class)
		}
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String()) // numbers and escaped strings only
}
