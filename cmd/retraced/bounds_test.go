package main

import (
	"io"
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
