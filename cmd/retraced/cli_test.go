package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/worker"
	"github.com/retraced/retraced/web"
)

// run executes the CLI in-process and returns stdout, stderr and the error.
func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errb)
	err := root.Execute()
	return out.String(), errb.String(), err
}

func TestMirrorAddSyncListLookup(t *testing.T) {
	data := t.TempDir()
	url := fixtures.NewServer(fixtures.FS("repo")).Start(t)
	if _, _, err := run(t, "--data", data, "mirror", "add", "fx", url); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "--data", data, "mirror", "sync")
	if err != nil {
		t.Fatalf("sync: %v", err)
	}
	if !strings.HasPrefix(out, "fx: ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("sync off a terminal prints one summary line per source, got %q", out)
	}
	out, _, err = run(t, "--data", data, "mirror", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("list --json: %v\n%s", err, out)
	}
	for _, f := range []string{"name", "kind", "url", "schedule", "packages", "versions", "bytes_fetched", "bytes_stored", "last_sync", "last_result"} {
		if _, ok := list[0][f]; !ok {
			t.Errorf("mirror list --json lacks %q", f)
		}
	}
	if list[0]["kind"] != "yum" || list[0]["versions"].(float64) != float64(len(fixtures.Packages(t))) {
		t.Fatalf("list: %v", list[0])
	}

	// lookup prints exactly what eu-readelf's reference says.
	var ids, want []string
	seen := map[string]bool{}
	for _, e := range fixtures.ELFFiles(t) {
		if !seen[e.BuildID] {
			seen[e.BuildID] = true
			ids = append(ids, e.BuildID)
		}
		want = append(want, strings.Join([]string{e.BuildID, e.NEVRA, e.Kind, e.Path}, " "))
	}
	out, _, err = run(t, append([]string{"--data", data, "lookup"}, ids...)...)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(got)
	sort.Strings(want)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("lookup:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// An unknown id: exit 1, the known one still printed.
	out, errOut, err := run(t, "--data", data, "lookup", ids[0], "00112233445566778899aabbccddeeff00112233")
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 || !strings.Contains(errOut, "not found") || !strings.HasPrefix(out, ids[0]) {
		t.Fatalf("lookup with an unknown id: err %v, out %q, stderr %q", err, out, errOut)
	}
	if _, _, err := run(t, "--data", data, "lookup", "not-hex"); err == nil {
		t.Fatal("malformed id accepted")
	}
}

func TestSyncExitsOneWhenASourceFails(t *testing.T) {
	data := t.TempDir()
	srv := fixtures.NewServer(fixtures.FS("repo"))
	url := srv.Start(t)
	srv.Inject("/repodata/repomd.xml", fixtures.Status(500))
	for _, name := range []string{"broken", "good"} {
		u := url
		if name == "good" {
			u = fixtures.Path("repo")
		}
		if _, _, err := run(t, "--data", data, "mirror", "add", name, u, "--kind", "yum"); err != nil {
			t.Fatal(err)
		}
	}
	out, _, err := run(t, "--data", data, "mirror", "sync")
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 {
		t.Fatalf("sync with a failing source: %v", err)
	}
	if !strings.Contains(out, "broken: failed") || !strings.Contains(out, "good: ") || strings.Contains(out, "good: failed") {
		t.Fatalf("summaries: %q", out)
	}
}

func TestMirrorRemoveKeepsPackages(t *testing.T) {
	data := t.TempDir()
	if _, _, err := run(t, "--data", data, "mirror", "add", "fx", fixtures.Path("repo")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", data, "mirror", "sync", "fx"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", data, "mirror", "remove", "fx"); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "--data", data, "mirror", "list", "--json")
	if err != nil || strings.TrimSpace(out) != "[]" {
		t.Fatalf("list after remove: %q %v", out, err)
	}
	id := fixtures.ELFFiles(t)[0].BuildID
	if out, _, err := run(t, "--data", data, "lookup", id); err != nil || !strings.HasPrefix(out, id) {
		t.Fatalf("lookup after remove: %q %v", out, err)
	}
}

