package main

import (
	"bytes"
	"context"
	"io"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/retraced/retraced/fixtures"
)

func browse[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("chromium: %v", err)
	}
	return v
}

// TestUploadFormInChromium: in headless Chromium, the status page leads
// to the upload form; a real fixture core chosen in its file input and
// submitted becomes a retrace task of `retraced serve` (gdb runs in its
// worker), and the task's page, refreshing itself, ends showing
// FINISHED_SUCCESS and the backtrace with every frame of the reference
// gdb's (fixtures/cores/crashme-1.0.bt.txt): function and file:line. The
// task's password is in no URL and no script can read it (an HttpOnly
// cookie); without it, or with another, the page is refused (403). A
// file that is no core is refused with a message saying so.
func TestUploadFormInChromium(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	ctx := fixtures.Browser(t, 3*time.Minute)
	cfg := testConfig(t)
	url := startServe(t, cfg)
	core := fixtures.CoreFile(t, "crashme-1.0.core.zst")

	if err := chromedp.Do(ctx,
		chromedp.Navigate(url+"/"),
		chromedp.Click("#upload-link"),
		chromedp.WaitVisible("#upload-form"),
		chromedp.SetUploadFiles("#coredump", []string{core}),
		chromedp.Submit("#upload-form"),
	); err != nil {
		t.Fatalf("upload: %v", err)
	}
	// Each refresh is a new page load: wait across them for the end.
	deadline := time.Now().Add(2 * time.Minute)
	status := ""
	for time.Now().Before(deadline) {
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(document.querySelector("#task") || {dataset: {}}).dataset.status || ""`))
		if err == nil && strings.HasPrefix(s, "FINISHED_") {
			status = s
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	loc := browse(t, ctx, chromedp.Location())
	if !regexp.MustCompile(`/upload/[0-9]+$`).MatchString(loc) {
		t.Fatalf("the form led to %s, want /upload/ID", loc)
	}
	if status != "FINISHED_SUCCESS" {
		text, _ := chromedp.Run(ctx, chromedp.Text("body"))
		t.Fatalf("task status %q, want FINISHED_SUCCESS:\n%s", status, text)
	}
	bt := browse(t, ctx, chromedp.Text("#backtrace"))
	ref, err := os.ReadFile(fixtures.Path("cores", "crashme-1.0.bt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	frames := regexp.MustCompile(`(?m)^#\d+ .* in (\S+) \(.*\) at (\S+:\d+)$`).FindAllStringSubmatch(string(ref), -1)
	if len(frames) < 3 {
		t.Fatalf("the reference backtrace has %d frames", len(frames))
	}
	for _, f := range frames {
		if !strings.Contains(bt, " in "+f[1]+" (") || !strings.Contains(bt, " at "+f[2]) {
			t.Errorf("the page's backtrace lacks %s at %s:\n%s", f[1], f[2], bt)
		}
	}
	if lg := browse(t, ctx, chromedp.Text("#task-log")); !strings.Contains(lg, "gdb") {
		t.Errorf("the page's log does not mention gdb:\n%s", lg)
	}
	if c := browse(t, ctx, chromedp.Evaluate[string](`document.cookie`)); c != "" {
		t.Errorf("a script reads the cookie %q: want it HttpOnly", c)
	}
	shot := browse(t, ctx, chromedp.FullScreenshot(100))
	dir := fixtures.Artifacts(t)
	if err := os.WriteFile(filepath.Join(dir, "upload-task.png"), shot, 0o644); err != nil || len(shot) < 10_000 {
		t.Fatalf("screenshot: %v (%d bytes)", err, len(shot))
	}

	// Another client, without the cookie or with a wrong one.
	for _, cookie := range []string{"", "retraced_task=" + strings.Repeat("A", 32)} {
		req, err := http.NewRequest("GET", loc, nil)
		if err != nil {
			t.Fatal(err)
		}
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || strings.Contains(string(body), "crashme_dispatch") {
			t.Errorf("GET %s with cookie %q: %d, want 403 without the backtrace", loc, cookie, resp.StatusCode)
		}
	}

	// Not a core: the form says so.
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("coredump", "notes.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(fw, "this is not a core\n")
	mw.Close()
	resp, err := http.Post(url+"/upload", mw.FormDataContentType(), &body)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "not an ELF core") {
		t.Errorf("a text file uploaded: %d\n%s", resp.StatusCode, b)
	}
}
