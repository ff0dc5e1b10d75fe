package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/mirror"
)

// TestBytesAsDeltas: after a compaction that stored 1.1's files as
// deltas on 1.0's, the status page and /metrics say how many bytes are
// whole blobs and how many deltas, as the source's state counts them.
func TestBytesAsDeltas(t *testing.T) {
	fs := fixturestore.New(t, "repo")
	if res, err := fs.Mirror.Compact(context.Background()); err != nil || res.Deltas == 0 {
		t.Fatalf("Compact: %+v, %v", res, err)
	}
	src, err := fs.Mirror.Source("repo")
	if err != nil {
		t.Fatal(err)
	}
	st := src.State
	if st.BytesDelta <= 0 || st.BytesDelta >= st.BytesStored {
		t.Fatalf("state: %d of %d bytes as deltas", st.BytesDelta, st.BytesStored)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	ops := NewOps(fs.Mirror, NewScheduler(nil, nil), Config{})
	NewStatus(ops, fs.Index, StatusSources{}).Register(r)
	metrics := NewMetrics(fs.Index)
	metrics.SourceBytes(fs.Mirror.Sources)
	r.GET("/metrics", metrics.Handler())
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	page := pageText(get(t, srv.URL+"/"))
	want := mirror.HumanBytes(st.BytesStored-st.BytesDelta) + " whole, " + mirror.HumanBytes(st.BytesDelta) + " as deltas; " +
		StoredRatio(st.BytesStored, st.BytesFetched) + " of fetched"
	if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(page) {
		t.Errorf("status page lacks %q:\n%s", want, page)
	}
	body := get(t, srv.URL+"/metrics")
	for form, n := range map[string]int64{"delta": st.BytesDelta, "whole": st.BytesStored - st.BytesDelta, "fetched": st.BytesFetched} {
		line := `retraced_source_bytes{form="` + form + `",source="repo"} `
		m := regexp.MustCompile(regexp.QuoteMeta(line) + `(\S+)`).FindStringSubmatch(body)
		if m == nil {
			t.Errorf("/metrics lacks %s", line)
			continue
		}
		if v, err := strconv.ParseFloat(m[1], 64); err != nil || int64(v) != n {
			t.Errorf("%s%s, want %d", line, m[1], n)
		}
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	return string(b)
}
