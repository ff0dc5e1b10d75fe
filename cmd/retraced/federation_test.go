package main

import (
	"encoding/hex"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index/elfnote"
)

// TestFederation: a retraced mirroring only the Fedora-style repository,
// with a second retraced (the bundled repository) as its upstream, serves
// debuginfod-find and gdb what only the upstream has: the crashme core's
// backtrace has its symbols through the federation, the file is cached
// (the second request is a cache hit), /metrics counts both, and an id
// neither has is 404.
func TestFederation(t *testing.T) {
	fixtures.RequireTools(t, "gdb", "debuginfod-find")
	upstream := startServe(t, testConfig(t))

	cfg := testConfig(t)
	dist := fixtures.NewServer(fixtures.FS("repo-dist")).Start(t)
	if _, _, err := run(t, "--data", cfg.Data, "mirror", "add", "dist", dist); err != nil {
		t.Fatal(err)
	}
	cfg.UpstreamDebuginfod = []string{upstream}
	url := startServe(t, cfg)

	var exe fixtures.ELFFile
	for _, e := range fixtures.ELFFiles(t) {
		if strings.HasPrefix(e.NEVRA, "crashme-1.0") && e.Kind == "executable" {
			exe = e
		}
	}
	if exe.BuildID == "" {
		t.Fatal("no crashme executable among the fixtures")
	}
	if code, _, _ := httpDo(t, http.MethodGet, url+"/api/v1/buildid/"+exe.BuildID, nil, nil); code != http.StatusNotFound {
		t.Fatalf("the federating node's own index has %s (%d): the test needs one it lacks", exe.BuildID, code)
	}
	home := t.TempDir()
	cmd := exec.Command("debuginfod-find", "executable", exe.BuildID)
	cmd.Env = []string{"HOME=" + home, "DEBUGINFOD_URLS=" + url, "DEBUGINFOD_CACHE_PATH=" + filepath.Join(home, "cache"), "PATH=" + os.Getenv("PATH")}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("debuginfod-find through the federation: %v\n%s", err, out)
	}
	f, err := os.Open(strings.TrimSpace(string(out)))
	if err != nil {
		t.Fatal(err)
	}
	id, err := elfnote.BuildID(f)
	f.Close()
	if err != nil || hex.EncodeToString(id) != exe.BuildID {
		t.Fatalf("debuginfod-find got a file carrying %x (%v), want %s", id, err, exe.BuildID)
	}

	frames := debuginfodGDB(t, url, fixtures.CoreFile(t, "crashme-1.0.core.zst"), "")
	if !strings.Contains(strings.Join(frames, "\n"), "crashme_dispatch") {
		t.Fatalf("gdb through the federation has no crashme_dispatch frame:\n%s", strings.Join(frames, "\n"))
	}
	if code, _, _ := httpDo(t, http.MethodGet, url+"/buildid/"+exe.BuildID+"/executable", nil, nil); code != http.StatusOK {
		t.Fatalf("second request: %d", code)
	}
	if code, _, _ := httpDo(t, http.MethodGet, url+"/buildid/00112233445566778899aabbccddeeff00112233/executable", nil, nil); code != http.StatusNotFound {
		t.Fatalf("an id nobody has: %d, want 404", code)
	}
	_, _, metrics := httpDo(t, http.MethodGet, url+"/metrics", nil, nil)
	for _, want := range []string{`retraced_federation_requests_total{result="fetched"}`, `retraced_federation_requests_total{result="cache"}`, `retraced_federation_requests_total{result="miss"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
