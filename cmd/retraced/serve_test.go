package main

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index"
)

// startServe runs `retraced serve` in-process on a free port and returns
// its URL once the first sync has landed.
func startServe(t *testing.T, cfg Config) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	var runErr error
	go func() {
		runErr = Run(ctx, cfg)
		close(stopped)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
		if runErr != nil {
			t.Errorf("serve: %v", runErr)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(cfg.Data, serverFile))
		var info serverInfo
		if err == nil && json.Unmarshal(b, &info) == nil {
			var views []map[string]any
			if getJSON(t, info.URL+"/api/v1/mirrors", &views) == http.StatusOK && len(views) > 0 && views[0]["last_sync"] != nil {
				return info.URL
			}
		}
		select {
		case <-stopped:
			t.Fatalf("serve stopped: %v", runErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
	t.Fatal("serve did not come up with a synced source")
	return ""
}

func getJSON(t *testing.T, url string, out any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil {
		json.Unmarshal(b, out)
	}
	return resp.StatusCode
}

func testConfig(t *testing.T) Config {
	cfg := defaultConfig()
	cfg.Data = t.TempDir()
	cfg.Listen = "127.0.0.1:0"
	f := false
	cfg.Mirror.Fsync = &f
	return cfg
}

// TestServeEmbeddedDefault: a fresh data directory serves the bundled
// fixture repository.
func TestServeEmbeddedDefault(t *testing.T) {
	cfg := testConfig(t)
	url := startServe(t, cfg)
	e := fixtures.ELFFiles(t)[0]
	var got struct {
		BuildID string `json:"build_id"`
		Matches []struct {
			NEVRA, Kind, Path string
			Repos             []string
		} `json:"matches"`
	}
	if code := getJSON(t, url+"/api/v1/buildid/"+e.BuildID, &got); code != http.StatusOK {
		t.Fatalf("GET buildid: %d", code)
	}
	found := false
	for _, m := range got.Matches {
		found = found || (m.NEVRA == e.NEVRA && m.Path == e.Path && m.Kind == e.Kind && len(m.Repos) == 1 && m.Repos[0] == "fixtures")
	}
	if !found {
		t.Fatalf("matches %+v lack %+v", got.Matches, e)
	}
	// debuginfod's /metadata finds the file by its path.
	var meta struct {
		Results  []struct{ Type, BuildID, File, Archive string }
		Complete bool
	}
	code := getJSON(t, url+"/metadata?key=file&value="+e.Path, &meta)
	hit := false
	for _, r := range meta.Results {
		hit = hit || (r.BuildID == e.BuildID && r.Type == e.Kind && r.File == e.Path)
	}
	if code != http.StatusOK || !meta.Complete || !hit {
		t.Fatalf("GET /metadata file %s: %d %+v", e.Path, code, meta)
	}
	resp, err := http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`retraced_http_requests_total{code="200",method="GET",route="/api/v1/buildid/:id"}`,
		`retraced_lookups_total{interface="api",result="hit"} 1`,
		`retraced_metadata_searches_total{complete="true",key="file"} 1`,
		fmt.Sprintf("retraced_index_packages %d", len(fixtures.Packages(t))),
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestCLIWhileServing: with serve holding the data directory, the other
// commands go through its API instead of failing on the lock.
func TestCLIWhileServing(t *testing.T) {
	cfg := testConfig(t)
	cfg.APISources = "local" // mirror add of a fixture directory goes through serve
	startServe(t, cfg)
	e := fixtures.ELFFiles(t)[0]
	out, _, err := run(t, "--data", cfg.Data, "lookup", e.BuildID)
	if err != nil || !strings.Contains(out, e.NEVRA+" "+e.Kind+" "+e.Path) {
		t.Fatalf("lookup while serving: %q %v", out, err)
	}
	_, errOut, err := run(t, "--data", cfg.Data, "lookup", "00112233445566778899aabbccddeeff00112233")
	var ec exitCode
	if !errors.As(err, &ec) || ec != 1 || !strings.Contains(errOut, "not found") {
		t.Fatalf("unknown id while serving: %v %q", err, errOut)
	}
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "v1", fixtures.Path("repo-v1")); err != nil {
		t.Fatalf("add while serving: %v", err)
	}
	out, _, err = run(t, "--data", cfg.Data, "mirror", "sync", "v1")
	if err != nil || !strings.HasPrefix(out, "v1: ") {
		t.Fatalf("sync while serving: %q %v", out, err)
	}
	out, _, err = run(t, "--data", cfg.Data, "mirror", "list", "--json")
	if err != nil || !strings.Contains(out, `"name": "v1"`) || !strings.Contains(out, `"name": "fixtures"`) {
		t.Fatalf("list while serving: %q %v", out, err)
	}
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "remove", "v1"); err != nil {
		t.Fatalf("remove while serving: %v", err)
	}
}

func TestAPIErrors(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdminToken = "s3cret"
	url := startServe(t, cfg)
	post := func(path, body, token string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	many := make([]string, 10001)
	for i := range many {
		many[i] = fmt.Sprintf("%040x", i)
	}
	manyJSON, _ := json.Marshal(map[string][]string{"build_ids": many})
	e := fixtures.ELFFiles(t)[0]
	tests := []struct {
		name, path, body, token string
		want                    int
	}{
		{"batch", "/api/v1/buildids", `{"build_ids":["` + e.BuildID + `","00ff"]}`, "", http.StatusOK},
		{"batch not json", "/api/v1/buildids", `{"build_ids":`, "", http.StatusBadRequest},
		{"batch bad id", "/api/v1/buildids", `{"build_ids":["xyz"]}`, "", http.StatusBadRequest},
		{"batch null", "/api/v1/buildids", `null`, "", http.StatusBadRequest},
		{"batch no ids", "/api/v1/buildids", `{}`, "", http.StatusBadRequest},
		{"batch null ids", "/api/v1/buildids", `{"build_ids":null}`, "", http.StatusBadRequest},
		{"batch trailing garbage", "/api/v1/buildids", `{"build_ids":[]}garbage`, "", http.StatusBadRequest},
		{"batch two objects", "/api/v1/buildids", `{"build_ids":[]} {}`, "", http.StatusBadRequest},
		{"batch empty", "/api/v1/buildids", `{"build_ids":[]}` + "\n", "", http.StatusOK},
		{"batch too many", "/api/v1/buildids", string(manyJSON), "", http.StatusRequestEntityTooLarge},
		{"sync without token", "/api/v1/mirrors/fixtures/sync", "", "", http.StatusUnauthorized},
		{"sync wrong token", "/api/v1/mirrors/fixtures/sync", "", "guess", http.StatusUnauthorized},
		{"sync unknown", "/api/v1/mirrors/nope/sync", "", "s3cret", http.StatusNotFound},
		{"sync", "/api/v1/mirrors/fixtures/sync", "", "s3cret", http.StatusAccepted},
		{"add bad", "/api/v1/mirrors", `{"name":"a b","url":"/x"}`, "s3cret", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(tt.path, tt.body, tt.token)
			if code != tt.want {
				t.Fatalf("%s: %d %s, want %d", tt.path, code, body, tt.want)
			}
			if code >= 400 && !strings.Contains(body, `"error"`) {
				t.Fatalf("error body is not JSON {error}: %s", body)
			}
			if tt.name == "batch" && (!strings.Contains(body, `"unresolved":["00ff"]`) || !strings.Contains(body, e.Path)) {
				t.Fatalf("batch body: %s", body)
			}
		})
	}
	for _, bad := range []string{"xyz", "abc", strings.Repeat("a", 130)} {
		if code := getJSON(t, url+"/api/v1/buildid/"+bad, nil); code != http.StatusBadRequest {
			t.Errorf("GET buildid/%s: %d, want 400", bad, code)
		}
	}
	if code := getJSON(t, url+"/api/v1/buildid/00112233", nil); code != http.StatusNotFound {
		t.Errorf("unknown id: %d, want 404", code)
	}
}

// TestScheduledSync: a source added with --schedule "@every 1s" while
// serve runs is synced by the scheduler, with no one asking.
func TestScheduledSync(t *testing.T) {
	cfg := testConfig(t)
	cfg.APISources = "local" // mirror add of a fixture directory goes through serve
	url := startServe(t, cfg)
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "v2", fixtures.Path("repo-v2"), "--schedule", "@every 1s"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var views []map[string]any
		getJSON(t, url+"/api/v1/mirrors", &views)
		for _, v := range views {
			if v["name"] == "v2" && v["last_sync"] != nil {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatal("the scheduled source was never synced")
}

// TestCoredump2Packages: the CLI (locally and through a running server)
// and the API answer the same for each fixture core, raw or compressed.
func TestCoredump2Packages(t *testing.T) {
	cfg := testConfig(t)
	for _, c := range fixtures.Cores(t) {
		core := fixtures.CoreFile(t, c.File)
		n, err := index.ParseNEVRA(c.NEVRA)
		if err != nil {
			t.Fatal(err)
		}
		dbg := n
		dbg.Name += "-debuginfo"
		check := func(t *testing.T, out string) {
			t.Helper()
			sections := strings.Split(out, "\n\n")
			if len(sections) != 3 || sections[0] != c.NEVRA || sections[1] != c.NEVRA+"\n"+dbg.String() {
				t.Fatalf("output:\n%s", out)
			}
			// libc, ld.so and the vdso are the host's: unresolved, with build-ids.
			if lines := strings.Split(strings.TrimSpace(sections[2]), "\n"); len(lines) != 3 {
				t.Fatalf("unresolved section:\n%s", sections[2])
			}
		}
		t.Run(c.File+"/local", func(t *testing.T) {
			if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "fx", fixtures.Path("repo")); err != nil && !strings.Contains(err.Error(), "exists") {
				t.Fatal(err)
			}
			if _, _, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
				t.Fatal(err)
			}
			out, _, err := run(t, "--data", cfg.Data, "coredump2packages", core)
			if err != nil {
				t.Fatal(err)
			}
			check(t, out)
		})
	}
	url := startServe(t, cfg)
	for _, c := range fixtures.Cores(t)[:1] {
		core := fixtures.CoreFile(t, c.File)
		out, _, err := run(t, "--data", cfg.Data, "coredump2packages", "--json", core)
		if err != nil || !strings.Contains(out, `"crash_package": "`+c.NEVRA+`"`) {
			t.Fatalf("through the server: %q %v", out, err)
		}
		compressed := fixtures.Path("cores", c.File) // zstd, as committed
		body, err := os.Open(compressed)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(url+"/api/v1/coredump2packages", "application/octet-stream", body)
		body.Close()
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			CrashPackage string `json:"crash_package"`
		}
		json.NewDecoder(resp.Body).Decode(&rep)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || rep.CrashPackage != c.NEVRA {
			t.Fatalf("zstd upload: %d %+v", resp.StatusCode, rep)
		}
	}
	for name, body := range map[string]string{"not a core": "hello", "truncated ELF": "\x7fELF\x02\x01\x01"} {
		resp, err := http.Post(url+"/api/v1/coredump2packages", "application/octet-stream", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "error") {
			t.Errorf("%s: %d %s, want 400 with a message", name, resp.StatusCode, b)
		}
	}
}

