package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retraced/retraced/retrace/taskclient"
)

// TestHelperProcess is retrace-client run as a subprocess of the test
// binary (so that a test can kill -9 it): the arguments follow "--".
func TestHelperProcess(t *testing.T) {
	if os.Getenv("RETRACE_CLIENT_HELPER") != "1" {
		t.Skip("a helper for the other tests")
	}
	args := os.Args[slices.Index(os.Args, "--")+1:]
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	root := newRoot()
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "retrace-client:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// syncBuffer collects a subprocess's stderr across restarts.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// helper returns retrace-client args as a subprocess.
func helper(args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperProcess$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "RETRACE_CLIENT_HELPER=1")
	return cmd
}

// startWatch runs `retrace-client watch` as a subprocess, its stderr into
// logs; it is killed at the test's end.
func startWatch(t *testing.T, spool, serverURL, config string, logs io.Writer) *exec.Cmd {
	t.Helper()
	cmd := helper("watch", "--spool", spool, "--url", serverURL, "--config", config)
	cmd.Stderr = logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
}

// writeConfig writes a watch config with short retry delays (the
// default settle), and extra.
func writeConfig(t *testing.T, extra string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "watch.toml")
	cfg := extra + "\n[submit]\nattempts = 4\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\n"
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// front is a proxy before a retrace server that counts the uploads by
// their content and answers the first ones with the given failures: a
// status code, or 0 for a connection closed without an answer.
type front struct {
	*httptest.Server
	mu       sync.Mutex
	creates  map[[32]byte]int
	tasks    map[string]int // task id -> creates answered with it
	failures []int
	refused  int
}

func newFront(t *testing.T, backend string, failures ...int) *front {
	t.Helper()
	target, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &front{creates: map[[32]byte]int{}, failures: failures, tasks: map[string]int{}}
	proxy.ModifyResponse = func(resp *http.Response) error {
		if resp.Request.URL.Path == "/create" && resp.StatusCode == http.StatusCreated {
			f.mu.Lock()
			f.tasks[resp.Header.Get("X-Task-Id")]++
			f.mu.Unlock()
		}
		return nil
	}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/create" {
			body, err := io.ReadAll(r.Body)
			if err != nil {
				return
			}
			f.mu.Lock()
			fail := -1
			if len(f.failures) > 0 {
				fail, f.failures = f.failures[0], f.failures[1:]
				f.refused++
			} else {
				f.creates[sha256.Sum256(body)]++
			}
			f.mu.Unlock()
			switch fail {
			case -1:
			case 0:
				conn, _, err := w.(http.Hijacker).Hijack()
				if err == nil {
					conn.Close()
				}
				return
			default:
				http.Error(w, "busy", fail)
				return
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
			r.ContentLength = int64(len(body))
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

// counts returns the uploads that reached the server and how many of
// them were the same archive again.
func (f *front) counts() (total, dup int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.creates {
		total += n
		dup += n - 1
	}
	return total, dup
}

func (f *front) setFailures(failures ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures = failures
}

// writeSlowly writes data to path in chunks, as the kernel writes a core.
func writeSlowly(t *testing.T, path string, data []byte, chunk int, pause time.Duration) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Error(err)
		return
	}
	for off := 0; off < len(data); off += chunk {
		if _, err := f.Write(data[off:min(off+chunk, len(data))]); err != nil {
			t.Error(err)
			break
		}
		time.Sleep(pause)
	}
	if err := f.Close(); err != nil {
		t.Error(err)
	}
}

