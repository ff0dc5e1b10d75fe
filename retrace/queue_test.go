package retrace

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestConcurrentCreates: 200 creates at once against a small queue are
// each accepted or refused with 503, and every accepted one is on disk
// and finishes.
func TestConcurrentCreates(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRunningTasks, cfg.MaxQueuedTasks = 2, 6
	r := &elfRetracer{gate: make(chan struct{})}
	ts := newTestServer(t, r, cfg)
	body := crashXZ(t)

	type result struct {
		code     int
		id, pw   string
		transErr error
	}
	results := make([]result, 200)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, err := http.NewRequest(http.MethodPost, ts.url+"/create", bytes.NewReader(body))
			if err != nil {
				results[i].transErr = err
				return
			}
			req.Header.Set("Content-Type", FormatXZ)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				results[i].transErr = err
				return
			}
			resp.Body.Close()
			results[i] = result{code: resp.StatusCode, id: resp.Header.Get(HeaderTaskID), pw: resp.Header.Get(HeaderTaskPassword)}
		}()
	}
	close(start)
	wg.Wait()

	var accepted []result
	refused := 0
	for i, res := range results {
		switch {
		case res.transErr != nil:
			t.Errorf("request %d: %v", i, res.transErr)
		case res.code == http.StatusCreated:
			accepted = append(accepted, res)
		case res.code == http.StatusServiceUnavailable:
			refused++
		default:
			t.Errorf("request %d: status %d", i, res.code)
		}
	}
	t.Logf("%d accepted, %d refused", len(accepted), refused)
	if len(accepted) == 0 || len(accepted) > cfg.MaxQueuedTasks || refused == 0 {
		t.Errorf("%d accepted, %d refused with a queue of %d", len(accepted), refused, cfg.MaxQueuedTasks)
	}
	var ids []string
	for _, a := range accepted {
		ids = append(ids, a.id)
	}
	sort.Strings(ids)
	onDisk := taskDirs(t, ts.dir)
	if strings.Join(onDisk, " ") != strings.Join(ids, " ") {
		t.Errorf("on disk %v, accepted %v", onDisk, ids)
	}
	if ents, _ := os.ReadDir(ts.dir); len(ents) != len(ids) {
		t.Errorf("%d entries in the task directory for %d tasks", len(ents), len(ids))
	}
	close(r.gate)
	for _, a := range accepted {
		ts.waitStatus(t, a.id, a.pw, StatusSuccess)
	}
	if n := int(r.runs.Load()); n != len(accepted) {
		t.Errorf("%d retraces for %d tasks", n, len(accepted))
	}
}

