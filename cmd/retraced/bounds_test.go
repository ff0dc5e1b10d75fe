package main

import (
	"net/http"
	"strings"
	"testing"

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
