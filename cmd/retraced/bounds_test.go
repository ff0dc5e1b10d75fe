package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
)

// TestGuessesThrottled: wrong task passwords and wrong admin tokens from
// one client are answered 403/401 twenty times a minute, then 429 with
// Retry-After for the rest of the minute, the right secret included;
// before, guesses ran at hundreds a second.
func TestGuessesThrottled(t *testing.T) {
	cfg := testConfig(t)
	cfg.AdminToken = "s3cret"
	url := startServe(t, cfg)
	task := createTask(t, url, crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"), nil))
	wrong := retraceTask{url: task.url, id: task.id, pw: strings.Repeat("x", 32)}
	for i := range 20 {
		if code, _, body := wrong.get(t, ""); code != http.StatusForbidden {
			t.Fatalf("guess %d: %d %s, want 403", i+1, code, body)
		}
	}
	code, h, body := httpDo(t, http.MethodGet, url+"/"+task.id, map[string]string{"X-Task-Password": task.pw}, nil)
	if code != http.StatusTooManyRequests || h.Get("Retry-After") == "" {
		t.Fatalf("after 20 wrong passwords, the right one: %d %q (Retry-After %q), want 429", code, body, h.Get("Retry-After"))
	}
	code, _, body = httpDo(t, http.MethodPost, url+"/api/v1/mirrors/fixtures/sync", map[string]string{"Authorization": "Bearer s3cret"}, nil)
	if code != http.StatusTooManyRequests || !strings.Contains(body, `"error"`) {
		t.Fatalf("the API while blocked: %d %q, want 429 with a JSON error", code, body)
	}
}

// TestFullDiskAnswers: on a data directory whose file system is (nearly)
// full, a sync asked for with ?wait=true answers at once that it is
// paused, serve stays up, and no blob temp file is left. Before, with
// min_free = 0 the sync wrote on until Badger's memory-mapped files hit
// the full disk and serve died of SIGBUS; the caller got no answer.
func TestFullDiskAnswers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a small tmpfs needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	cfg := testConfig(t)
	cfg.Data = filepath.Join(dir, "data")
	cfg.MinFree = 0
	url := startServe(t, cfg)
	// Fill what is left.
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(fill, io.LimitReader(zeros{}, 64<<20))
	fill.Close()

	done := make(chan struct{})
	var code int
	var body string
	go func() {
		defer close(done)
		code, _, body = httpDo(t, http.MethodPost, url+"/api/v1/mirrors/fixtures/sync?wait=true", nil, nil)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("sync?wait=true gave no answer on a full disk")
	}
	if !strings.Contains(body, "paused") || !strings.Contains(body, "minimum") {
		t.Errorf("sync on a full disk: %d %s, want it to say it paused", code, body)
	}
	if code, _, _ := httpDo(t, http.MethodGet, url+"/healthz", nil, nil); code != http.StatusOK {
		t.Errorf("healthz after: %d", code)
	}
	if tmp, _ := os.ReadDir(filepath.Join(cfg.Data, "blobs", "tmp")); len(tmp) != 0 {
		t.Errorf("blob temp files left: %v", tmp)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestConnectionsBounded: serve, run with only 400 file descriptors, is
// held by 300 idle keep-alive connections and 300 whose request bodies
// trickle in a byte at a time; debuginfod downloads and a sync still go
// through, the idle connections are closed at idle_timeout and every
// slow body is cut (each connection closed well before its trickle's
// 20 s end). Before, the connections stayed open for ever and took
// every descriptor: accept failed, downloads answered 500 and a sync
// failed with "too many open files".
func TestConnectionsBounded(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) not installed; CI installs it")
	}
	data := t.TempDir()
	conf := writeConfig(t, `idle_timeout = "1s"`+"\n"+`body_rate_window = "500ms"`)
	cmd := exec.Command(prlimit, "--nofile=400:400", "--", os.Args[0], "-test.run=^TestHelperCLI$")
	cmd.Env = append(os.Environ(), "RETRACED_HELPER_ARGS="+strings.Join([]string{"--data", data, "--config", conf, "serve", "--listen", "127.0.0.1:0"}, "\x1f"))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
		if t.Failed() {
			t.Logf("serve's stderr:\n%s", stderr.String())
		}
	})
	var url string
	pollUntil(t, 30*time.Second, "serve up and synced", func() bool {
		var info serverInfo
		b, err := os.ReadFile(filepath.Join(data, serverFile))
		if err != nil || json.Unmarshal(b, &info) != nil {
			return false
		}
		url = info.URL
		v := mirrorView(t, url, "fixtures")
		return v != nil && v["last_sync"] != nil
	})
	e := fixtures.ELFFiles(t)[0]
	addr := strings.TrimPrefix(url, "http://")

	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		return c
	}
	idle := make([]net.Conn, 0, 300)
	for range 300 {
		c := dial()
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n") // then keep it open, idle
		idle = append(idle, c)
	}
	// The slow ones send a byte every 200 ms for 20 s, 101 of the 1000
	// bytes they announce, then nothing: only the rate cut ends them.
	// Each reports how long it was held open, or that it was not cut
	// within 15 s.
	held := make(chan time.Duration, 300)
	for range 300 {
		c := dial()
		go func() {
			fmt.Fprintf(c, "POST /api/v1/buildids HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{")
			for range 100 {
				time.Sleep(200 * time.Millisecond)
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
		go func() {
			start := time.Now()
			c.SetReadDeadline(start.Add(15 * time.Second))
			_, err := io.Copy(io.Discard, c) // the answer, then EOF or a reset
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				held <- -1
				return
			}
			held <- time.Since(start)
		}()
	}
	// Downloads and a sync go through while those are held.
	client := &http.Client{Timeout: 20 * time.Second}
	for i := range 20 {
		resp, err := client.Get(url + "/buildid/" + e.BuildID + "/executable")
		if err != nil {
			t.Fatalf("download %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("download %d: %s", i, resp.Status)
		}
	}
	code, _, body := httpDo(t, http.MethodPost, url+"/api/v1/mirrors/fixtures/sync?wait=true", nil, nil)
	if code != http.StatusOK || !strings.Contains(body, `"ok":true`) {
		t.Fatalf("sync while held: %d %s", code, body)
	}
	// The idle ones were closed by the server: reading ends (after the
	// answer to their one request).
	closed := 0
	for _, c := range idle[:20] {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.Copy(io.Discard, c); err == nil {
			closed++
		}
	}
	if closed != 20 {
		t.Errorf("%d of 20 idle connections closed by the server", closed)
	}
	// Every slow one was cut. The window is 500 ms, so a connection is
	// cut within a second of being served; up to the connection cap are
	// served at once, the rest wait to be accepted, so the longest held
	// is some seconds, and none waits out the trickle's 20 s.
	var longest time.Duration
	for range 300 {
		d := <-held
		if d < 0 {
			t.Fatal("a slow-body connection was still open after 15 s")
		}
		longest = max(longest, d)
	}
	t.Logf("the slow-body connections were all cut, the last after %s", longest)
}

// TestHeaderSlowloris: a client sending its request headers a byte every
// 100 ms is cut at read_header_timeout (1 s here; 10 s by default), while
// the server goes on answering others.
func TestHeaderSlowloris(t *testing.T) {
	if d := defaultConfig().ReadHeaderTimeout.Duration; d != 10*time.Second {
		t.Errorf("read_header_timeout defaults to %s, the spec says 10s", d)
	}
	cfg := testConfig(t)
	cfg.ReadHeaderTimeout = duration(time.Second)
	url := startServe(t, cfg)
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	go func() {
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
		for range 600 { // a minute of "X-A: aaaa..."
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	c.SetReadDeadline(start.Add(15 * time.Second))
	_, err = io.Copy(io.Discard, c) // whatever the server says, then EOF or a reset
	took := time.Since(start)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the slow headers were not cut in 15 s")
	}
	t.Logf("cut after %s", took)
	if took < 900*time.Millisecond || took > 3*time.Second {
		t.Errorf("the slow headers were cut after %s, want at read_header_timeout (1s)", took)
	}
	if code, _, _ := httpDo(t, http.MethodGet, url+"/healthz", nil, nil); code != http.StatusOK {
		t.Errorf("healthz: %d", code)
	}
}