// TestRetraceTaskEndToEnd: a crash directory posted to serve's /create is
// retraced by the real worker (sysroot from the mirror, sandboxed gdb);
// the backtrace has the program's functions with file:line. It logs the
// create-to-FINISHED_SUCCESS time of each run.
func TestRetraceTaskEndToEnd(t *testing.T) {
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed (CI installs it)")
	}
	cfg := testConfig(t)
	url := startServe(t, cfg)
	core := fixtures.CoreFile(t, "crashme-1.0.core.zst")
	var times []time.Duration
	for range 3 {
		var tarball bytes.Buffer
		tw := tar.NewWriter(&tarball)
		b, err := os.ReadFile(core)
		if err != nil {
			t.Fatal(err)
		}
		for name, data := range map[string][]byte{"coredump": b, "executable": []byte("/usr/bin/crashme"), "package": []byte("crashme-1.0-1")} {
			if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
				t.Fatal(err)
			}
			tw.Write(data)
		}
		tw.Close()
		start := time.Now()
		resp, err := http.Post(url+"/create", "application/x-tar", &tarball)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		id, pw := resp.Header.Get("X-Task-Id"), resp.Header.Get("X-Task-Password")
		if resp.StatusCode != http.StatusCreated || id == "" || len(pw) != 32 {
			t.Fatalf("create: %d id %q", resp.StatusCode, id)
		}
		get := func(path string) (*http.Response, string) {
			req, _ := http.NewRequest(http.MethodGet, url+path, nil)
			req.Header.Set("X-Task-Password", pw)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			return resp, string(body)
		}
		status := ""
		for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			r, _ := get("/" + id)
			if status = r.Header.Get("X-Task-Status"); status != "PENDING" {
				break
			}
		}
		times = append(times, time.Since(start))
		_, logText := get("/" + id + "/log")
		if status != "FINISHED_SUCCESS" {
			t.Fatalf("task %s: %s\n%s", id, status, logText)
		}
		_, bt := get("/" + id + "/backtrace")
		for _, want := range []string{"crashme_dispatch", "libcrashme.c:", "run_command", "crashme.c:", "main"} {
			if !strings.Contains(bt, want) {
				t.Fatalf("backtrace lacks %q:\n%s", want, bt)
			}
		}
		if !strings.Contains(logText, "unresolved") {
			t.Errorf("the log does not name the unresolved libc/ld.so:\n%s", logText)
		}
	}
	t.Logf("create -> FINISHED_SUCCESS: %v", times)

	// Beside it, the debuginfod way on the same core: gdb with only the
	// core, fetching everything from this server (fresh cache each run).
	var gdbTimes []time.Duration
	for range 3 {
		home := t.TempDir()
		cmd := exec.Command("gdb", "-batch", "-nx", "-iex", "set debuginfod enabled on", "-iex", "set debuginfod urls "+url,
			"-ex", "bt", "-c", core)
		cmd.Env = []string{"HOME=" + home, "DEBUGINFOD_URLS=" + url, "DEBUGINFOD_CACHE_PATH=" + filepath.Join(home, "cache"), "PATH=" + os.Getenv("PATH")}
		start := time.Now()
		out, err := cmd.CombinedOutput()
		gdbTimes = append(gdbTimes, time.Since(start))
		if err != nil || !strings.Contains(string(out), "crashme_dispatch") {
			t.Fatalf("gdb with debuginfod: %v\n%s", err, out)
		}
	}
	t.Logf("gdb -c CORE with DEBUGINFOD_URLS=retraced: %v", gdbTimes)
}

