package web

import (
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
)

// Metrics are the server's Prometheus collectors.
type Metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// Lookups counts build-id lookups by result ("hit" or "miss") and by
	// interface ("api", "debuginfod").
	Lookups *prometheus.CounterVec
	// Federation counts requests for what the mirror lacks, asked of the
	// upstream debuginfod servers, by result ("cache", "fetched", "miss",
	// "loop", "error").
	Federation *prometheus.CounterVec
	// Metadata counts debuginfod /metadata searches by key ("file",
	// "glob") and by whether they completed within their bounds
	// ("true", "false").
	Metadata *prometheus.CounterVec
}

// Counter is what the metrics need of the index.
type Counter interface {
	Counts() (index.Counts, error)
}

var _ Counter = (*index.Store)(nil)

// NewMetrics registers the collectors, including index totals read from
// idx at scrape time.
func NewMetrics(idx Counter) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retraced_http_requests_total", Help: "HTTP requests by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "retraced_http_request_duration_seconds", Help: "HTTP request latency by route template.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"route"}),
		Lookups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retraced_lookups_total", Help: "Build-id lookups by interface and result.",
		}, []string{"interface", "result"}),
		Federation: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retraced_federation_requests_total", Help: "Requests for what the mirror lacks asked of the upstream debuginfod servers (by the debuginfod handlers and the retrace worker), by result.",
		}, []string{"result"}),
		Metadata: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "retraced_metadata_searches_total", Help: "debuginfod /metadata searches answered, by key and completeness.",
		}, []string{"key", "complete"}),
	}
	total := func(name, help string, pick func(index.Counts) uint64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 {
			c, err := idx.Counts()
			if err != nil {
				return -1
			}
			return float64(pick(c))
		})
	}
	m.reg.MustRegister(m.requests, m.latency, m.Lookups, m.Federation, m.Metadata,
		total("retraced_index_packages", "Packages in the index.", func(c index.Counts) uint64 { return c.Packages }),
		total("retraced_index_build_ids", "Distinct build-ids in the index.", func(c index.Counts) uint64 { return c.BuildIDs }),
		total("retraced_index_files", "Kept files in the index.", func(c index.Counts) uint64 { return c.Files }),
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// SourceBytes registers retraced_source_bytes{source, form}: per source,
// the bytes fetched from it ("fetched") and what its files take in the
// pool as whole blobs ("whole") and as deltas on older versions
// ("delta"), read from list at scrape time.
func (m *Metrics) SourceBytes(list func() ([]*mirror.Source, error)) {
	m.reg.MustRegister(sourceBytes{list: list})
}

var sourceBytesDesc = prometheus.NewDesc("retraced_source_bytes",
	"Bytes per source: fetched from it, and stored in the pool as whole blobs and as deltas.",
	[]string{"source", "form"}, nil)

type sourceBytes struct {
	list func() ([]*mirror.Source, error)
}

func (s sourceBytes) Describe(ch chan<- *prometheus.Desc) { ch <- sourceBytesDesc }

func (s sourceBytes) Collect(ch chan<- prometheus.Metric) {
	srcs, err := s.list()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(sourceBytesDesc, err)
		return
	}
	for _, src := range srcs {
		st := src.State
		for form, n := range map[string]int64{"fetched": st.BytesFetched, "whole": st.BytesStored - st.BytesDelta, "delta": st.BytesDelta} {
			ch <- prometheus.MustNewConstMetric(sourceBytesDesc, prometheus.GaugeValue, float64(n), src.Name, form)
		}
	}
}

// Middleware counts and times every request by its route template, so
// /buildid/:id/debuginfo is one series however many ids are asked for.
func (m *Metrics) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		start := time.Now()
		c.Next()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, c.Request.Method, strconv.Itoa(c.Writer.Status())).Inc()
		m.latency.WithLabelValues(route).Observe(time.Since(start).Seconds())
	}
}

// Handler serves the Prometheus text format.
func (m *Metrics) Handler() gin.HandlerFunc {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	return func(c *gin.Context) { h.ServeHTTP(c.Writer, c.Request) }
}
