package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
)

// Operations tests: `retraced serve` run as a user runs it (the CLI with
// --data, --config and --listen, in-process), driven over HTTP on
// loopback only.

// served is one `retraced serve` started by serveCLI.
type served struct {
	t      *testing.T
	data   string
	url    string
	cancel context.CancelFunc
	done   chan struct{}
	err    error
	once   sync.Once
}

// serveCLI runs `retraced --data DATA ARGS... serve --listen 127.0.0.1:0`
// in-process and returns once it answers /healthz at the address it wrote
// to DATA/server.json. It does not wait for a sync. The server stops at
// the end of the test, or earlier with stop.
func serveCLI(t *testing.T, data string, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{t: t, data: data, cancel: cancel, done: make(chan struct{})}
	root := newRoot()
	root.SetArgs(append(append([]string{"--data", data}, args...), "serve", "--listen", "127.0.0.1:0"))
	root.SetOut(io.Discard)
	root.SetErr(io.Discard)
	go func() {
		s.err = root.ExecuteContext(ctx)
		close(s.done)
	}()
	t.Cleanup(s.stop)
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		var info serverInfo
		if b, err := os.ReadFile(filepath.Join(data, serverFile)); err == nil && json.Unmarshal(b, &info) == nil {
			if resp, err := http.Get(info.URL + "/healthz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					s.url = info.URL
					return s
				}
			}
		}
		select {
		case <-s.done:
			t.Fatalf("serve exited before answering /healthz: %v", s.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Fatal("serve did not answer /healthz within 30s")
	return nil
}

// stop cancels serve's context (as SIGTERM does), waits for it to return,
// and checks that it let go of the data directory: no error, server.json
// removed, the lock free for the next process.
func (s *served) stop() {
	s.once.Do(func() {
		s.cancel()
		select {
		case <-s.done:
		case <-time.After(60 * time.Second):
			s.t.Errorf("serve did not stop within 60s of its context ending")
			return
		}
		if s.err != nil {
			s.t.Errorf("serve returned: %v", s.err)
		}
		if _, err := os.Stat(filepath.Join(s.data, serverFile)); !errors.Is(err, fs.ErrNotExist) {
			s.t.Errorf("serve stopped but left %s behind (stat: %v)", serverFile, err)
		}
		f, err := lockDir(s.data)
		if err != nil {
			s.t.Errorf("serve stopped but the data directory is still locked: %v", err)
			return
		}
		f.Close()
	})
}

// writeConfig writes a TOML config file (fsync off, as testConfig has it,
// plus extra) and returns its path.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "retraced.toml")
	if err := os.WriteFile(path, []byte(extra+"\n[mirror]\nfsync = false\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// mirrorView returns source name as GET /api/v1/mirrors lists it, or nil.
func mirrorView(t *testing.T, url, name string) map[string]any {
	t.Helper()
	var views []map[string]any
	if code := getJSON(t, url+"/api/v1/mirrors", &views); code != http.StatusOK {
		t.Fatalf("GET /api/v1/mirrors: %d", code)
	}
	for _, v := range views {
		if v["name"] == name {
			return v
		}
	}
	return nil
}

// pollUntil polls cond every 50ms until it holds, failing the test with what
// after the guard (a guard against hanging, not a performance bound).
func pollUntil(t *testing.T, guard time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(guard); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within %s", what, guard)
}

// waitSynced waits until source name has completed a sync and returns its
// view.
func waitSynced(t *testing.T, url, name string) map[string]any {
	t.Helper()
	var v map[string]any
	pollUntil(t, 60*time.Second, "source "+name+" synced", func() bool {
		v = mirrorView(t, url, name)
		return v != nil && v["last_sync"] != nil
	})
	return v
}

// httpDo sends one request and returns the status code and body.
func httpDo(t *testing.T, method, url string, header map[string]string, body io.Reader) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// crashTarball packs a flat crash directory: the core file's bytes as
// coredump, plus files.
func crashTarball(t *testing.T, core string, files map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("coredump", b)
	for name, data := range files {
		add(name, []byte(data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// retraceTask is a task created over the protocol.
type retraceTask struct{ url, id, pw string }

func createTask(t *testing.T, url string, tarball []byte) retraceTask {
	t.Helper()
	code, h, body := httpDo(t, http.MethodPost, url+"/create", map[string]string{"Content-Type": "application/x-tar"}, bytes.NewReader(tarball))
	id, pw := h.Get("X-Task-Id"), h.Get("X-Task-Password")
	if code != http.StatusCreated || id == "" || len(pw) != 32 {
		t.Fatalf("POST /create: %d, id %q, password of %d chars: %s", code, id, len(pw), body)
	}
	return retraceTask{url, id, pw}
}

// get fetches /ID+path with the task's password: code, X-Task-Status, body.
func (rt retraceTask) get(t *testing.T, path string) (int, string, string) {
	t.Helper()
	code, h, body := httpDo(t, http.MethodGet, rt.url+"/"+rt.id+path, map[string]string{"X-Task-Password": rt.pw}, nil)
	return code, h.Get("X-Task-Status"), body
}

// wait polls the task's status until it is no longer PENDING.
func (rt retraceTask) wait(t *testing.T, guard time.Duration) string {
	t.Helper()
	status := ""
	pollUntil(t, guard, "task "+rt.id+" finished", func() bool {
		code, st, body := rt.get(t, "")
		if code != http.StatusOK {
			t.Fatalf("GET /%s: %d %s", rt.id, code, body)
		}
		status = st
		return status != "PENDING"
	})
	return status
}

// finish waits for the task (60 s at most) and returns its status, the
// status body (the step), its log and its backtrace.
func (rt retraceTask) finish(t *testing.T) (status, step, logText, bt string) {
	t.Helper()
	status = rt.wait(t, 60*time.Second)
	_, _, step = rt.get(t, "")
	_, _, logText = rt.get(t, "/log")
	_, _, bt = rt.get(t, "/backtrace")
	return status, step, logText, bt
}

// TestSyncAnswers409WhileSyncing: POST /api/v1/mirrors/{name}/sync starts
// a sync (202); asked again while that sync runs it answers 409 and starts
// nothing; the running sync finishes with the new packages once its
// downloads go through, and the source can be synced again.
func TestSyncAnswers409WhileSyncing(t *testing.T) {
	// The upstream: the fixture server behind a gate that, once armed,
	// holds every package download until the test releases it.
	repo := fixtures.NewServer(fixtures.FS("repo-v1"))
	var armed atomic.Bool
	held := make(chan string, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	open := func() { releaseOnce.Do(func() { close(release) }) }
	gate := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if armed.Load() && strings.HasSuffix(r.URL.Path, ".rpm") {
			select {
			case held <- r.URL.Path:
			default:
			}
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		repo.ServeHTTP(w, r)
	}))
	t.Cleanup(gate.Close)
	t.Cleanup(open)

	data := t.TempDir()
	conf := writeConfig(t, `admin_token = "s3cret"`)
	if _, _, err := run(t, "--data", data, "--config", conf, "mirror", "add", "up", gate.URL, "--kind", "yum"); err != nil {
		t.Fatal(err)
	}
	s := serveCLI(t, data, "--config", conf)
	if v := waitSynced(t, s.url, "up"); v["versions"] != float64(9) {
		t.Fatalf("first sync of repo-v1: %v, want 9 versions", v)
	}

	repo.SetRoot(fixtures.FS("repo")) // 9 new versions upstream
	armed.Store(true)
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	syncURL := s.url + "/api/v1/mirrors/up/sync"
	if code, _, body := httpDo(t, http.MethodPost, syncURL, auth, nil); code != http.StatusAccepted {
		t.Fatalf("first POST sync: %d %s, want 202", code, body)
	}
	select {
	case p := <-held:
		t.Logf("sync is downloading %s, held", p)
	case <-time.After(30 * time.Second):
		t.Fatal("the sync never asked for a package")
	}
	code, _, body := httpDo(t, http.MethodPost, syncURL, auth, nil)
	if code != http.StatusConflict || !strings.Contains(body, `"error"`) || !strings.Contains(body, "already syncing") {
		t.Fatalf("POST sync while one runs: %d %s, want 409 with a JSON error saying it is syncing", code, body)
	}
	if code, _, body := httpDo(t, http.MethodPost, syncURL+"?wait=true", auth, nil); code != http.StatusConflict {
		t.Fatalf("POST sync?wait=true while one runs: %d %s, want 409", code, body)
	}
	// The status page shows the running sync.
	pollUntil(t, 30*time.Second, "status page shows the sync", func() bool {
		_, _, page := httpDo(t, http.MethodGet, s.url+"/", nil, nil)
		return strings.Contains(page, "Syncing:")
	})
	if v := mirrorView(t, s.url, "up"); v["versions"] != float64(9) {
		t.Fatalf("versions while the downloads are held: %v, want still 9", v["versions"])
	}

	open()
	var v map[string]any
	pollUntil(t, 60*time.Second, "held sync finished with repo's 18 versions", func() bool {
		v = mirrorView(t, s.url, "up")
		return v["versions"] == float64(18)
	})
	pollUntil(t, 60*time.Second, "a new sync accepted after the held one finished", func() bool {
		code, _, body := httpDo(t, http.MethodPost, syncURL, auth, nil)
		switch code {
		case http.StatusAccepted:
			return true
		case http.StatusConflict:
			return false
		}
		t.Fatalf("POST sync after the held one: %d %s", code, body)
		return false
	})
}

// TestScheduledGC: with gc_schedule = "@every 1s", serve collects on its
// own: the packages of a source removed over the API disappear from the
// index with no one calling /api/v1/gc or `retraced gc`, and gc.json and
// the status page record a collection made after the removal.
func TestScheduledGC(t *testing.T) {
	data := t.TempDir()
	s := serveCLI(t, data, "--config", writeConfig(t, `gc_schedule = "@every 1s"`))
	waitSynced(t, s.url, "fixtures")
	var ids []string
	seen := map[string]bool{}
	for _, e := range fixtures.ELFFiles(t) {
		if !seen[e.BuildID] {
			seen[e.BuildID] = true
			ids = append(ids, e.BuildID)
		}
	}
	if code := getJSON(t, s.url+"/api/v1/buildid/"+ids[0], nil); code != http.StatusOK {
		t.Fatalf("GET buildid/%s before the removal: %d", ids[0], code)
	}

	removed := time.Now()
	if code, _, body := httpDo(t, http.MethodDelete, s.url+"/api/v1/mirrors/fixtures", nil, nil); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/v1/mirrors/fixtures: %d %s", code, body)
	}
	// SPEC: a removed source's packages stay until gc.
	if code := getJSON(t, s.url+"/api/v1/buildid/"+ids[0], nil); code != http.StatusOK {
		t.Fatalf("GET buildid/%s right after the removal: %d, want 200 until gc runs", ids[0], code)
	}
	pollUntil(t, 30*time.Second, "the scheduled gc collected the removed source's packages", func() bool {
		return getJSON(t, s.url+"/api/v1/buildid/"+ids[0], nil) == http.StatusNotFound
	})
	batch, _ := json.Marshal(map[string][]string{"build_ids": ids})
	code, _, body := httpDo(t, http.MethodPost, s.url+"/api/v1/buildids", map[string]string{"Content-Type": "application/json"}, bytes.NewReader(batch))
	var got struct {
		Results    map[string][]any `json:"results"`
		Unresolved []string         `json:"unresolved"`
	}
	if err := json.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil || len(got.Unresolved) != len(ids) {
		t.Fatalf("POST buildids after gc: %d %v, %d of %d unresolved: %s", code, err, len(got.Unresolved), len(ids), body)
	}

	b, err := os.ReadFile(filepath.Join(data, gcFile))
	if err != nil {
		t.Fatalf("no record of the scheduled collection: %v", err)
	}
	var rep gcReport
	if err := json.Unmarshal(b, &rep); err != nil || rep.When.Before(removed) || rep.DryRun || rep.Error != "" {
		t.Fatalf("%s: %v %+v, want a collection after %s", gcFile, err, rep, removed)
	}
	_, _, page := httpDo(t, http.MethodGet, s.url+"/", nil, nil)
	if !strings.Contains(page, "Last run ") {
		t.Fatal("the status page does not show the last collection")
	}
}

// TestRestartFinishesTasks: serve stopped (as by SIGTERM) with retrace
// tasks running and pending leaves them pending on disk; a new serve on
// the same data directory retraces every one of them to FINISHED_SUCCESS
// with a backtrace, and their passwords still open them.
func TestRestartFinishesTasks(t *testing.T) {
	fixtures.Tool(t, "gdb")
	data := t.TempDir()
	conf := writeConfig(t, "")
	first := serveCLI(t, data, "--config", conf)
	waitSynced(t, first.url, "fixtures")
	tarball := crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"),
		map[string]string{"executable": "/usr/bin/crashme", "package": "crashme-1.0-1"})
	var tasks []retraceTask
	for range 6 {
		tasks = append(tasks, createTask(t, first.url, tarball))
	}
	pollUntil(t, 30*time.Second, "a task running", func() bool {
		_, _, settings := httpDo(t, http.MethodGet, first.url+"/settings", nil, nil)
		return strings.Contains(settings, "running_tasks ") && !strings.Contains(settings, "running_tasks 0\n")
	})
	first.stop()

	// What the stopped server left: task.json of each task (retrace/doc.go).
	unfinished := 0
	for _, rt := range tasks {
		b, err := os.ReadFile(filepath.Join(data, "tasks", rt.id, "task.json"))
		if err != nil {
			t.Fatalf("task %s after the stop: %v", rt.id, err)
		}
		var st struct{ Status string }
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatalf("task %s: task.json: %v", rt.id, err)
		}
		switch st.Status {
		case "PENDING":
			unfinished++
		case "FINISHED_SUCCESS":
		default:
			t.Errorf("task %s after a clean stop: status %q, want PENDING or FINISHED_SUCCESS", rt.id, st.Status)
		}
	}
	if unfinished == 0 {
		t.Fatal("every task finished before serve stopped: the restart has nothing to do (the test needs unfinished tasks)")
	}
	t.Logf("%d of %d tasks unfinished at the stop", unfinished, len(tasks))

	second := serveCLI(t, data, "--config", conf)
	interrupted := 0
	for _, rt := range tasks {
		rt.url = second.url
		status := rt.wait(t, 120*time.Second)
		_, _, logText := rt.get(t, "/log")
		if status != "FINISHED_SUCCESS" {
			t.Fatalf("task %s after the restart: %s\n%s", rt.id, status, logText)
		}
		if strings.Contains(logText, "interrupted") {
			interrupted++
		}
		code, _, bt := rt.get(t, "/backtrace")
		if code != http.StatusOK || !strings.Contains(bt, "crashme_dispatch") || !strings.Contains(bt, "libcrashme.c:") {
			t.Fatalf("task %s backtrace: %d\n%s", rt.id, code, bt)
		}
	}
	// A task was running at the stop and none had finished: its log says
	// the retrace was cut off and started again.
	if unfinished == len(tasks) && interrupted == 0 {
		t.Error("no task's log says its retrace was interrupted by the stop")
	}
	second.stop()
}

// orphanCore compiles a program no mirror ships, runs it under gdb until
// it aborts, and saves its core with generate-core-file (no
// kernel.core_pattern involved). It returns the core, the program's path
// and its build-id as eu-readelf reads it.
func orphanCore(t *testing.T) (core, exe, buildID string) {
	t.Helper()
	fixtures.RequireTools(t, "gcc", "gdb", "eu-readelf")
	dir := t.TempDir()
	src := filepath.Join(dir, "orphan.c")
	if err := os.WriteFile(src, []byte("#include <stdlib.h>\nint main(void) { abort(); }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	exe, core = filepath.Join(dir, "orphan"), filepath.Join(dir, "core")
	fixtures.Run(t, dir, "gcc", "-g", "-Wl,--build-id", "-o", exe, src)
	out := fixtures.Run(t, dir, "gdb", "-batch", "-nx", "-ex", "run", "-ex", "generate-core-file "+core, exe)
	if fi, err := os.Stat(core); err != nil || fi.Size() == 0 {
		t.Fatalf("gdb generate-core-file left no core: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`Build ID: ([0-9a-f]+)`).FindStringSubmatch(fixtures.Run(t, dir, "eu-readelf", "-n", exe))
	if m == nil {
		t.Fatal("eu-readelf -n: the program has no build-id note")
	}
	return core, exe, m[1]
}

// TestUnknownProgramFails: a core of a program the mirror does not have
// ends FINISHED_FAILURE (not stuck PENDING, not a 5xx); the log names the
// program and its build-id, and there is no backtrace.
func TestUnknownProgramFails(t *testing.T) {
	core, exe, buildID := orphanCore(t)
	s := serveCLI(t, t.TempDir(), "--config", writeConfig(t, ""))
	waitSynced(t, s.url, "fixtures")
	rt := createTask(t, s.url, crashTarball(t, core, map[string]string{"executable": exe}))
	start := time.Now()
	status := rt.wait(t, 120*time.Second)
	t.Logf("create -> %s: %v", status, time.Since(start))
	code, _, logText := rt.get(t, "/log")
	if status != "FINISHED_FAILURE" || code != http.StatusOK {
		t.Fatalf("task of an unknown program: %s, log %d:\n%s", status, code, logText)
	}
	for _, want := range []string{buildID, exe, "not in the mirror"} {
		if !strings.Contains(logText, want) {
			t.Errorf("the log does not say %q:\n%s", want, logText)
		}
	}
	if code, _, body := rt.get(t, "/backtrace"); code != http.StatusNotFound {
		t.Errorf("GET backtrace of a failed task: %d %q, want 404", code, body)
	}
}

// TestDiskLowRefusesWork: with min_free = 100 (%), no disk has enough
// free space: POST /create answers 507 (SPEC) and creates no task, a sync
// asked for over the API does not run and says it is paused, nothing is
// ingested, and the status page shows the disk-low banner.
func TestDiskLowRefusesWork(t *testing.T) {
	data := t.TempDir()
	s := serveCLI(t, data, "--config", writeConfig(t, "min_free = 100"))

	tarball := crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"),
		map[string]string{"executable": "/usr/bin/crashme", "package": "crashme-1.0-1"})
	code, h, body := httpDo(t, http.MethodPost, s.url+"/create", map[string]string{"Content-Type": "application/x-tar"}, bytes.NewReader(tarball))
	if code != http.StatusInsufficientStorage || h.Get("X-Task-Id") != "" || strings.TrimSpace(body) == "" {
		t.Fatalf("POST /create with the disk low: %d, X-Task-Id %q, body %q; want 507 with a message and no task", code, h.Get("X-Task-Id"), body)
	}
	if ents, err := os.ReadDir(filepath.Join(data, "tasks")); err != nil || len(ents) != 0 {
		t.Fatalf("tasks/ after a refused create: %d entries, %v", len(ents), err)
	}

	// serve's own start-up sync was paused too; once it is out of the
	// way, a sync asked for and waited on reports the pause.
	var res struct {
		OK      bool   `json:"ok"`
		Summary string `json:"summary"`
	}
	pollUntil(t, 30*time.Second, "POST sync?wait=true answered", func() bool {
		code, _, body := httpDo(t, http.MethodPost, s.url+"/api/v1/mirrors/fixtures/sync?wait=true", nil, nil)
		if code == http.StatusConflict {
			return false // the start-up sync is still being turned away
		}
		if code != http.StatusOK || json.Unmarshal([]byte(body), &res) != nil {
			t.Fatalf("POST sync?wait=true with the disk low: %d %s", code, body)
		}
		return true
	})
	if res.OK || !strings.Contains(res.Summary, "paused") || !strings.Contains(res.Summary, "100%") {
		t.Fatalf("sync with the disk low: %+v, want not ok, paused below the 100%% minimum", res)
	}
	if v := mirrorView(t, s.url, "fixtures"); v == nil || v["versions"] != float64(0) {
		t.Fatalf("source after paused syncs: %v, want 0 versions", v)
	}
	if code := getJSON(t, s.url+"/api/v1/buildid/"+fixtures.ELFFiles(t)[0].BuildID, nil); code != http.StatusNotFound {
		t.Fatalf("GET buildid after paused syncs: %d, want 404 (nothing ingested)", code)
	}
	_, _, page := httpDo(t, http.MethodGet, s.url+"/", nil, nil)
	if !strings.Contains(page, `id="disk-low"`) {
		t.Fatal("the status page does not show the disk-low banner")
	}
}
