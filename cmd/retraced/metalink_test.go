package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/retraced/retraced/fixtures"
)

// metalinkRepos serves two fixture repositories (repo-v1 and repo-v2, so
// that neither source links the other's packages) each from two mirrors,
// the first by preference answering 503 for every package, and a metalink
// of repo-v1's and a mirror list of repo-v2's; it returns the broken
// mirrors' and the documents' URLs.
func metalinkRepos(t *testing.T) (broken1, broken2, metalink, mirrorlist string) {
	t.Helper()
	mirrors := func(repo string) (broken, good string) {
		b := fixtures.NewServer(fixtures.FS(repo))
		broken = b.Start(t)
		b.Inject("*.rpm", fixtures.Status(http.StatusServiceUnavailable))
		return broken, fixtures.NewServer(fixtures.FS(repo)).Start(t)
	}
	broken1, good1 := mirrors("repo-v1")
	broken2, good2 := mirrors("repo-v2")
	docs := fixtures.NewServer(fstest.MapFS{
		"metalink": {Data: fixtures.Metalink(fixtures.Repomd(t, "repo-v1"), nil,
			fixtures.MetalinkMirror{Base: good1, Preference: 50}, fixtures.MetalinkMirror{Base: broken1, Preference: 100})},
		"mirrorlist": {Data: []byte("# fixture\n" + broken2 + "/\n" + good2 + "/\n")},
		"garbage":    {Data: []byte("<html><body>502 Bad Gateway</body></html>")},
	}).Start(t)
	return broken1, broken2, docs + "/metalink", docs + "/mirrorlist"
}

// placeholder adds a source (an empty directory) to the data directory so
// that serve does not add, and sync, its bundled default, whose packages
// the sources under test would then link instead of fetching.
func placeholder(t *testing.T, data string) {
	t.Helper()
	if _, _, err := run(t, "--data", data, "mirror", "add", "placeholder", t.TempDir(), "--kind", "yum", "--schedule", "@yearly"); err != nil {
		t.Fatal(err)
	}
}

// TestMirrorAddMetalink: `mirror add NAME --metalink URL` and
// `--mirrorlist URL`, then `mirror sync` and `mirror list`, locally and
// through serve (the remote backend, POST /api/v1/mirrors and the sync's
// answer): every package lands from the good mirror, and the one that
// failed is reported with why, the same both ways.
func TestMirrorAddMetalink(t *testing.T) {
	broken1, broken2, metalink, mirrorlist := metalinkRepos(t)
	took := regexp.MustCompile(` in [0-9.]+[µm]?s\n`)
	landed := regexp.MustCompile(`: (\d+) listed, (\d+) new, 0 linked, 0 failed, `)
	session := func(t *testing.T, data string) []string {
		var outs []string
		for _, args := range [][]string{
			{"mirror", "add", "ml", "--metalink", metalink},
			{"mirror", "add", "mlist", "--mirrorlist", mirrorlist},
			{"mirror", "sync", "ml"},
			{"mirror", "sync", "mlist"},
		} {
			out, _, err := run(t, append([]string{"--data", data}, args...)...)
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(args, " "), err)
			}
			outs = append(outs, took.ReplaceAllString(out, "\n"))
		}
		if !strings.HasPrefix(outs[0], "added ml (yum) metalink "+metalink+", ") || !strings.HasPrefix(outs[1], "added mlist (yum) mirrorlist "+mirrorlist+", ") {
			t.Fatalf("mirror add said %q, %q", outs[0], outs[1])
		}
		for i, broken := range []string{broken1, broken2} {
			out := outs[2+i]
			n := landed.FindStringSubmatch(out)
			if n == nil || n[1] != n[2] || n[1] == "0" || !strings.Contains(out, "from mirror "+broken+"/") || !strings.Contains(out, "(mirrors failed: "+broken+"/)") {
				t.Fatalf("sync said %q", out)
			}
		}
		out, _, err := run(t, "--data", data, "mirror", "list", "--json")
		if err != nil {
			t.Fatal(err)
		}
		var views []struct {
			Name, URL, Metalink, Mirrorlist, Mirror string
			Versions                                int
			MirrorsFailed                           []struct{ URL, Reason string } `json:"mirrors_failed"`
		}
		// Sorted by name: ml, mlist, then serve's placeholder.
		if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) < 2 || views[0].Name != "ml" || views[1].Name != "mlist" {
			t.Fatalf("mirror list --json: %v\n%s", err, out)
		}
		for i, broken := range []string{broken1, broken2} {
			v := views[i]
			if v.URL != "" || v.Mirror != broken+"/" || v.Versions == 0 ||
				len(v.MirrorsFailed) != 1 || v.MirrorsFailed[0].URL != broken+"/" || !strings.Contains(v.MirrorsFailed[0].Reason, "503") {
				t.Errorf("%s: %+v", v.Name, v)
			}
		}
		if views[0].Metalink != metalink || views[1].Mirrorlist != mirrorlist {
			t.Errorf("list: %+v", views)
		}
		out, _, err = run(t, "--data", data, "mirror", "list")
		if err != nil || !strings.Contains(out, "metalink "+metalink) || !strings.Contains(out, "mirrorlist "+mirrorlist) {
			t.Fatalf("mirror list: %v\n%s", err, out)
		}
		return outs
	}
	local := session(t, t.TempDir())
	cfg := testConfig(t)
	cfg.APISources = "private"
	placeholder(t, cfg.Data)
	startServe(t, cfg)
	remote := session(t, cfg.Data)
	if strings.Join(local[2:], "") != strings.Join(remote[2:], "") {
		t.Errorf("syncs said locally:\n%s\nthrough serve:\n%s", strings.Join(local[2:], ""), strings.Join(remote[2:], ""))
	}

	for _, args := range [][]string{
		{"mirror", "add", "none"},
		{"mirror", "add", "both", broken1, "--metalink", metalink},
		{"mirror", "add", "tree", "--metalink", metalink, "--kind", "tree"},
	} {
		if _, _, err := run(t, append([]string{"--data", t.TempDir()}, args...)...); err == nil {
			t.Errorf("%s: no error", strings.Join(args, " "))
		}
	}
}