// TestRestart: tasks running and pending when the server stops finish
// under the next server on the same directory.
func TestRestart(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tasks")
	cfg := testConfig()
	cfg.MaxRunningTasks, cfg.MaxQueuedTasks = 2, 10
	first := &elfRetracer{gate: make(chan struct{})} // never opens
	ts := startServer(t, dir, first, cfg)
	body := crashXZ(t)
	var tasks [][2]string
	for range 5 {
		id, pw := ts.create(t, FormatXZ, body)
		tasks = append(tasks, [2]string{id, pw})
	}
	waitUntil(t, "two running tasks", func() bool { return ts.Stats().Running == 2 })
	if st := ts.Stats(); st.Pending != 3 {
		t.Fatalf("stats %+v, want 3 pending", st)
	}
	ts.stop()
	// On disk, all five are pending again.
	for _, tk := range tasks {
		st, err := (task{id: tk[0], dir: filepath.Join(dir, tk[0])}).readState()
		if err != nil || st.Status != StatusPending || st.Attempts != 0 {
			t.Errorf("task %s after stop: %+v %v", tk[0], st, err)
		}
	}

	second := &elfRetracer{}
	ts2 := startServer(t, dir, second, cfg)
	for _, tk := range tasks {
		ts2.waitStatus(t, tk[0], tk[1], StatusSuccess)
		_, bt := ts2.do(t, http.MethodGet, "/"+tk[0]+"/backtrace", tk[1])
		if !strings.HasPrefix(bt, "core ET_CORE EM_X86_64\n") {
			t.Errorf("backtrace %q", bt)
		}
	}
	if n := second.runs.Load(); n != 5 {
		t.Errorf("second server ran %d retraces, want 5", n)
	}
	_, log := ts2.do(t, http.MethodGet, "/"+tasks[0][0]+"/log", tasks[0][1])
	for _, want := range []string{"retrace interrupted: the server is stopping", "retrace started (attempt 1)", "retrace finished successfully"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestRecoverAfterCrash: what a killed server leaves behind is sorted out
// by the next New: running tasks run again (up to MaxAttempts), unfinished
// uploads go.
func TestRecoverAfterCrash(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tasks")
	cfg := testConfig()
	s, err := New(dir, &elfRetracer{}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(status Status, attempts int) (string, string) {
		id, pw, _, err := s.create(bytes.NewReader(crashTar(t)), FormatTar, -1, "")
		if err != nil {
			t.Fatal(err)
		}
		tk := s.task(id)
		st, err := tk.readState()
		if err != nil {
			t.Fatal(err)
		}
		st.Status, st.Attempts = status, attempts
		if err := tk.writeState(st); err != nil {
			t.Fatal(err)
		}
		return id, pw
	}
	crashed, crashedPW := mk(statusRunning, 1)
	doomed, doomedPW := mk(statusRunning, MaxAttempts)
	pending, pendingPW := mk(StatusPending, 0)
	// An upload cut off: a task directory without task.json.
	if err := os.MkdirAll(filepath.Join(dir, "555555555", crashDirName), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "555555555", crashDirName, "coredump"), []byte("half"), 0o640); err != nil {
		t.Fatal(err)
	}
	// A delete cut off.
	if err := os.MkdirAll(filepath.Join(dir, ".deleted-444444444", crashDirName), 0o750); err != nil {
		t.Fatal(err)
	}
	// Not ours: left alone.
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("hi"), 0o640); err != nil {
		t.Fatal(err)
	}

	ts := startServer(t, dir, &elfRetracer{}, cfg)
	ts.waitStatus(t, crashed, crashedPW, StatusSuccess)
	ts.waitStatus(t, pending, pendingPW, StatusSuccess)
	ts.waitStatus(t, doomed, doomedPW, StatusFailure)
	_, log := ts.do(t, http.MethodGet, "/"+doomed+"/log", doomedPW)
	if !strings.Contains(log, "the server stopped during this task's retrace 3 times; giving up") {
		t.Errorf("doomed task's log:\n%s", log)
	}
	_, log = ts.do(t, http.MethodGet, "/"+crashed+"/log", crashedPW)
	if !strings.Contains(log, "the server stopped during the retrace; it starts again") || !strings.Contains(log, "attempt 2") {
		t.Errorf("crashed task's log:\n%s", log)
	}
	var names []string
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		names = append(names, e.Name())
	}
	want := []string{crashed, doomed, pending, "README"}
	sort.Strings(want)
	if strings.Join(names, " ") != strings.Join(want, " ") {
		t.Errorf("directory holds %v, want %v", names, want)
	}
}

