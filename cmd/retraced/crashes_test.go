package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/retrace/crashes"
)

// runServeUntil runs serve on cfg until the returned stop is called,
// once the first sync has landed.
func runServeUntil(t *testing.T, cfg Config) (url string, stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan error, 1)
	go func() { stopped <- Run(ctx, cfg) }()
	stop = func() {
		cancel()
		if err := <-stopped; err != nil {
			t.Errorf("serve: %v", err)
		}
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		b, err := os.ReadFile(filepath.Join(cfg.Data, serverFile))
		var info serverInfo
		if err == nil && json.Unmarshal(b, &info) == nil {
			var views []map[string]any
			if getJSON(t, info.URL+"/api/v1/mirrors", &views) == http.StatusOK && len(views) > 0 && views[0]["last_sync"] != nil {
				return info.URL, stop
			}
		}
	}
	stop()
	t.Fatal("serve did not come up with a synced source")
	return "", nil
}

// TestCrashReports (issue 13): real cores of the fixture programs, in two
// versions, retraced with real gdb — one by `retraced retrace` with no
// server, the rest as tasks of serve over loopback — group by signature
// on /api/v1/crashes and on /crashes as headless Chromium shows it (a
// screenshot is kept in $RETRACED_ARTIFACTS); a restart of serve loses
// nothing.
func TestCrashReports(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	cfg := testConfig(t)
	for _, src := range []struct{ name, dir string }{{"fx", "repo"}, {"dist", "repo-dist"}} {
		if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", src.name, fixtures.Path(src.dir)); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, stderr)
	}
	// With no server: the worker runs here and records the crash itself.
	if _, stderr, err := run(t, "--data", cfg.Data, "retrace", fixtures.CoreFile(t, "counter-1.0.core.zst")); err != nil {
		t.Fatalf("retraced retrace: %v\n%s", err, stderr)
	}

	url, stop := runServeUntil(t, cfg)
	all := map[string]fixtures.Core{}
	for _, c := range slices.Concat(fixtures.Cores(t), fixtures.CrashCores(t), fixtures.DistCores(t)) {
		all[c.File] = c
	}
	// Version 1.0 first, then 1.1: the 1.0-only crashes are "gone" once
	// 1.1 crashes. counter 1.1 twice.
	order := []string{
		"crashme-1.0.core.zst", "greeter-1.0.core.zst", "greeter-1.0-segv.core.zst", "greeter-1.0-abrt.core.zst",
		"thrower-1.0.core.zst", "toolbox-2.0.core.zst", "toolbox-extra-2.0.core.zst",
		"crashme-1.1.core.zst", "greeter-1.1.core.zst", "counter-1.1.core.zst", "counter-1.1.core.zst",
	}
	var last retraceTask
	for _, f := range order {
		c := all[f]
		task := createTask(t, url, crashTarball(t, fixtures.CoreFile(t, c.File), map[string]string{"executable": c.Executable}))
		if status := task.wait(t, 90*time.Second); status != "FINISHED_SUCCESS" {
			_, _, logText := task.get(t, "/log")
			t.Fatalf("%s: %s\n%s", f, status, logText)
		}
		last = task
	}

	report := func(url string) crashes.APIReport {
		t.Helper()
		var rep crashes.APIReport
		if code := getJSON(t, url+"/api/v1/crashes?window=24h", &rep); code != http.StatusOK {
			t.Fatalf("GET /api/v1/crashes: %d", code)
		}
		return rep
	}
	// The recording follows the task's end closely; wait for the last.
	var rep crashes.APIReport
	pollUntil(t, 10*time.Second, "the last task recorded", func() bool {
		rep = report(url)
		var n int64
		for _, r := range rep.Rows {
			n += r.Count
		}
		return n == int64(len(order)+1)
	})
	bySig := map[string]crashes.APIRow{}
	for _, r := range rep.Rows {
		bySig[r.Signature.Text] = r
		t.Logf("%d %s versions %v new %v gone %v", r.Count, r.Signature.Text, r.Versions, r.New, r.Gone)
	}
	want := []struct {
		sig      string
		count    int64
		versions []string
		gone     bool
	}{
		// One crash in two versions (and epochs): one signature.
		{"counter SIGSEGV counter_store < counter_step < counter_step", 3, []string{"counter-1:1.1-1.x86_64", "counter-1.0-1.x86_64"}, false},
		{"greeter SIGSEGV emit < greeter_apply < greeter_format", 2, []string{"greeter-1.1-1.x86_64", "greeter-1.0-1.x86_64"}, false},
		// The same frames killed by two signals: two signatures, both
		// gone since greeter 1.1 crashed.
		{"greeter SIGSEGV pause < greeter_wait < main", 1, []string{"greeter-1.0-1.x86_64"}, true},
		{"greeter SIGABRT pause < greeter_wait < main", 1, []string{"greeter-1.0-1.x86_64"}, true},
		// crashme 1.1 calls through a new function: its own signature.
		{"crashme SIGSEGV crashme_dispatch < crashme_run < run_command", 1, []string{"crashme-1.0-1.x86_64"}, true},
		{"crashme SIGSEGV crashme_dispatch < crashme_check < crashme_run", 1, []string{"crashme-1.1-1.x86_64"}, false},
		// C++: raise, abort, std::terminate, __cxa_throw skipped.
		{"thrower SIGABRT thrower::check_step < thrower::run_job < thrower::run_all", 1, []string{"thrower-1.0-1.x86_64"}, false},
		{"toolbox SIGSEGV tb_plot < tb_draw_shape < tb_render", 1, []string{"toolbox-2.0-1.x86_64"}, false},
		{"toolbox-extra SIGSEGV tb_plot < tb_draw_shape < tb_stamp", 1, []string{"toolbox-extra-2.0-1.x86_64"}, false},
	}
	if len(rep.Rows) != len(want) {
		t.Errorf("%d signatures, want %d", len(rep.Rows), len(want))
	}
	for _, w := range want {
		r, ok := bySig[w.sig]
		if !ok {
			t.Errorf("no signature %q", w.sig)
			continue
		}
		if r.Count != w.count || !slices.Equal(r.Versions, w.versions) || r.Gone != w.gone || !r.New {
			t.Errorf("%s: count %d versions %v gone %v new %v; want %d %v %v new", w.sig, r.Count, r.Versions, r.Gone, r.New, w.count, w.versions, w.gone)
		}
	}
	if rep.Rows[0].Signature.Text != want[0].sig {
		t.Errorf("top crash %q, want %q", rep.Rows[0].Signature.Text, want[0].sig)
	}
	counter := bySig[want[0].sig]
	var one crashes.APISignature
	if code := getJSON(t, url+"/api/v1/crashes/"+counter.ID, &one); code != http.StatusOK || !strings.Contains(one.Example, "counter_store") ||
		len(one.Tasks) != 2 {
		t.Errorf("GET /api/v1/crashes/%s: %d, %d tasks, example:\n%s", counter.ID, code, len(one.Tasks), one.Example)
	}

	// A task deleted is no longer linked; the crash stays counted.
	if code, _, body := httpDo(t, http.MethodDelete, url+"/"+last.id, map[string]string{"X-Task-Password": last.pw}, nil); code != http.StatusOK {
		t.Fatalf("DELETE /%s: %d %s", last.id, code, body)
	}
	one = crashes.APISignature{}
	if getJSON(t, url+"/api/v1/crashes/"+counter.ID, &one); len(one.Tasks) != 1 || one.Tasks[0].ID == last.id || one.Count != 3 {
		t.Errorf("after the task's deletion: %d tasks %+v, count %d", len(one.Tasks), one.Tasks, one.Count)
	}

	// A restart loses nothing.
	stop()
	url, stop = runServeUntil(t, cfg)
	defer stop()
	again := report(url)
	for i := range again.Rows {
		a, b := again.Rows[i], rep.Rows[i]
		if a.ID != b.ID || a.Count != b.Count || !slices.Equal(a.Versions, b.Versions) || !a.LastSeen.Equal(b.LastSeen) {
			t.Errorf("after a restart, row %d: %+v, before %+v", i, a, b)
		}
	}
	if len(again.Rows) != len(rep.Rows) {
		t.Errorf("after a restart: %d signatures, before %d", len(again.Rows), len(rep.Rows))
	}

	// What a person reads, in headless Chromium.
	bin := fixtures.Chromium(t)
	dom := func(path string) string {
		out, err := fixtures.Headless(bin, t.TempDir(), "--dump-dom", url+path).Output()
		if err != nil {
			t.Fatalf("chromium --dump-dom %s: %v", path, err)
		}
		return pageText(string(out))
	}
	text := dom("/crashes?window=24h")
	for _, w := range []string{
		"top crashes", "9 signatures crashed in the last 24h",
		"1 counter SIGSEGV counter_store < counter_step < counter_step new 3",
		"counter-1:1.1-1.x86_64, counter-1.0-1.x86_64",
		"greeter SIGABRT pause < greeter_wait < main new gone 1",
		"thrower SIGABRT thrower::check_step < thrower::run_job < thrower::run_all new 1",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("/crashes does not say %q:\n%s", w, text)
		}
	}
	if !strings.Contains(dom("/"), "Crash reports: top crashes by signature") {
		t.Error("the status page does not link the crash reports")
	}
	text = dom("/crashes/" + counter.ID)
	for _, w := range []string{
		"counter SIGSEGV counter_store < counter_step < counter_step", "signal SIGSEGV",
		"frames counter_store ← counter_step ← counter_step", "crashes 3",
		"counter-1:1.1-1.x86_64 2", "counter-1.0-1.x86_64 1", "Example backtrace", "libcounter.c:",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("/crashes/%s does not say %q:\n%s", counter.ID, w, text)
		}
	}
	dir := fixtures.Artifacts(t)
	for _, sh := range []struct{ name, page, size string }{
		{"crashes", "/crashes?window=24h", "1300,1000"},
		{"crashes-phone", "/crashes?window=24h", "390,1800"},
		{"crash-signature", "/crashes/" + counter.ID, "1300,1000"},
	} {
		shot := filepath.Join(dir, sh.name+".png")
		if err := fixtures.Headless(bin, t.TempDir(), "--window-size="+sh.size, "--screenshot="+shot, url+sh.page).Run(); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if fi, err := os.Stat(shot); err != nil || fi.Size() < 10_000 {
			t.Fatalf("screenshot %s: %v", shot, err)
		}
		t.Logf("screenshot: %s", shot)
	}
}