// errListenerBroken is what a breakableListener's Accept fails with once
// broken.
var errListenerBroken = errors.New("listener broken")

// breakableListener is a listener the test breaks, as when its socket
// goes away under the server.
type breakableListener struct {
	net.Listener
	broken atomic.Bool
}

func (l *breakableListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil && l.broken.Load() {
		return nil, errListenerBroken
	}
	return c, err
}

func (l *breakableListener) breakNow() {
	l.broken.Store(true)
	l.Listener.Close()
}

// TestServeStopsWhenTheListenerFails: serve's components run as one: when
// the HTTP server's listener fails, the scheduler, the sync queue and the
// retrace workers stop too, and Run returns the listener's error within
// seconds (no signal needed), having let go of the data directory.
func TestServeStopsWhenTheListenerFails(t *testing.T) {
	cfg := testConfig(t)
	lnc := make(chan *breakableListener, 1)
	listen := func(network, addr string) (net.Listener, error) {
		ln, err := net.Listen(network, addr)
		if err != nil {
			return nil, err
		}
		bl := &breakableListener{Listener: ln}
		lnc <- bl
		return bl, nil
	}
	done := make(chan error, 1)
	go func() { done <- runServe(context.Background(), cfg, listen) }()
	var ln *breakableListener
	select {
	case ln = <-lnc:
	case err := <-done:
		t.Fatalf("serve returned before listening: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not listen within 30s")
	}
	url := "http://" + ln.Addr().String()
	pollUntil(t, 30*time.Second, "serve answers /healthz", func() bool { return getJSON(t, url+"/healthz", nil) == http.StatusOK })

	ln.breakNow()
	select {
	case err := <-done:
		if !errors.Is(err, errListenerBroken) {
			t.Fatalf("serve returned %v, want the listener's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return within 10s of its listener failing")
	}
	if _, err := os.Stat(filepath.Join(cfg.Data, serverFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve left %s behind (stat: %v)", serverFile, err)
	}
	f, err := lockDir(cfg.Data)
	if err != nil {
		t.Fatalf("the data directory is still locked: %v", err)
	}
	f.Close()
}