// TestExpire: finished tasks go DeleteAfter after they finished, by the
// configured clock; unfinished ones stay.
func TestExpire(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := testConfig()
	cfg.DeleteAfter = 24 * time.Hour
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	r := &elfRetracer{gate: make(chan struct{})}
	ts := newTestServer(t, r, cfg)
	body := crashXZ(t)
	oldID, oldPW := ts.create(t, FormatXZ, body)
	close(r.gate)
	ts.waitStatus(t, oldID, oldPW, StatusSuccess)
	advance(23 * time.Hour)
	newID, newPW := ts.create(t, FormatXZ, body)
	ts.waitStatus(t, newID, newPW, StatusSuccess)

	if n, err := ts.Expire(); n != 0 || err != nil {
		t.Fatalf("expire before a day: %d %v", n, err)
	}
	advance(2 * time.Hour)
	if n, err := ts.Expire(); n != 1 || err != nil {
		t.Fatalf("expire after a day: %d %v", n, err)
	}
	if resp, _ := ts.do(t, http.MethodGet, "/"+oldID, oldPW); resp.StatusCode != http.StatusNotFound {
		t.Errorf("expired task: %d", resp.StatusCode)
	}
	if resp, _ := ts.do(t, http.MethodGet, "/"+newID, newPW); resp.StatusCode != http.StatusOK {
		t.Errorf("young task: %d", resp.StatusCode)
	}
	b, err := os.ReadFile(filepath.Join(ts.dir, newID, stateFile))
	if err != nil {
		t.Fatal(err)
	}
	var st State
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 1, 2, 11, 0, 0, 0, time.UTC); !st.Created.Equal(want) || !st.Finished.Equal(want) {
		t.Errorf("timestamps %+v, want %s", st, want)
	}
}

// TestRunStopsWithContext: Run returns when its context ends, with
// workers idle or busy.
func TestRunStopsWithContext(t *testing.T) {
	s, err := New(t.TempDir(), hangRetracer{}, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.create(bytes.NewReader(crashTar(t)), FormatTar, -1, ""); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	waitUntil(t, "a running task", func() bool { return s.Stats().Running == 1 })
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return")
	}
}

// TestExpireFailedSooner: a failed task goes after DeleteFailedAfter, a
// successful one of the same age stays until DeleteAfter.
func TestExpireFailedSooner(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := testConfig()
	cfg.DeleteAfter = 7 * 24 * time.Hour
	cfg.DeleteFailedAfter = 24 * time.Hour
	cfg.TaskTimeout = 200 * time.Millisecond
	cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	ts := newTestServer(t, hangRetracer{}, cfg)
	id, pw := ts.create(t, FormatXZ, crashXZ(t))
	ts.waitStatus(t, id, pw, StatusFailure)
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	if n, err := ts.Expire(); n != 1 || err != nil {
		t.Fatalf("expire a day-old failure: %d %v", n, err)
	}
	if resp, _ := ts.do(t, http.MethodGet, "/"+id, pw); resp.StatusCode != http.StatusNotFound {
		t.Errorf("expired failed task: %d", resp.StatusCode)
	}
}

// TestTasksOwner: with no server running (retraced gc on its own), a
// task directory plans failed tasks after a day and the rest after a
// week, as a server does, and deletes what it planned.
func TestTasksOwner(t *testing.T) {
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := testConfig()
	cfg.Now = func() time.Time { return now }
	r := &elfRetracer{gate: make(chan struct{})}
	close(r.gate)
	ts := newTestServer(t, r, cfg)
	okID, okPW := ts.create(t, FormatXZ, crashXZ(t))
	ts.waitStatus(t, okID, okPW, StatusSuccess)
	// A failed task finished at the same time: a copy of the successful
	// one with its status changed.
	failID := okID + "1"
	if out, err := exec.Command("cp", "-a", filepath.Join(ts.dir, okID), filepath.Join(ts.dir, failID)).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	tk := task{id: failID, dir: filepath.Join(ts.dir, failID)}
	st, err := tk.readState()
	if err != nil {
		t.Fatal(err)
	}
	st.Status = StatusFailure
	if err := tk.writeState(st); err != nil {
		t.Fatal(err)
	}

	owner := &Tasks{Dir: ts.dir}
	names := func(at time.Time) []string {
		t.Helper()
		items, err := owner.Plan(context.Background(), at)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range items {
			if it.Kind != KindTask || it.Bytes <= 0 {
				t.Fatalf("item %+v: want a task with its size", it)
			}
			out = append(out, it.Name)
		}
		return out
	}
	if got := names(now.Add(23 * time.Hour)); len(got) != 0 {
		t.Fatalf("after 23 hours: %v, want nothing", got)
	}
	got := names(now.Add(25 * time.Hour))
	if len(got) != 1 || got[0] != failID {
		t.Fatalf("after 25 hours: %v, want the failed task %s", got, failID)
	}
	items, _ := owner.Plan(context.Background(), now.Add(25*time.Hour))
	if err := owner.Delete(context.Background(), items); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, failID)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("failed task still there: %v", err)
	}
	if got := names(now.Add(8 * 24 * time.Hour)); len(got) != 1 || got[0] != okID {
		t.Fatalf("after 8 days: %v, want %s", got, okID)
	}
}

