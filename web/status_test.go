package web

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/mirror"
)

// statusServer serves the status page over a mirror holding the fixture
// repository and the crafted bad one (so the page has errors to show),
// with the task queue tasks (nil: no retrace service).
func statusServer(t *testing.T, tasks func() *TaskSummary) string {
	t.Helper()
	fs := fixturestore.New(t, "repo", "repo-bad")
	idx, m := fs.Index, fs.Mirror
	ops := NewOps(m, NewScheduler(nil, nil), Config{})
	ops.reschedule()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	NewStatus(ops, idx, StatusSources{
		GC:    func() *GCSummary { return &GCSummary{When: "2026-01-01 00:00", Freed: "1.0 MiB", Summary: "3 files"} },
		Tasks: tasks,
	}).Register(r)
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv.URL
}

// pageTasks is a queue as serve's task server reports it: one task
// running, two pending, two finished.
func pageTasks() *TaskSummary {
	return &TaskSummary{Running: 1, Pending: 2, MaxRunning: 3, Recent: []TaskLine{
		{ID: "512384711", State: "running", Created: "2026-01-01 10:00:00", Started: "2026-01-01 10:00:01", Step: "Generating backtrace"},
		{ID: "733190442", State: "pending", Created: "2026-01-01 10:00:05", Step: "Waiting for a free worker"},
		{ID: "845001236", State: "pending", Created: "2026-01-01 10:00:06", Step: "Waiting in the queue, 1 task(s) ahead"},
		{ID: "390112874", State: "failed", Created: "2026-01-01 09:58:00", Started: "2026-01-01 09:58:01", Finished: "2026-01-01 09:58:09", Step: "Retrace job failed"},
		{ID: "201938475", State: "finished", Created: "2026-01-01 09:50:00", Started: "2026-01-01 09:50:01", Finished: "2026-01-01 09:50:30", Step: "Retrace job finished successfully"},
	}}
}

// pageText is what a person reads of a page: the text without tags or
// styles, blanks collapsed.
func pageText(html string) string {
	text := regexp.MustCompile(`(?s)<style>.*</style>`).ReplaceAllString(html, " ")
	text = regexp.MustCompile(`<[^>]+>`).ReplaceAllString(text, " ")
	return strings.Join(strings.Fields(text), " ")
}

// TestStatusPageInChromium renders the page in headless Chromium, reads
// the text a person would see, and keeps a screenshot at a laptop and a
// phone width (in $RETRACED_ARTIFACTS when set).
func TestStatusPageInChromium(t *testing.T) {
	bin := fixtures.Chromium(t)
	url := statusServer(t, pageTasks)
	out, err := fixtures.Headless(bin, t.TempDir(), "--dump-dom", url+"/").Output()
	if err != nil {
		t.Fatalf("chromium --dump-dom: %v", err)
	}
	text := pageText(string(out))
	for _, want := range []string{
		"18 packages", "build-ids",
		"repo (yum)", "ok: 18 new", "9 names, 18 versions", "fetched",
		"repo-bad (yum)", "partial:", "climbs out", "absolute path", "payload truncated",
		"Next sync", "(in 5h)", "Last run 2026-01-01 00:00: freed 1.0 MiB",
		"1 running, 2 pending (at most 3 at once)",
		"Task State Created Started Finished Step",
		"512384711 running 2026-01-01 10:00:00 2026-01-01 10:00:01 — Generating backtrace",
		"733190442 pending 2026-01-01 10:00:05 — — Waiting for a free worker",
		"845001236 pending 2026-01-01 10:00:06 — — Waiting in the queue, 1 task(s) ahead",
		"390112874 failed 2026-01-01 09:58:00 2026-01-01 09:58:01 2026-01-01 09:58:09 Retrace job failed",
		"201938475 finished 2026-01-01 09:50:00 2026-01-01 09:50:01 2026-01-01 09:50:30 Retrace job finished successfully",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page does not say %q:\n%s", want, text)
		}
	}
	dir := fixtures.Artifacts(t)
	for name, size := range map[string]string{"laptop": "1280,1300", "phone": "390,2600"} {
		shot := filepath.Join(dir, "status-"+name+".png")
		if err := fixtures.Headless(bin, t.TempDir(), "--window-size="+size, "--screenshot="+shot, url+"/").Run(); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		fi, err := os.Stat(shot)
		if err != nil || fi.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v (%d bytes)", shot, err, fi.Size())
		}
		t.Logf("screenshot: %s", shot)
	}
}

// TestStatusPageTaskQueue: without a retrace service the page says so;
// with an idle one it says there are no tasks.
func TestStatusPageTaskQueue(t *testing.T) {
	for _, tt := range []struct {
		name  string
		tasks func() *TaskSummary
		says  string
	}{
		{"no service", nil, "The retrace service is not running."},
		{"idle", func() *TaskSummary { return &TaskSummary{MaxRunning: 2} }, "0 running, 0 pending (at most 2 at once) No recent tasks."},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(statusServer(t, tt.tasks) + "/")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if text := pageText(string(b)); !strings.Contains(text, tt.says) {
				t.Errorf("the page does not say %q:\n%s", tt.says, text)
			}
		})
	}
}

// TestDiskLowPausesSyncs: with a minimum no disk can meet, a sync is
// refused with a message saying why, and the page shows the banner.
func TestDiskLowPausesSyncs(t *testing.T) {
	st := fixturestore.Empty(t)
	dir, idx, m := st.Dir, st.Index, st.Mirror
	if _, err := m.Add(context.Background(), mirror.Source{Name: "fx", URL: fixtures.Path("repo")}); err != nil {
		t.Fatal(err)
	}
	ops := NewOps(m, nil, Config{Space: &diskspace.Policy{Dir: dir, MinPercent: 100.1}})
	out := ops.runSync(context.Background(), "fx")
	res, err := out.Result()
	if err != nil || res.Err == nil || !strings.Contains(res.Err.Error(), "paused") {
		t.Fatalf("sync with the disk low: %v %v", res, err)
	}
	if c, _ := idx.Counts(); c.Packages != 0 {
		t.Fatal("a paused sync ingested packages")
	}
	if src, err := m.Source("fx"); err != nil || !strings.Contains(src.State.LastResult, "paused") {
		t.Fatalf("the source's last result does not say it paused: %v %+v", err, src)
	}
	r := gin.New()
	NewStatus(ops, idx, StatusSources{DiskFree: ops.DiskFree}).Register(r)
	w := httptest.NewRecorder()
	r.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(w.Body.String(), `id="disk-low"`) {
		t.Fatal("the status page does not say the disk is low")
	}
}