// TestAPIMetalink: POST /api/v1/mirrors with a metalink: 201 and the
// source; the sync's answer and the status page name the mirror used and
// the one that failed; a malformed metalink is 400 and adds nothing; with
// api_sources = "public", a metalink on loopback is 400.
func TestAPIMetalink(t *testing.T) {
	broken, _, metalink, _ := metalinkRepos(t)
	post := func(t *testing.T, url string, body any) (int, []byte) {
		b, _ := json.Marshal(body)
		resp, err := http.Post(url, "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	t.Run("private", func(t *testing.T) {
		cfg := testConfig(t)
		cfg.APISources = "private"
		placeholder(t, cfg.Data)
		url := startServe(t, cfg)
		code, body := post(t, url+"/api/v1/mirrors", map[string]string{"name": "ml", "metalink": metalink})
		if code != http.StatusCreated || !strings.Contains(string(body), `"metalink":"`+metalink+`"`) {
			t.Fatalf("add: %d %s", code, body)
		}
		code, body = post(t, url+"/api/v1/mirrors/ml/sync?wait=true", nil)
		var res struct {
			OK            bool
			Mirror        string
			MirrorsFailed []struct{ URL, Reason string } `json:"mirrors_failed"`
		}
		if err := json.Unmarshal(body, &res); code != http.StatusOK || err != nil || !res.OK || res.Mirror != broken+"/" ||
			len(res.MirrorsFailed) != 1 || res.MirrorsFailed[0].URL != broken+"/" {
			t.Fatalf("sync: %d %s", code, body)
		}
		resp, err := http.Get(url + "/")
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, attr := range []string{`data-mirror="` + broken + `/"`, `data-mirror-failed="` + broken + `/"`, metalink} {
			if !strings.Contains(string(page), attr) {
				t.Errorf("the status page does not show %s", attr)
			}
		}
		garbage := strings.TrimSuffix(metalink, "metalink") + "garbage"
		code, body = post(t, url+"/api/v1/mirrors", map[string]string{"name": "bad", "metalink": garbage})
		if code != http.StatusBadRequest || !strings.Contains(string(body), "metalink at byte 6: expected element type") {
			t.Fatalf("malformed metalink: %d %s", code, body)
		}
		var views []map[string]any
		getJSON(t, url+"/api/v1/mirrors", &views)
		if len(views) != 2 { // the placeholder and ml
			t.Fatalf("sources: %v", views)
		}
	})
	t.Run("public", func(t *testing.T) {
		url := startServe(t, testConfig(t))
		for _, req := range []map[string]string{{"name": "a", "metalink": metalink}, {"name": "b", "mirrorlist": metalink}} {
			code, body := post(t, url+"/api/v1/mirrors", req)
			if code != http.StatusBadRequest || !strings.Contains(string(body), "api_sources") {
				t.Errorf("%v: %d %s, want 400 naming api_sources", req, code, body)
			}
		}
	})
}