// TestRecent: Recent lists the running task, the pending ones in queue
// order with their places, then the finished ones newest first, with
// their times and never a password; a deleted task leaves the list, and
// the finished ones are still listed by the next server.
func TestRecent(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	cfg := testConfig()
	cfg.MaxRunningTasks, cfg.MaxQueuedTasks = 1, 5
	cfg.Now = func() time.Time { // a second later at each reading
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Second)
		return now
	}
	hold := make(chan struct{})
	r := retracerFunc(func(ctx context.Context, dir string, log io.Writer) (string, error) {
		pkg, _ := os.ReadFile(filepath.Join(dir, "package"))
		switch string(pkg) {
		case "fail":
			return "", errors.New("it fails")
		case "hold":
			select {
			case <-hold:
			case <-ctx.Done():
				return "", ctx.Err()
			}
		}
		return "#0 main ()\n", nil
	})
	dir := filepath.Join(t.TempDir(), "tasks")
	ts := startServer(t, dir, r, cfg)
	create := func(pkg string) (string, string) {
		return ts.create(t, FormatTar, tarBytes(t, tarMember{name: "coredump", body: []byte("core")}, tarMember{name: "package", body: []byte(pkg)}))
	}
	okID, okPW := create("ok")
	ts.waitStatus(t, okID, okPW, StatusSuccess)
	failID, failPW := create("fail")
	ts.waitStatus(t, failID, failPW, StatusFailure)
	runID, runPW := create("hold")
	waitUntil(t, "a running task", func() bool { return ts.Stats().Running == 1 })
	p1, p1PW := create("hold")
	p2, p2PW := create("hold")

	type row struct {
		id     string
		status Status
		step   string
	}
	check := func(got []TaskInfo, want []row) {
		t.Helper()
		var g, w []string
		for _, ti := range got {
			g = append(g, fmt.Sprintf("%s %s %q", ti.ID, ti.Status, ti.Step))
		}
		for _, r := range want {
			w = append(w, fmt.Sprintf("%s %s %q", r.id, r.status, r.step))
		}
		if strings.Join(g, "\n") != strings.Join(w, "\n") {
			t.Errorf("Recent:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
	}
	got := ts.Recent(10)
	check(got, []row{
		{runID, StatusRunning, stepRetracing},
		{p1, StatusPending, stepQueued},
		{p2, StatusPending, "Waiting in the queue, 1 task(s) ahead"},
		{failID, StatusFailure, stepFailure},
		{okID, StatusSuccess, stepSuccess},
	})
	for _, ti := range got {
		switch {
		case ti.Created.IsZero():
			t.Errorf("task %s: no creation time", ti.ID)
		case ti.Status.Finished() && (ti.Finished.Before(ti.Started) || ti.Started.Before(ti.Created)):
			t.Errorf("finished task %s: times %+v", ti.ID, ti)
		case ti.Status == StatusRunning && (ti.Started.IsZero() || !ti.Finished.IsZero()):
			t.Errorf("running task %s: times %+v", ti.ID, ti)
		case ti.Status == StatusPending && (!ti.Started.IsZero() || !ti.Finished.IsZero()):
			t.Errorf("pending task %s: times %+v", ti.ID, ti)
		}
	}
	dump := fmt.Sprintf("%+v", got)
	for _, pw := range []string{okPW, failPW, runPW, p1PW, p2PW} {
		if strings.Contains(dump, pw) {
			t.Fatalf("Recent shows a password: %s", dump)
		}
	}
	// n bounds the finished tasks only.
	if got := ts.Recent(1); len(got) != 4 || got[3].ID != failID {
		t.Errorf("Recent(1) = %+v, want the 3 unfinished and the last finished", got)
	}

	if resp, _ := ts.do(t, http.MethodDelete, "/"+failID, failPW); resp.StatusCode != http.StatusOK {
		t.Fatalf("delete: %d", resp.StatusCode)
	}
	for _, ti := range ts.Recent(10) {
		if ti.ID == failID {
			t.Errorf("the deleted task %s is still listed", failID)
		}
	}

	ts.stop()
	next, err := New(dir, r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	check(next.Recent(10), []row{
		{runID, StatusPending, stepQueued},
		{p1, StatusPending, "Waiting in the queue, 1 task(s) ahead"},
		{p2, StatusPending, "Waiting in the queue, 2 task(s) ahead"},
		{okID, StatusSuccess, stepSuccess},
	})
	close(hold)
}

// TestCreateKeyed: a create with X-Task-Key makes a task whose password
// is the key; the same create again (a client that could not tell its
// upload arrived) answers with that task, body unread, also after a
// restart of the server; another key makes another task; a malformed key
// is 400.
func TestCreateKeyed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tasks")
	ts := startServer(t, dir, &elfRetracer{}, testConfig())
	body := crashXZ(t)
	post := func(ts *testServer, key string, body io.Reader) (*http.Response, string) {
		req, err := http.NewRequest(http.MethodPost, ts.url+"/create", body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", FormatXZ)
		req.Header.Set(HeaderTaskKey, key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp, readBody(t, resp)
	}
	key := strings.Repeat("aZ09", 8)
	resp, msg := post(ts, key, bytes.NewReader(body))
	id := resp.Header.Get(HeaderTaskID)
	if resp.StatusCode != http.StatusCreated || id == "" || resp.Header.Get(HeaderTaskPassword) != key {
		t.Fatalf("keyed create: %d %s, id %q, password %q", resp.StatusCode, msg, id, resp.Header.Get(HeaderTaskPassword))
	}
	// Again: the same task; the body is not even read (garbage would
	// otherwise be 400).
	resp, msg = post(ts, key, strings.NewReader("not an archive"))
	if resp.StatusCode != http.StatusCreated || resp.Header.Get(HeaderTaskID) != id {
		t.Fatalf("repeated keyed create: %d %s, id %q, want %s", resp.StatusCode, msg, resp.Header.Get(HeaderTaskID), id)
	}
	ts.waitStatus(t, id, key, StatusSuccess)
	other := strings.Repeat("b", 32)
	if resp, _ := post(ts, other, bytes.NewReader(body)); resp.Header.Get(HeaderTaskID) == id || resp.StatusCode != http.StatusCreated {
		t.Fatalf("another key: %d, id %q", resp.StatusCode, resp.Header.Get(HeaderTaskID))
	}
	if resp, msg := post(ts, "short", bytes.NewReader(body)); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("malformed key: %d %s", resp.StatusCode, msg)
	}
	ts.stop()
	ts = startServer(t, dir, &elfRetracer{}, testConfig())
	if resp, msg := post(ts, key, strings.NewReader("not an archive")); resp.Header.Get(HeaderTaskID) != id {
		t.Fatalf("keyed create after a restart: %d %s, id %q, want %s", resp.StatusCode, msg, resp.Header.Get(HeaderTaskID), id)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		if validID(e.Name()) {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d tasks on disk, want 2", n)
	}
}