func TestDataDirInUse(t *testing.T) {
	cfg := defaultConfig()
	cfg.Data = t.TempDir()
	s, err := openStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s2, err := openStore(cfg); !errors.Is(err, ErrInUse) {
		if s2 != nil {
			s2.Close()
		}
		t.Fatalf("second open: %v, want ErrInUse", err)
	}
	// The same from another process: a clear message, exit 1, nothing touched.
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperCLI$")
	cmd.Env = append(os.Environ(), "RETRACED_HELPER_ARGS=--data\x1f"+cfg.Data+"\x1fmirror\x1flist")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "in use") || !strings.Contains(string(out), "held by process") {
		t.Fatalf("second process: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, "index")); err != nil {
		t.Fatal(err)
	}
}

// TestHelperCLI runs the CLI as a separate process for TestDataDirInUse.
func TestHelperCLI(t *testing.T) {
	args := os.Getenv("RETRACED_HELPER_ARGS")
	if args == "" {
		t.Skip("helper process only")
	}
	_, errOut, err := run(t, strings.Split(args, "\x1f")...)
	if err != nil {
		os.Stderr.WriteString(errOut + err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

func TestConfigFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "retraced.toml")
	if err := os.WriteFile(p, []byte("data = \""+filepath.Join(dir, "d")+"\"\n[mirror]\nworkers = 1\ncompression = \"best\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig(p)
	if err != nil || c.Mirror.Workers != 1 || c.Mirror.Compression != "best" || c.Data != filepath.Join(dir, "d") {
		t.Fatalf("loadConfig = %+v, %v", c, err)
	}
	if err := os.WriteFile(p, []byte("dta = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(p); err == nil {
		t.Fatal("a misspelt key was accepted")
	}
	// Out of range, or misspelt: refused, naming the key.
	for _, bad := range []struct{ toml, says string }{
		{"min_free = -5", "min_free = -5"},
		{"min_free = 150", "min_free = 150"},
		{"memory_limit_mb = -1", "memory_limit_mb = -1"},
		{"[mirror]\nworkers = 0", "workers = 0"},
		{"[mirror]\nworkers = -3", "workers = -3"},
		{"[mirror]\nwokers = 2", "unknown key mirror.wokers (line 2)"},
		{"dta = 1", "unknown key dta (line 1)"},
	} {
		if err := os.WriteFile(p, []byte(bad.toml+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%q: err = %v, want it to say %q", bad.toml, err, bad.says)
		}
	}
	for _, bad := range []string{`task_ttl = "a week"`, `failed_task_ttl = "-1h"`} {
		if err := os.WriteFile(p, []byte(bad+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := loadConfig(p); err == nil || !strings.Contains(err.Error(), "positive duration") {
			t.Fatalf("%s: err = %v, want a duration error", bad, err)
		}
	}
	if _, _, err := run(t, "--config", filepath.Join(dir, "missing.toml"), "mirror", "list"); err == nil {
		t.Fatal("missing config file accepted")
	}
}

// TestDurationKeys: every duration key is parsed once into its typed
// field, and a value that is no Go duration (a typo, a number without a
// unit) is refused naming the key and quoting the value.
func TestDurationKeys(t *testing.T) {
	p := filepath.Join(t.TempDir(), "retraced.toml")
	for _, k := range []struct {
		table, key string
		field      func(Config) time.Duration
	}{
		{"", "task_ttl", func(c Config) time.Duration { return c.TaskTTL.Duration }},
		{"", "failed_task_ttl", func(c Config) time.Duration { return c.FailedTaskTTL.Duration }},
		{"", "idle_timeout", func(c Config) time.Duration { return c.IdleTimeout.Duration }},
		{"", "crash_retention", func(c Config) time.Duration { return c.CrashRetention.Duration }},
		{"", "body_rate_window", func(c Config) time.Duration { return c.BodyRateWindow.Duration }},
		{"mirror", "crawl_delay", func(c Config) time.Duration { return c.Mirror.CrawlDelay.Duration }},
		{"mirror", "crawl_listing_timeout", func(c Config) time.Duration { return c.Mirror.CrawlListingTimeout.Duration }},
		{"mirror", "download_idle_timeout", func(c Config) time.Duration { return c.Mirror.DownloadIdleTimeout.Duration }},
		{"mirror", "download_rate_window", func(c Config) time.Duration { return c.Mirror.DownloadRateWindow.Duration }},
		{"", "read_header_timeout", func(c Config) time.Duration { return c.ReadHeaderTimeout.Duration }},
		{"retrace", "task_timeout", func(c Config) time.Duration { return c.Retrace.TaskTimeout.Duration }},
		{"retrace", "upload_timeout", func(c Config) time.Duration { return c.Retrace.UploadTimeout.Duration }},
		{"retrace", "gdb_timeout", func(c Config) time.Duration { return c.Retrace.GDBTimeout.Duration }},
		{"retrace", "upload_rate_window", func(c Config) time.Duration { return c.Retrace.UploadRateWindow.Duration }},
	} {
		t.Run(k.key, func(t *testing.T) {
			load := func(val string) (Config, error) {
				t.Helper()
				body := k.key + " = " + val + "\n"
				if k.table != "" {
					body = "[" + k.table + "]\n" + body
				}
				if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
				return loadConfig(p)
			}
			c, err := load(`"1m"`) // within every key's range: crawl_delay's at most, gdb_timeout's default
			if err != nil || k.field(c) != time.Minute {
				t.Errorf("%s = \"1m\": %v, %v", k.key, k.field(c), err)
			}
			for _, bad := range []string{`"7 s"`, `7`} {
				if _, err := load(bad); err == nil || !strings.Contains(err.Error(), k.key+` = "`+strings.Trim(bad, `"`)+`"`) {
					t.Errorf("%s = %s: err = %v, want it to name the key and the value", k.key, bad, err)
				}
			}
		})
	}
}

// TestRetraceConfig: the [retrace] table reaches the task server (its
// /settings, over HTTP) and the worker; values the server would quietly
// replace with a default are refused at load, naming the key.
func TestRetraceConfig(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	dir := t.TempDir()
	p := filepath.Join(dir, "retraced.toml")
	write := func(body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(`data = "` + filepath.Join(dir, "d") + `"
[retrace]
max_running_tasks = 3
max_queued_tasks = 7
max_packed_size = 64
max_unpacked_size = 512
task_timeout = "20m"
upload_timeout = "5m"
gdb_timeout = "90s"
gdb_memory_mb = 1536
sysroot_budget_mb = 100
network = "host"
supported_releases = ["fedora-40-x86_64"]
`)
	cfg, err := loadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	rc, wc := serverConfig(cfg), workerConfig(cfg.Data, cfg.Retrace)
	if rc.MaxRunningTasks != 3 || rc.MaxQueuedTasks != 7 || rc.TaskTimeout != 20*time.Minute || rc.UploadTimeout != 5*time.Minute {
		t.Errorf("task server config %+v", rc)
	}
	if wc.Timeout != 90*time.Second || wc.MemoryLimit != 1536<<20 || wc.SysrootBudget != 100<<20 || wc.Network != "host" {
		t.Errorf("worker config %+v", wc)
	}

	s, err := openStore(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rs, _, closeTasks, err := startTasks(s, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer closeTasks()
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	rs.Register(e)
	web.NewStatus(web.NewOps(s.mirror, nil, web.Config{}), s.idx, web.StatusSources{Tasks: taskSummary(rs)}).Register(e)
	srv := httptest.NewServer(e)
	defer srv.Close()
	get := func(path, password string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Task-Password", password)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp, string(b)
	}
	_, body := get("/settings", "")
	for _, line := range []string{"max_running_tasks 3", "max_packed_size 64", "max_unpacked_size 512", "supported_releases fedora-40-x86_64"} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("/settings lacks %q:\n%s", line, body)
		}
	}

	// The status page lists a task with its state, and the configured
	// number of workers. The mirror is empty: the task fails at once.
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan struct{})
	go func() { rs.Run(ctx); close(ran) }()
	defer func() { cancel(); <-ran }()
	core, err := os.ReadFile(fixtures.CoreFile(t, "crashme-1.0.core.zst"))
	if err != nil {
		t.Fatal(err)
	}
	var tarball bytes.Buffer
	tw := tar.NewWriter(&tarball)
	if err := tw.WriteHeader(&tar.Header{Name: "coredump", Mode: 0o644, Size: int64(len(core)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(core); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(srv.URL+"/create", "application/x-tar", &tarball)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id, pw := resp.Header.Get("X-Task-Id"), resp.Header.Get("X-Task-Password")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, _ := get("/"+id, pw)
		if st := resp.Header.Get("X-Task-Status"); st == "FINISHED_FAILURE" {
			break
		} else if st != "PENDING" || time.Now().After(deadline) {
			t.Fatalf("task %s: %s, want FINISHED_FAILURE", id, st)
		}
	}
	_, page := get("/", "")
	text := strings.Join(strings.Fields(regexp.MustCompile(`<[^>]+>`).ReplaceAllString(page, " ")), " ")
	for _, want := range []string{"0 running, 0 pending (at most 3 at once)", id + " failed", "Retrace job failed"} {
		if !strings.Contains(text, want) {
			t.Errorf("the status page does not say %q:\n%s", want, text)
		}
	}
	if strings.Contains(page, pw) {
		t.Error("the status page shows the task's password")
	}

	// Unset, every key has its default; 0 MiB of gdb memory is no limit.
	write("[retrace]\ngdb_memory_mb = 0\n")
	if cfg, err = loadConfig(p); err != nil {
		t.Fatal(err)
	}
	if rc := serverConfig(cfg); rc.MaxRunningTasks != retrace.DefaultMaxRunningTasks || rc.MaxPackedSize != retrace.DefaultMaxPackedSize || rc.TaskTimeout != retrace.DefaultTaskTimeout {
		t.Errorf("defaults: %+v", rc)
	}
	if wc := workerConfig(dir, cfg.Retrace); wc.MemoryLimit >= 0 || wc.Timeout != worker.DefaultGDBTimeout || wc.Network != "" {
		t.Errorf("worker defaults: %+v", wc)
	}

	for _, bad := range []struct{ toml, says string }{
		{"max_running_tasks = 0", "max_running_tasks = 0: want a positive number"},
		{"max_queued_tasks = -3", "max_queued_tasks = -3"},
		{"max_running_tasks = 4\nmax_queued_tasks = 2", "max_queued_tasks = 2 is below max_running_tasks = 4"},
		{"max_packed_size = 0", "max_packed_size = 0"},
		{"sysroot_budget_mb = -1", "sysroot_budget_mb = -1"},
		{"gdb_memory_mb = -5", "gdb_memory_mb = -5"},
		{`task_timeout = "an hour"`, `task_timeout = "an hour": want a positive duration`},
		{`gdb_timeout = "0s"`, `gdb_timeout = "0s"`},
		{`upload_timeout = "-1m"`, `upload_timeout = "-1m"`},
		{`task_timeout = "1m"` + "\n" + `gdb_timeout = "2m"`, "exceeds task_timeout"},
		{`network = "bridge"`, `network = "bridge"`},
	} {
		write("[retrace]\n" + bad.toml + "\n")
		_, err := loadConfig(p)
		if err == nil || !strings.Contains(err.Error(), bad.says) {
			t.Errorf("%q: err = %v, want it to say %q", bad.toml, err, bad.says)
		}
	}
}

func TestGCCommand(t *testing.T) {
	data := t.TempDir()
	for _, name := range []string{"v1", "v2"} {
		if _, _, err := run(t, "--data", data, "mirror", "add", name, fixtures.Path("repo-"+name)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := run(t, "--data", data, "mirror", "sync"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", data, "mirror", "remove", "v1"); err != nil {
		t.Fatal(err)
	}
	// A retrace task that failed a month ago, and one that just succeeded.
	month := time.Now().Add(-30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	for id, st := range map[string]string{
		"111": `{"status":"FINISHED_FAILURE","created":"` + month + `","finished":"` + month + `"}`,
		"222": `{"status":"FINISHED_SUCCESS","created":"` + time.Now().UTC().Format(time.RFC3339) + `","finished":"` + time.Now().UTC().Format(time.RFC3339) + `"}`,
	} {
		dir := filepath.Join(data, "tasks", id)
		if err := os.MkdirAll(dir, 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "task.json"), []byte(st), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	// Failed tasks kept 1000 hours: the month-old one stays.
	conf := filepath.Join(t.TempDir(), "retraced.toml")
	if err := os.WriteFile(conf, []byte(`failed_task_ttl = "1000h"`+"\n"+`task_ttl = "2000h"`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err := run(t, "--config", conf, "--data", data, "gc", "--dry-run")
	if err != nil || !strings.Contains(out, "9 packages") || strings.Contains(out, "task") {
		t.Fatalf("gc --dry-run keeping failed tasks 1000h: %q %v", out, err)
	}
	out, _, err = run(t, "--data", data, "gc", "--dry-run")
	if err != nil || !strings.Contains(out, "9 packages") || !strings.Contains(out, "1 task") || !strings.Contains(out, "(dry run)") {
		t.Fatalf("gc --dry-run: %q %v", out, err)
	}
	id := ""
	for _, e := range fixtures.ELFFiles(t) {
		if strings.Contains(e.NEVRA, "1.0-1") {
			id = e.BuildID
		}
	}
	if _, _, err := run(t, "--data", data, "lookup", id); err != nil {
		t.Fatalf("dry run removed something: %v", err)
	}
	out, _, err = run(t, "--data", data, "gc")
	if err != nil || !strings.Contains(out, ", 9 packages") || !strings.Contains(out, "freed") {
		t.Fatalf("gc: %q %v", out, err)
	}
	if _, err := os.Stat(filepath.Join(data, "tasks", "111")); !os.IsNotExist(err) {
		t.Fatalf("the month-old failed task is still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(data, "tasks", "222")); err != nil {
		t.Fatalf("the fresh task: %v", err)
	}
	if _, _, err := run(t, "--data", data, "lookup", id); err == nil {
		t.Fatal("a package of the removed source still resolves after gc")
	}
	out, _, err = run(t, "--data", data, "gc")
	if err != nil || !strings.Contains(out, "nothing to collect") {
		t.Fatalf("second gc: %q %v", out, err)
	}
}

// TestRetraceCommand: retraced retrace CORE, locally, on a fixture core,
// prints gdb's backtrace with the crashing program's function names; a
// core of a program the mirror lacks fails and says what is missing.
func TestRetraceCommand(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	data := t.TempDir()
	if _, _, err := run(t, "--data", data, "mirror", "add", "fx", fixtures.Path("repo")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", data, "mirror", "sync"); err != nil {
		t.Fatal(err)
	}
	var core fixtures.Core
	for _, c := range fixtures.Cores(t) {
		if c.File == "counter-1.1.core.zst" {
			core = c
		}
	}
	if core.File == "" {
		t.Fatal("no counter-1.1 core among the fixtures")
	}
	// [retrace] reaches the worker: the log says gdb's memory limit.
	conf := filepath.Join(t.TempDir(), "retraced.toml")
	if err := os.WriteFile(conf, []byte("[retrace]\ngdb_memory_mb = 1536\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run(t, "--config", conf, "--data", data, "retrace", "-v", fixtures.CoreFile(t, core.File))
	if err != nil {
		t.Fatalf("retrace: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, "#0 ") || !strings.Contains(out, " in main (") {
		t.Fatalf("backtrace without frames or main:\n%s", out)
	}
	if !strings.Contains(stderr, "address space 1.5 GiB") {
		t.Errorf("the log does not say gdb_memory_mb = 1536:\n%s", stderr)
	}

	// gc without a server sees the sysroot directory: a killed worker's
	// run directory goes; the sysroot just built, within the budget, stays.
	sysroots := filepath.Join(data, "sysroots")
	junk := filepath.Join(sysroots, ".run-killed")
	if err := os.MkdirAll(junk, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(junk, "core"), make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	out, _, err = run(t, "--data", data, "gc", "--dry-run")
	if err != nil || !strings.Contains(out, "would remove sysroot .run-killed (") || strings.Count(out, "sysroot ") != 1 {
		t.Fatalf("gc --dry-run: want the leftover and no sysroot in use or within budget: %v\n%s", err, out)
	}
	if _, err := os.Stat(junk); err != nil {
		t.Fatalf("the dry run removed the leftover: %v", err)
	}
	out, _, err = run(t, "--data", data, "gc")
	if err != nil || !strings.Contains(out, "removed sysroot .run-killed (") {
		t.Fatalf("gc: %v\n%s", err, out)
	}
	if _, err := os.Stat(junk); !os.IsNotExist(err) {
		t.Errorf("the leftover is still there: %v", err)
	}
	if kept, _ := filepath.Glob(filepath.Join(sysroots, strings.Repeat("[0-9a-f]", 64))); len(kept) != 1 {
		t.Errorf("sysroots after gc: %v, want the one built", kept)
	}
	empty := t.TempDir()
	_, stderr, err = run(t, "--data", empty, "retrace", fixtures.CoreFile(t, core.File))
	if err == nil {
		t.Fatal("retrace with an empty mirror succeeded")
	}
	if !strings.Contains(err.Error(), "not in the mirror") || !strings.Contains(err.Error(), core.Modules[0].BuildID) {
		t.Fatalf("empty mirror: %v, want the missing executable's build-id\n%s", err, stderr)
	}
}

// TestCrawlConfig: the [mirror] crawl_* keys load into the mirror's crawl
// settings, defaults fill what is unset, and values out of range are
// refused at load, naming the key.
func TestCrawlConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "retraced.toml")
	load := func(body string) (Config, error) {
		t.Helper()
		if err := os.WriteFile(p, []byte("[mirror]\n"+body), 0o644); err != nil {
			t.Fatal(err)
		}
		return loadConfig(p)
	}
	cfg, err := load("crawl_max_depth = 6\ncrawl_parallelism = 1\ncrawl_delay = \"250ms\"\n")
	if err != nil {
		t.Fatal(err)
	}
	want := mirror.DefaultCrawl
	want.MaxDepth, want.Parallelism, want.Delay = 6, 1, 250*time.Millisecond
	if got := cfg.Mirror.crawl(); got != want {
		t.Errorf("crawl %+v, want %+v", got, want)
	}
	for body, key := range map[string]string{
		"crawl_max_depth = 0\n":               "crawl_max_depth",
		"crawl_max_depth = 101\n":             "crawl_max_depth",
		"crawl_max_listings = -1\n":           "crawl_max_listings",
		"crawl_parallelism = 65\n":            "crawl_parallelism",
		"crawl_delay = \"2m\"\n":              "crawl_delay",
		"crawl_delay = \"soon\"\n":            "crawl_delay",
		"crawl_listing_timeout = \"0s\"\n":    "crawl_listing_timeout",
		"crawl_listing_timeout = \"later\"\n": "crawl_listing_timeout",
	} {
		if _, err := load(body); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: %v, want an error naming %s", body, err, key)
		}
	}
}
