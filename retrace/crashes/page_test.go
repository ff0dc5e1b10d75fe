package crashes

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/retraced/retraced/fixtures"
)

// TestHistoryPageInChromium: a month of crashes (synthetic backtraces of
// a program that crashes daily in 1.0 for 40 days, is fixed in 1.1 and gains a new
// crash there) reads in headless Chromium as a person expects: the top
// crash with its count, the fixed one gone, the new one new, and a
// screenshot of the 30-day page with its charts (in $RETRACED_ARTIFACTS
// when set). The real cores through serve are TestCrashReports'
// (cmd/retraced).
func TestHistoryPageInChromium(t *testing.T) {
	bin := fixtures.Chromium(t)
	now := time.Date(2026, 3, 30, 15, 0, 0, 0, time.UTC)
	clk := &clock{now}
	s := openTestStore(t, t.TempDir(), clk, Options{})
	defer s.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	var cs []Crash
	for d := 39; d >= 0; d-- { // from before the window
		day := now.AddDate(0, 0, -d)
		version := "editor-1.0-1.fc40.x86_64"
		if d < 12 {
			version = "editor-1.1-1.fc40.x86_64"
		}
		add := func(n int, fn string, sig int) {
			for range n {
				cs = append(cs, Crash{Time: day.Add(-time.Duration(rng.IntN(12*60)) * time.Minute), Package: nevra(t, version),
					Signal: sig, Backtrace: syntheticBacktrace(fn, sig)})
			}
		}
		if d >= 12 {
			add(2+rng.IntN(4), "buffer_insert_line", 11) // fixed in 1.1
		}
		add(1+rng.IntN(3), "render_glyph_run", 11) // in both
		if d < 5 {
			add(3+rng.IntN(5), "undo_stack_pop", 6) // new in 1.1
		}
	}
	if _, err := s.RecordBatch(context.Background(), cs); err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	s.Register(r)
	srv := httptest.NewServer(r)
	defer srv.Close()
	out, err := fixtures.Headless(bin, t.TempDir(), "--dump-dom", srv.URL+"/crashes?window=30d").Output()
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	text := regexp.MustCompile(`(?s)<style>.*?</style>|<title>[^<]*</title>|<[^>]+>`).ReplaceAllString(string(out), " ")
	text = strings.Join(strings.Fields(strings.NewReplacer("&lt;", "<", "&gt;", ">").Replace(text)), " ")
	report := s.Report(Window30d, 0)
	counts := map[string]int64{}
	for _, row := range report.Rows {
		counts[row.Frames[0]] = row.WindowCount
	}
	for _, want := range []string{
		"3 signatures crashed in the last 30d",
		fmt.Sprintf("editor SIGSEGV buffer_insert_line < app::Worker<T>::step < (anonymous)::dispatch gone %d", counts["buffer_insert_line"]),
		fmt.Sprintf("editor SIGABRT undo_stack_pop < app::Worker<T>::step < (anonymous)::dispatch new %d", counts["undo_stack_pop"]),
		"editor-1.1-1.fc40.x86_64, editor-1.0-1.fc40.x86_64",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not say %q:\n%s", want, text)
		}
	}
	if strings.Count(string(out), "<rect") != 3*30 {
		t.Errorf("%d chart bars, want 90", strings.Count(string(out), "<rect"))
	}
	dir := fixtures.Artifacts(t)
	shot := filepath.Join(dir, "crashes-30d.png")
	if err := fixtures.Headless(bin, t.TempDir(), "--window-size=1300,700", "--screenshot="+shot, srv.URL+"/crashes?window=30d").Run(); err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s", shot)
}