// waitItems waits until the spool holds n items in final states, and
// returns them.
func waitItems(t *testing.T, spool string, n int, timeout time.Duration, logs fmt.Stringer) []*item {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		items, _ := loadItems(spool)
		done := 0
		for _, it := range items {
			if terminal(it.State) {
				done++
			}
		}
		if done >= n {
			return items
		}
		if time.Now().After(deadline) {
			for _, it := range items {
				t.Logf("%s %s %s", it.ID, it.State, it.Reason)
			}
			t.Fatalf("%d of %d items final after %s; log:\n%s", done, n, timeout, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWatchSurvivesKill: cores written slowly into the spool while watch
// is killed (SIGKILL) at random points and restarted: every core ends
// finished with its backtrace, none is lost, and the server made one task
// for each: an upload repeated after a kill during it (the watcher says so
// on restart) carries the item's X-Task-Key, and the server answers with
// the task the first one made.
func TestWatchSurvivesKill(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	fr := newFront(t, hs.URL)
	corePath, info := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	spool, config := t.TempDir(), writeConfig(t, "")
	logs := &syncBuffer{}
	const cores = 6
	writer := make(chan struct{})
	go func() {
		defer close(writer)
		for i := range cores {
			name := fmt.Sprintf("core_crashme_%d_%d", 1000+i, 1700000000+i)
			// Each core a little longer, so that the server side tells
			// their uploads apart.
			writeSlowly(t, filepath.Join(spool, name), append(slices.Clip(core), make([]byte, 512*(i+1))...), 16<<10, 3*time.Millisecond)
			time.Sleep(time.Duration(rand.IntN(100)) * time.Millisecond)
		}
	}()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	seed := time.Now().UnixNano()
	t.Logf("kill times from seed %d", seed)
	for range 10 {
		cmd := startWatch(t, spool, fr.URL, config, logs)
		time.Sleep(time.Duration(20+rng.IntN(300)) * time.Millisecond)
		kill(t, cmd)
	}
	<-writer
	startWatch(t, spool, fr.URL, config, logs)
	items := waitItems(t, spool, cores, 60*time.Second, logs)
	if len(items) != cores {
		t.Fatalf("%d items, want %d", len(items), cores)
	}
	for _, it := range items {
		if it.State != stateFinished {
			t.Errorf("%s: %s (%s)", it.ID, it.State, it.Reason)
			continue
		}
		bt, err := os.ReadFile(filepath.Join(itemDir(spool, it.ID), "backtrace"))
		if err != nil || !strings.Contains(string(bt), "core ET_CORE EM_X86_64\nexecutable "+info.Executable+"\n") {
			t.Errorf("%s: backtrace %q %v", it.ID, bt, err)
		}
		if it.Executable != info.Executable || it.Size <= int64(len(core)) || it.TaskID == "" {
			t.Errorf("%s: %+v", it.ID, it)
		}
	}
	total, dup := fr.counts()
	resubmitted := strings.Count(logs.String(), "stopped while submitting")
	fr.mu.Lock()
	tasks := len(fr.tasks)
	fr.mu.Unlock()
	t.Logf("%d uploads for %d cores, %d the same archive again (%d restarts during an upload); %d tasks on the server", total, cores, dup, resubmitted, tasks)
	if total-dup != cores || dup > resubmitted {
		t.Errorf("%d uploads, %d repeated, %d restarts during an upload: want %d distinct, repeats only from those restarts\n%s",
			total, dup, resubmitted, cores, logs)
	}
	// A repeated upload carries the item's task key: the server answers
	// with the task the first one made. One task per core, never two.
	if tasks != cores {
		t.Errorf("the server made %d tasks for %d cores\n%s", tasks, cores, logs)
	}
	for _, it := range items {
		if fr.tasks[it.TaskID] == 0 {
			t.Errorf("%s: task %s is not one the server made", it.ID, it.TaskID)
		}
	}
	out, _, err := runClient(t, "list", "--spool", spool)
	if err != nil || strings.Count(out, " finished ") != cores {
		t.Errorf("list: %v\n%s", err, out)
	}
}

// TestWatchRetries: an unreachable server, 503 and 507 are retried; a
// core refused again and again fails after submit.attempts with the
// reason, keeping its files, and `retry` sends it again.
func TestWatchRetries(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	fr := newFront(t, hs.URL, 0, 503, 507)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	spool, config := t.TempDir(), writeConfig(t, "")
	logs := &syncBuffer{}
	startWatch(t, spool, fr.URL, config, logs)
	writeSlowly(t, filepath.Join(spool, "core_crashme_1_1700000001"), core, 64<<10, time.Millisecond)
	items := waitItems(t, spool, 1, 30*time.Second, logs)
	if it := items[0]; it.State != stateFinished || it.Attempts != 0 {
		t.Fatalf("%+v\n%s", it, logs)
	}
	for _, want := range []string{"attempt 1 failed", "attempt 2 failed, next in 200ms: Unexpected HTTP response from server: 503", "attempt 3 failed, next in 400ms: busy"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs)
		}
	}

	// Always busy: failed after 4 attempts, files kept.
	fr.setFailures(503, 503, 503, 503, 503, 503)
	writeSlowly(t, filepath.Join(spool, "core_crashme_2_1700000002"), core, 64<<10, time.Millisecond)
	items = waitItems(t, spool, 2, 30*time.Second, logs)
	it, err := loadItem(spool, "core_crashme_2_1700000002")
	if err != nil || it.State != stateFailed || !strings.Contains(it.Reason, "gave up after 4 attempts: Unexpected HTTP response from server: 503") {
		t.Fatalf("%+v %v\n%s", it, err, logs)
	}
	for _, f := range []string{"coredump", archive, "executable"} {
		if _, err := os.Stat(filepath.Join(itemDir(spool, it.ID), f)); err != nil {
			t.Errorf("failed item lost %s: %v", f, err)
		}
	}
	out, _, err := runClient(t, "list", "--spool", spool)
	if err != nil || !strings.Contains(out, "failed") || !strings.Contains(out, "gave up after 4 attempts") {
		t.Errorf("list: %v\n%s", err, out)
	}
	fr.setFailures()
	if out, _, err := runClient(t, "retry", "core_crashme_2_1700000002", "--spool", spool); err != nil || out != "core_crashme_2_1700000002: queued again\n" {
		t.Fatalf("retry: %q %v", out, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for it.State != stateFinished && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		it, _ = loadItem(spool, it.ID)
	}
	if it.State != stateFinished {
		t.Fatalf("after retry: %+v\n%s", it, logs)
	}
	if _, _, err := runClient(t, "retry", it.ID, "--spool", spool); err == nil || !strings.Contains(err.Error(), "only a failed item") {
		t.Errorf("retry of a finished item: %v", err)
	}
	if total, dup := fr.counts(); total != 2 || dup != 0 {
		t.Errorf("%d uploads reached the server, %d repeated; want 2, 0", total, dup)
	}
}

// TestWatchRoutes: the first [[route]] whose regex matches the
// executable wins; the rest go to --url.
func TestWatchRoutes(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	def, routed := newFront(t, hs.URL), newFront(t, hs.URL)
	corePath, info := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	config := writeConfig(t, fmt.Sprintf("[[route]]\nexecutable = %q\nurl = %q\n[[route]]\nexecutable = \".\"\nurl = \"http://127.0.0.1:1\"\n",
		"^"+info.Executable+"$", routed.URL))
	logs := &syncBuffer{}
	startWatch(t, spool, def.URL, config, logs)
	writeSlowly(t, filepath.Join(spool, "core_crashme_1_1700000001"), core, 64<<10, 0)
	items := waitItems(t, spool, 1, 30*time.Second, logs)
	if items[0].State != stateFinished || items[0].URL != routed.URL {
		t.Errorf("%+v", items[0])
	}
	if n, _ := routed.counts(); n != 1 {
		t.Errorf("routed server got %d uploads", n)
	}
	if n, _ := def.counts(); n != 0 {
		t.Errorf("default server got %d uploads", n)
	}
}

// TestCoreHandlerAndQuota: core-handler writes a piped core into the
// spool, which watch takes; on a full file system (a small tmpfs) both
// refuse new cores.
func TestCoreHandlerAndQuota(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", spool).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", spool).CombinedOutput(); err != nil {
			t.Errorf("umount: %v %s", err, out)
		}
	})
	config := writeConfig(t, "[dump]\nquota = 25\nmax_size = 4000000\n")
	handler := func(args ...string) (string, error) {
		cmd := helper(append([]string{"core-handler", "--spool", spool, "--config", config}, args...)...)
		cmd.Stdin = bytes.NewReader(core)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	logs := &syncBuffer{}
	startWatch(t, spool, hs.URL, config, logs)
	if out, err := handler("crash/me", "42", "1700000042"); err != nil {
		t.Fatalf("core-handler: %v %s", err, out)
	}
	items := waitItems(t, spool, 1, 30*time.Second, logs)
	if it := items[0]; it.ID != "core_crash-me_42_1700000042" || it.State != stateFinished || it.PID != 42 || it.Size != int64(len(core)) {
		t.Errorf("%+v", it)
	}

	// Fill the file system to under 25% free.
	filler := filepath.Join(spool, ".filler")
	if err := os.WriteFile(filler, make([]byte, 6<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := handler("crashme", "43", "1700000043")
	if err == nil || !strings.Contains(out, "below dump.quota 25%") {
		t.Errorf("core-handler on a full spool: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(spool, "core_crashme_43_1700000043")); !os.IsNotExist(err) {
		t.Errorf("refused core written: %v", err)
	}
	// A core written straight by the kernel is deleted.
	if err := os.WriteFile(filepath.Join(spool, "core_crashme_44_1700000044"), core, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(logs.String(), "core_crashme_44_1700000044: refused") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(spool, "core_crashme_44_1700000044")); !os.IsNotExist(err) {
		t.Errorf("core over the quota kept: %v\n%s", err, logs)
	}
	// max_size bounds what core-handler reads.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	big := helper("core-handler", "--spool", spool, "--config", config, "big", "45", "1700000045")
	big.Stdin = bytes.NewReader(make([]byte, 5000000))
	if out, err := big.CombinedOutput(); err == nil || !strings.Contains(string(out), "larger than dump.max_size") {
		t.Errorf("core-handler of a core over max_size: %v %s", err, out)
	}
	entries, _ := os.ReadDir(spool)
	for _, e := range entries {
		if e.Name() != itemsDir {
			t.Errorf("left in the spool: %s", e.Name())
		}
	}
}

func TestParseCoreName(t *testing.T) {
	for _, tt := range []struct {
		name string
		comm string
		pid  int
		ok   bool
	}{
		{"core_crashme_12_1700000000", "crashme", 12, true},
		{"core_my_prog_12_1700000000", "my_prog", 12, true},
		{"core.1234", "", 0, false},
		{"core_x_y_z", "", 0, false},
		{"core_crashme_12_253402300799", "crashme", 12, true},
		{"core_crashme_12_253402300800", "", 0, false}, // year 10000: no JSON time
		{"core_crashme_12_1796380017377923550", "", 0, false},
		{"core_crashme_0_1700000000", "", 0, false},
		{"core_crashme_-3_1700000000", "", 0, false},
		{"core_crashme_12_-1", "", 0, false},
	} {
		comm, pid, _, ok := parseCoreName(tt.name)
		if comm != tt.comm || pid != tt.pid || ok != tt.ok {
			t.Errorf("%s: %q %d %v", tt.name, comm, pid, ok)
		}
	}
}

// procCPU returns a process's utime+stime in clock ticks.
func procCPU(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// TestWatchRealWorker: cores through a server with the real worker (the
// fixture repository, the real gdb); logs the median time from a core
// written into the spool to its backtrace saved, and checks that the
// idle watcher uses no CPU.
func TestWatchRealWorker(t *testing.T) {
	hs := realWorkerServer(t)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	config := writeConfig(t, "")
	logs := &syncBuffer{}
	watch := startWatch(t, spool, hs.URL, config, logs)
	const runs = 5
	var took []time.Duration
	for i := range runs {
		name := fmt.Sprintf("core_crashme_%d_%d", 100+i, 1700000100+i)
		start := time.Now()
		writeSlowly(t, filepath.Join(spool, name), core, 64<<10, 0)
		bt := filepath.Join(itemDir(spool, name), "backtrace")
		for {
			if it, err := loadItem(spool, name); err == nil && terminal(it.State) {
				if it.State != stateFinished {
					t.Fatalf("%+v\n%s", it, logs)
				}
				break
			}
			if time.Since(start) > 60*time.Second {
				t.Fatalf("no backtrace after 60s\n%s", logs)
			}
			time.Sleep(5 * time.Millisecond)
		}
		took = append(took, time.Since(start))
		b, err := os.ReadFile(bt)
		if err != nil || !strings.Contains(string(b), "crashme_dispatch") {
			t.Errorf("backtrace: %v\n%s", err, b)
		}
	}
	slices.Sort(took)
	t.Logf("core written -> backtrace saved, real worker, default settle %s: median %s over %d runs (min %s, max %s)",
		defaultWatchConfig().Settle.Duration, took[runs/2].Round(time.Millisecond), runs, took[0].Round(time.Millisecond), took[runs-1].Round(time.Millisecond))

	before := procCPU(t, watch.Process.Pid)
	time.Sleep(3 * time.Second)
	idle := procCPU(t, watch.Process.Pid) - before
	t.Logf("idle watcher: %d clock ticks of CPU in 3s", idle)
	if idle > 1 {
		t.Errorf("the idle watcher used %d clock ticks of CPU in 3s", idle)
	}
}

// TestPurge: finished items older than purge.age are deleted; younger
// ones and failed ones stay.
func TestPurge(t *testing.T) {
	spool := t.TempDir()
	now := time.Date(2025, 1, 10, 0, 0, 0, 0, time.UTC)
	for _, it := range []*item{
		{ID: "old", State: stateFinished, Finished: now.Add(-48 * time.Hour)},
		{ID: "young", State: stateFinished, Finished: now.Add(-time.Hour)},
		{ID: "failed", State: stateFailed, Finished: now.Add(-48 * time.Hour)},
	} {
		if err := os.MkdirAll(itemDir(spool, it.ID), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := it.save(spool); err != nil {
			t.Fatal(err)
		}
	}
	cfg := defaultWatchConfig()
	cfg.Purge.Age.Duration = 24 * time.Hour
	w := newWatcher(spool, "", false, cfg, io.Discard)
	w.now = func() time.Time { return now }
	w.rescan()
	w.purge()
	items, err := loadItems(spool)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, it := range items {
		left = append(left, it.ID)
	}
	slices.Sort(left)
	if strings.Join(left, " ") != "failed young" {
		t.Errorf("left %v, want failed young", left)
	}
}

// TestSettled: when the watcher takes a core (a clock it is given, no
// waiting): an ELF core as long as its program headers say after settle
// without a write; one cut short not until maxIncomplete unchanged; a
// file that is no ELF core once unwritten for settle_other and the same
// size at two looks; a directory never.
func TestSettled(t *testing.T) {
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := defaultWatchConfig()
	settle, other := cfg.Settle.Duration, cfg.SettleOther.Duration
	if settle != 250*time.Millisecond || other != 2*time.Second {
		t.Fatalf("defaults settle %s, settle_other %s; the README says 250ms and 2s", settle, other)
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name  string
		write func(path string) error
		looks []time.Duration // after the event: when the watcher looks
		want  []string        // at each look: "take", "drop" or "again +D" (from the event)
	}{
		{"complete core", func(p string) error { return os.WriteFile(p, core, 0o600) },
			[]time.Duration{settle}, []string{"take"}},
		{"core cut short", func(p string) error { return os.WriteFile(p, core[:len(core)/2], 0o600) },
			[]time.Duration{settle, settle + other, maxIncomplete + settle},
			[]string{"again +2.25s", "again +4.25s", "take"}},
		{"not ELF", func(p string) error { return os.WriteFile(p, []byte("a core? no"), 0o600) },
			[]time.Duration{settle, other}, []string{"again +2s", "take"}},
		{"directory", func(p string) error { return os.Mkdir(p, 0o700) },
			[]time.Duration{settle}, []string{"drop"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spool := t.TempDir()
			now := t0
			w := newWatcher(spool, "", false, cfg, io.Discard)
			w.now = func() time.Time { return now }
			if err := tt.write(filepath.Join(spool, "core")); err != nil {
				t.Fatal(err)
			}
			w.event("core")
			p := w.pending["core"]
			if !p.deadline.Equal(t0.Add(settle)) {
				t.Fatalf("first look at %s, want +%s", p.deadline.Sub(t0), settle)
			}
			for i, at := range tt.looks {
				now = t0.Add(at)
				take, again := w.settled("core", p)
				got := "drop"
				switch {
				case take:
					got = "take"
				case !again.IsZero():
					got = "again +" + again.Sub(t0).String()
				}
				if got != tt.want[i] {
					t.Errorf("look at +%s: %s, want %s", at, got, tt.want[i])
				}
			}
		})
	}
}

// TestWatchServerNotListening: a core whose server is not listening yet
// (connection refused) is retried and lands once the server starts on
// that address.
func TestWatchServerNotListening(t *testing.T) {
	corePath, info := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	spool := t.TempDir()
	config := filepath.Join(t.TempDir(), "watch.toml")
	if err := os.WriteFile(config, []byte("[submit]\nattempts = 50\nbackoff = \"100ms\"\nmax_backoff = \"200ms\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	startWatch(t, spool, "http://"+addr, config, logs)
	writeSlowly(t, filepath.Join(spool, "core_crashme_7_1700000007"), core, 64<<10, 0)
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(logs.String(), "attempt 2 failed") {
		if time.Now().After(deadline) {
			t.Fatalf("no second failed attempt in 20s:\n%s", logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "connection refused") {
		t.Errorf("the failures do not say connection refused:\n%s", logs)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	fr := newFront(t, startServer(t, coreRetracer{}, false).URL)
	// The front, on the address watch was given.
	fr.Listener.Close()
	srv := &http.Server{Handler: fr.Config.Handler}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	items := waitItems(t, spool, 1, 30*time.Second, logs)
	it := items[0]
	if it.State != stateFinished || it.Attempts != 0 || it.TaskID == "" {
		t.Fatalf("%+v\n%s", it, logs)
	}
	bt, err := os.ReadFile(filepath.Join(itemDir(spool, it.ID), "backtrace"))
	if err != nil || !strings.Contains(string(bt), "executable "+info.Executable+"\n") {
		t.Errorf("backtrace %q %v", bt, err)
	}
	if total, dup := fr.counts(); total != 1 || dup != 0 {
		t.Errorf("%d uploads reached the server, %d repeated; want 1, 0", total, dup)
	}
}

// TestFailingCoreGoesBehind: a core whose uploads fail again and again
// waits behind the others: cores found after it are sent while it waits,
// and when everything is due at once, the others' turns come before its
// next attempt. The watcher runs in-process on a clock the test moves.
func TestFailingCoreGoesBehind(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	spool := t.TempDir()
	cfg := defaultWatchConfig()
	var logs bytes.Buffer
	now := time.Now()
	w := newWatcher(spool, hs.URL, false, cfg, &logs)
	w.now = func() time.Time { return now }
	if err := os.MkdirAll(filepath.Join(spool, itemsDir), 0o700); err != nil {
		t.Fatal(err)
	}
	found := func(id string) *item {
		t.Helper()
		if err := os.WriteFile(filepath.Join(spool, id), core, 0o600); err != nil {
			t.Fatal(err)
		}
		w.accept(id)
		it := w.items[id]
		if it == nil {
			t.Fatalf("%s not taken:\n%s", id, logs.String())
		}
		return it
	}
	// The first core's server refuses connections (nothing listens on
	// port 1); it is packed first and pointed there.
	bad := found("core_crashme_1_1700000001")
	if err := w.pack(bad); err != nil {
		t.Fatal(err)
	}
	bad.URL = "http://127.0.0.1:1"
	b, c := found("core_crashme_2_1700000002"), found("core_crashme_3_1700000003")
	ctx := context.Background()
	w.work(ctx)
	if bad.State != statePacked || bad.Attempts != 1 || b.State != stateSubmitted || c.State != stateSubmitted {
		t.Fatalf("after the first round: bad %s/%d, b %s, c %s\n%s", bad.State, bad.Attempts, b.State, c.State, logs.String())
	}
	// A core found later, before the failing one is due again, is sent.
	now = now.Add(cfg.Submit.Backoff.Duration / 2)
	d := found("core_crashme_4_1700000004")
	w.work(ctx)
	if d.State != stateSubmitted || bad.Attempts != 1 {
		t.Fatalf("the later core: %s; the failing one tried %d times\n%s", d.State, bad.Attempts, logs.String())
	}
	// Everything due at once: the others are polled and finish (if an
	// earlier poll did not see them finished) before its next attempt.
	cl, err := taskclient.New(hs.URL, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range []*item{b, c, d} {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			st, _, err := cl.Status(ctx, it.TaskID, it.Password)
			if err == nil && strings.HasPrefix(st, "FINISHED") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("task %s: %s %v", it.TaskID, st, err)
			}
		}
	}
	now = now.Add(time.Hour)
	w.work(ctx)
	round := logs.String()
	second := strings.Index(round, bad.ID+": attempt 2 failed")
	if second < 0 {
		t.Fatalf("no second attempt of the failing core:\n%s", round)
	}
	for _, it := range []*item{b, c, d} {
		if i := strings.Index(round, it.ID+": finished"); i < 0 || i > second {
			t.Errorf("%s did not finish before the failing core's next attempt:\n%s", it.ID, round)
		}
	}
}
