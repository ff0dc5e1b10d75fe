package web

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/mirror"
)

// TestHistoryChartAndSearchInChromium: after two real syncs of a source
// (the fixture repository's 1.0 packages, then its 1.1 ones), the status
// page in Chromium lists both syncs, newest first, with what each
// ingested, and draws the storage chart with a point per sync, the
// second higher; the search box, typed into and submitted, finds a
// fixture build-id's package and file, and says what is wrong with a
// malformed id and an unknown one (400 and 404 to a plain client).
func TestHistoryChartAndSearchInChromium(t *testing.T) {
	ctx := fixtures.Browser(t, 60*time.Second)
	repo := fixtures.NewServer(fixtures.FS("repo-v1"))
	repoURL := repo.Start(t)
	st := fixturestore.Empty(t)
	if _, err := st.Mirror.Add(context.Background(), mirror.Source{Name: "fx", URL: repoURL}); err != nil {
		t.Fatal(err)
	}
	var results []*mirror.Result
	for _, root := range []string{"repo-v1", "repo-v2"} {
		repo.SetRoot(fixtures.FS(root))
		res, err := st.Mirror.Sync(context.Background(), "fx", nil)
		if err != nil || !res.OK() || res.New == 0 {
			t.Fatalf("sync %s: %v %v", root, res, err)
		}
		results = append(results, res)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	NewStatus(NewOps(st.Mirror, NewScheduler(nil, nil), Config{}), st.Index, StatusSources{}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)

	if err := chromedp.Do(ctx, chromedp.Navigate(srv.URL+"/"), chromedp.WaitVisible("#storage-chart")); err != nil {
		t.Fatalf("status page: %v", err)
	}
	rows := run(t, ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('[data-source="fx"] tr[data-sync]')].map(r => r.innerText.replace(/\s+/g, " ").trim())`))
	stored := run(t, ctx, chromedp.AttributeValue("#storage-chart polyline.stored", "points")).Value
	fetched := run(t, ctx, chromedp.AttributeValue("#storage-chart polyline.fetched", "points")).Value
	shot := run(t, ctx, chromedp.FullScreenshot(100))
	if len(rows) != 2 {
		t.Fatalf("the history lists %d syncs, want 2: %q", len(rows), rows)
	}
	for i, res := range []*mirror.Result{results[1], results[0]} { // newest first
		want := "ok " + strconv.Itoa(res.New) + " " + mirror.HumanBytes(res.BytesFetched) + " " + mirror.HumanBytes(res.BytesStored)
		if !strings.Contains(rows[i], want) {
			t.Errorf("history row %d = %q, want it to say %q", i, rows[i], want)
		}
	}
	for name, pts := range map[string]string{"stored": stored, "fetched": fetched} {
		ys := chartYs(t, pts)
		if len(ys) != 2 || ys[1] >= ys[0] {
			t.Errorf("the %s line %q: want 2 points, the second higher (smaller y)", name, pts)
		}
	}
	if err := os.WriteFile(filepath.Join(fixtures.Artifacts(t), "status-history.png"), shot, 0o644); err != nil || len(shot) < 10_000 {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(shot))
	}

	e := fixtures.ELFFiles(t)[0]
	for _, tt := range []struct {
		name, typed, waitFor, says string
		code                       int
	}{
		{"found", strings.ToUpper(e.BuildID), "#matches", e.NEVRA + " " + e.Kind + " " + e.Path, http.StatusOK},
		{"malformed", "xyz!", "#search-error", "Not a build-id: malformed build-id", http.StatusBadRequest},
		{"odd length", e.BuildID[:5], "#search-error", "want an even number of hex digits", http.StatusBadRequest},
		{"unknown", "deadbeef", "#search-error", "No mirrored package ships a file with build-id deadbeef.", http.StatusNotFound},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := chromedp.Do(ctx,
				chromedp.Navigate(srv.URL+"/"),
				chromedp.SendKeys("#buildid", tt.typed),
				chromedp.Submit("#buildid"),
				chromedp.WaitVisible(tt.waitFor),
			); err != nil {
				t.Fatalf("search: %v", err)
			}
			text := run(t, ctx, chromedp.Text("#result"))
			loc := run(t, ctx, chromedp.Location())
			if text = strings.Join(strings.Fields(text), " "); !strings.Contains(text, tt.says) {
				t.Errorf("the result says %q, want %q", text, tt.says)
			}
			if !strings.Contains(loc, "/search?buildid=") {
				t.Errorf("the form led to %s", loc)
			}
			resp, err := http.Get(loc)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("GET %s: %d, want %d", loc, resp.StatusCode, tt.code)
			}
		})
	}
}

// chartYs returns the y of each point of an SVG polyline's points.
func chartYs(t *testing.T, points string) []float64 {
	var ys []float64
	for _, p := range strings.Fields(points) {
		_, y, ok := strings.Cut(p, ",")
		v, err := strconv.ParseFloat(y, 64)
		if !ok || err != nil {
			t.Fatalf("chart point %q", p)
		}
		ys = append(ys, v)
	}
	return ys
}

// run runs one action in the browser and returns its value.
func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return v
}