// pageText is what a person reads of a page: the text without tags,
// styles or SVG tooltips, blanks collapsed.
func pageText(html string) string {
	text := regexp.MustCompile(`(?s)<style>.*?</style>|<title>[^<]*</title>`).ReplaceAllString(html, " ")
	text = regexp.MustCompile(`<[^>]+>`).ReplaceAllString(text, " ")
	text = strings.NewReplacer("&lt;", "<", "&gt;", ">", "&amp;", "&", "&#34;", `"`, "&#39;", "'").Replace(text)
	return strings.Join(strings.Fields(text), " ")
}

// TestGCCrashRetention: `retraced gc` removes the crash signatures last
// seen before crash_retention, and keeps them within it.
func TestGCCrashRetention(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	cfg := testConfig(t)
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "fx", fixtures.Path("repo")); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
		t.Fatalf("sync: %v\n%s", err, stderr)
	}
	if _, stderr, err := run(t, "--data", cfg.Data, "retrace", fixtures.CoreFile(t, "greeter-1.1.core.zst")); err != nil {
		t.Fatalf("retraced retrace: %v\n%s", err, stderr)
	}
	signatures := func() int {
		cs, err := openCrashes(cfg.Data, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		return cs.Len()
	}
	if n := signatures(); n != 1 {
		t.Fatalf("%d signatures after one retrace", n)
	}
	conf := filepath.Join(t.TempDir(), "retraced.toml")
	for _, tc := range []struct {
		retention string
		out       string
		left      int
	}{{"1h", "", 1}, {"1ms", "1 crash signature", 0}} {
		if err := os.WriteFile(conf, []byte(`crash_retention = "`+tc.retention+`"`+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
		out, stderr, err := run(t, "--data", cfg.Data, "--config", conf, "gc")
		if err != nil || !strings.Contains(out, tc.out) {
			t.Fatalf("gc with crash_retention %s: %v\n%s%s", tc.retention, err, out, stderr)
		}
		if n := signatures(); n != tc.left {
			t.Errorf("crash_retention %s: %d signatures left, want %d", tc.retention, n, tc.left)
		}
	}
}
