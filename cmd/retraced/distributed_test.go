package main

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/elfnote"
)

// s3Env points the AWS_* variables (which child processes inherit) at s3.
func s3Env(t *testing.T, s3 *servers.S3Server) {
	t.Setenv("AWS_ENDPOINT_URL", s3.Endpoint)
	t.Setenv("AWS_REGION", s3.Region)
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
}

// gatedRepo serves the fixture repository root behind a gate that, once
// armed, holds every package download until opened.
type gatedRepo struct {
	URL   string
	armed atomic.Bool
	held  chan string
	open  func()
	gate  chan struct{}
}

func newGatedRepo(t *testing.T, root string) *gatedRepo {
	repo := fixtures.NewServer(fixtures.FS(root))
	g := &gatedRepo{held: make(chan string, 1), gate: make(chan struct{})}
	var once sync.Once
	g.open = func() { once.Do(func() { close(g.gate) }) }
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if g.armed.Load() && strings.HasSuffix(r.URL.Path, ".rpm") {
			select {
			case g.held <- r.URL.Path:
			default:
			}
			select {
			case <-g.gate:
			case <-r.Context().Done():
				return
			}
		}
		repo.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(g.open)
	g.URL = srv.URL
	return g
}

// lookupAll runs `retraced lookup` of every fixture build-id and returns
// its sorted lines.
func lookupAll(t *testing.T, args ...string) string {
	t.Helper()
	seen := map[string]bool{}
	var ids []string
	for _, e := range fixtures.ELFFiles(t) {
		if !seen[e.BuildID] {
			seen[e.BuildID] = true
			ids = append(ids, e.BuildID)
		}
	}
	out, errOut, err := run(t, append(append(args, "lookup"), ids...)...)
	if err != nil {
		t.Fatalf("lookup: %v\n%s", err, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// TestMigrateToObjectStoreAndPostgresAndBack: `retraced migrate` copies a
// single-node data directory into S3 (versitygw) and PostgreSQL, where
// lookups and the debuginfod protocol answer as before, and back into a
// fresh data directory, which answers the same again; a second migrate
// into the now full index is refused.
func TestMigrateToObjectStoreAndPostgresAndBack(t *testing.T) {
	pg := servers.StartPostgres(t)
	s3 := servers.S3(t)
	s3Env(t, s3)
	local := t.TempDir()
	url := fixtures.NewServer(fixtures.FS("repo")).Start(t)
	if _, _, err := run(t, "--data", local, "mirror", "add", "fx", url); err != nil {
		t.Fatal(err)
	}
	if _, _, err := run(t, "--data", local, "mirror", "sync", "--compact"); err != nil {
		t.Fatal(err)
	}
	// Compaction stored some files as deltas on their older versions:
	// migrate copies them as they are, bases included.
	out, _, err := run(t, "--data", local, "mirror", "list", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 {
		t.Fatalf("mirror list --json: %v\n%s", err, out)
	}
	if d, _ := list[0]["bytes_delta"].(float64); d == 0 {
		t.Errorf("no deltas after compaction: the test does not cover them (%v)", list[0])
	}
	want := lookupAll(t, "--data", local)
	localBlobs := countFiles(t, filepath.Join(local, "blobs", "sha256"))

	shared := writeConfig(t, fmt.Sprintf("data = %q\n[storage]\nblobs = \"s3://retraced/m\"\nindex = %q", t.TempDir(), pg.DSN))
	out, errOut, err := run(t, "--data", local, "migrate", "--to", shared)
	if err != nil {
		t.Fatalf("migrate to S3 + PostgreSQL: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, fmt.Sprintf("blobs: %d copied", localBlobs)) {
		t.Errorf("migrate said %q; want %d blobs copied", out, localBlobs)
	}
	if n := countFiles(t, filepath.Join(s3.Dir, "retraced", "m", "sha256")); n != localBlobs {
		t.Errorf("%d objects in the store, want %d", n, localBlobs)
	}
	// Deltas went whole: the store's pools hold whole blobs only.
	filepath.WalkDir(filepath.Join(s3.Dir, "retraced", "m", "sha256"), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if b, _ := os.ReadFile(p); bytes.HasPrefix(b, []byte("RTDELTA")) {
				t.Errorf("object %s is a delta", e.Name())
			}
		}
		return nil
	})
	if got := lookupAll(t, "--config", shared); got != want {
		t.Fatalf("lookups from S3 + PostgreSQL:\n%s\nwant:\n%s", got, want)
	}
	// The debuginfod protocol, served from the migrated storage.
	cfg, err := loadConfig(shared)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Listen = "127.0.0.1:0"
	cfg.Data = t.TempDir() // a second node: the CLI keeps the first's data directory
	srvURL := startServe(t, cfg)
	for _, e := range fixtures.ELFFiles(t) {
		code, _, body := httpDo(t, http.MethodGet, srvURL+"/buildid/"+e.BuildID+"/"+e.Kind, nil, nil)
		id, err := elfnote.BuildID(bytes.NewReader([]byte(body)))
		if code != http.StatusOK || err != nil || hex.EncodeToString(id) != e.BuildID {
			t.Fatalf("GET %s %s from migrated storage: %d, build-id %x (%v)", e.BuildID, e.Kind, code, id, err)
		}
	}

	if _, _, err := run(t, "--data", local, "migrate", "--to", shared); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("a second migrate into the full index: %v, want refused as not empty", err)
	}
	back := writeConfig(t, fmt.Sprintf("data = %q", t.TempDir()))
	if _, errOut, err := run(t, "--config", shared, "migrate", "--to", back); err != nil {
		t.Fatalf("migrate back: %v\n%s", err, errOut)
	}
	if got := lookupAll(t, "--config", back); got != want {
		t.Fatalf("lookups after migrating back:\n%s\nwant:\n%s", got, want)
	}
	backCfg, _ := loadConfig(back)
	if n := countFiles(t, filepath.Join(backCfg.Data, "blobs", "sha256")); n != localBlobs {
		t.Errorf("%d blobs migrated back, want %d", n, localBlobs)
	}
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// nodeProcess is `retraced serve` in a process of its own (this test
// binary, as TestHelperCLI), so that a test can kill it with -9.
type nodeProcess struct {
	cmd *exec.Cmd
	url string
	out bytes.Buffer
}

func startNodeProcess(t *testing.T, args ...string) *nodeProcess {
	t.Helper()
	data := ""
	for i, a := range args {
		if a == "--data" {
			data = args[i+1]
		}
	}
	n := &nodeProcess{cmd: exec.Command(os.Args[0], "-test.run=^TestHelperCLI$")}
	n.cmd.Env = append(os.Environ(), "RETRACED_HELPER_ARGS="+strings.Join(append(args, "serve", "--listen", "127.0.0.1:0"), "\x1f"))
	n.cmd.Stdout, n.cmd.Stderr = &n.out, &n.out
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { n.cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		n.cmd.Process.Kill()
		<-exited
	})
	pollUntil(t, 60*time.Second, "node process answers /healthz", func() bool {
		var info serverInfo
		if b, err := os.ReadFile(filepath.Join(data, serverFile)); err == nil && json.Unmarshal(b, &info) == nil {
			if code, _, _ := httpDo(t, http.MethodGet, info.URL+"/healthz", nil, nil); code == http.StatusOK {
				n.url = info.URL
				return true
			}
		}
		select {
		case <-exited:
			t.Fatalf("node process exited: %s", n.out.String())
		default:
		}
		return false
	})
	return n
}

// nodeConfig writes node's config for storage shared in PostgreSQL and S3.
func nodeConfig(t *testing.T, dsn, node string) string {
	return writeConfig(t, fmt.Sprintf("admin_token = \"s3cret\"\n[storage]\nblobs = \"s3://retraced/m\"\nindex = %q\nnode = %q", dsn, node))
}

// TestTwoNodes: two serve processes on one PostgreSQL index and one S3
// store. While node B syncs a source (its downloads held), node A answers
// 409 to a sync of it and its status page says B runs it; both serve
// lookups. B is killed with -9 mid-sync: its lease passes to A, whose
// sync lands every package, and every file the index names downloads
// from A with its build-id.
func TestTwoNodes(t *testing.T) {
	pg := servers.StartPostgres(t)
	s3 := servers.S3(t)
	s3Env(t, s3)
	repo := newGatedRepo(t, "repo")
	confA, confB := nodeConfig(t, pg.DSN, "node-a"), nodeConfig(t, pg.DSN, "node-b")
	dataA, dataB := t.TempDir(), t.TempDir()
	if _, _, err := run(t, "--data", dataA, "--config", confA, "mirror", "add", "up", repo.URL, "--kind", "yum"); err != nil {
		t.Fatal(err)
	}
	repo.armed.Store(true)
	b := startNodeProcess(t, "--data", dataB, "--config", confB)
	select {
	case p := <-repo.held:
		t.Logf("node B is downloading %s, held", p)
	case <-time.After(60 * time.Second):
		t.Fatalf("node B never asked for a package\n%s", b.out.String())
	}
	a := serveCLI(t, dataA, "--config", confA)
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	syncURL := a.url + "/api/v1/mirrors/up/sync"
	if code, _, body := httpDo(t, http.MethodPost, syncURL, auth, nil); code != http.StatusConflict || !strings.Contains(body, "another node") {
		t.Fatalf("POST sync on A while B syncs: %d %s, want 409 saying another node holds it", code, body)
	}
	pollUntil(t, 30*time.Second, "A's status page shows B running the sync", func() bool {
		_, _, page := httpDo(t, http.MethodGet, a.url+"/", nil, nil)
		return strings.Contains(page, `<tr data-lease="sync/up"><td>sync/up</td><td>node-b</td>`)
	})
	for _, url := range []string{a.url, b.url} {
		if code, _, _ := httpDo(t, http.MethodGet, url+"/api/v1/mirrors", nil, nil); code != http.StatusOK {
			t.Fatalf("%s/api/v1/mirrors: %d", url, code)
		}
	}

	if err := b.cmd.Process.Kill(); err != nil { // -9, mid-sync
		t.Fatal(err)
	}
	repo.open()
	pollUntil(t, 60*time.Second, "A takes over the sync B held", func() bool {
		code, _, body := httpDo(t, http.MethodPost, syncURL, auth, nil)
		if code != http.StatusAccepted && code != http.StatusConflict {
			t.Fatalf("POST sync after B died: %d %s", code, body)
		}
		return code == http.StatusAccepted
	})
	want := len(fixtures.Packages(t))
	pollUntil(t, 120*time.Second, "A's sync lands every package", func() bool {
		v := mirrorView(t, a.url, "up")
		return v != nil && v["versions"] == float64(want) && v["last_result"] != nil && strings.HasPrefix(v["last_result"].(string), "ok")
	})
	for _, e := range fixtures.ELFFiles(t) {
		code, _, body := httpDo(t, http.MethodGet, a.url+"/buildid/"+e.BuildID+"/"+e.Kind, nil, nil)
		id, err := elfnote.BuildID(bytes.NewReader([]byte(body)))
		if code != http.StatusOK || err != nil || hex.EncodeToString(id) != e.BuildID {
			t.Fatalf("GET %s %s from A: %d, build-id %x (%v)", e.BuildID, e.Kind, code, id, err)
		}
	}
	checkBlobsPresent(t, pg.DSN, func(d string) bool {
		_, err := os.Stat(filepath.Join(s3.Dir, "retraced", "m", "sha256", d[:2], d))
		return err == nil
	})
}

// checkBlobsPresent reads the shared index as one more node and checks
// that every blob a package names is stored.
func checkBlobsPresent(t *testing.T, dsn string, stored func(digest string) bool) {
	t.Helper()
	idx, err := index.OpenPostgres(context.Background(), dsn, index.Options{Node: "checker"})
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	files := 0
	err = idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if f.Blob.IsZero() {
				continue
			}
			files++
			if !stored(f.Blob.String()) {
				return fmt.Errorf("%s: %s names blob %s, which is not stored", p.NEVRA, f.Path, f.Blob)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files == 0 {
		t.Fatal("the index names no blob")
	}
}

// TestPostgresRestartMidSync: PostgreSQL stops (as a crash would) while
// a sync's downloads are held; the sync ends without indexing anything
// half, lookups fail while the database is down and come back with it,
// and the next sync lands every package with every blob it names.
func TestPostgresRestartMidSync(t *testing.T) {
	pg := servers.StartPostgres(t)
	repo := newGatedRepo(t, "repo")
	conf := writeConfig(t, fmt.Sprintf("admin_token = \"s3cret\"\n[storage]\nindex = %q", pg.DSN))
	data := t.TempDir()
	if _, _, err := run(t, "--data", data, "--config", conf, "mirror", "add", "up", repo.URL, "--kind", "yum"); err != nil {
		t.Fatal(err)
	}
	repo.armed.Store(true)
	s := serveCLI(t, data, "--config", conf)
	select {
	case <-repo.held:
	case <-time.After(60 * time.Second):
		t.Fatal("the sync never asked for a package")
	}
	pg.Stop()
	repo.open()
	id := fixtures.ELFFiles(t)[0].BuildID
	if code, _, _ := httpDo(t, http.MethodGet, s.url+"/buildid/"+id+"/executable", nil, nil); code == http.StatusOK {
		t.Error("a lookup answered 200 with the index down")
	}
	time.Sleep(3 * time.Second) // the held sync runs on against the stopped database
	pg.Start()
	auth := map[string]string{"Authorization": "Bearer s3cret"}
	var last string
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("last answer to POST sync: %s", last)
		}
	})
	pollUntil(t, 60*time.Second, "a new sync is accepted once PostgreSQL is back", func() bool {
		code, _, body := httpDo(t, http.MethodPost, s.url+"/api/v1/mirrors/up/sync", auth, nil)
		last = fmt.Sprint(code, " ", body)
		return code == http.StatusAccepted
	})
	want := len(fixtures.Packages(t))
	pollUntil(t, 120*time.Second, "the sync after the restart lands every package", func() bool {
		v := mirrorView(t, s.url, "up")
		return v != nil && v["versions"] == float64(want) && v["last_result"] != nil && strings.HasPrefix(v["last_result"].(string), "ok")
	})
	code, _, body := httpDo(t, http.MethodGet, s.url+"/buildid/"+id+"/"+fixtures.ELFFiles(t)[0].Kind, nil, nil)
	if code != http.StatusOK || len(body) == 0 {
		t.Fatalf("lookup after the restart: %d", code)
	}
	checkBlobsPresent(t, pg.DSN, func(d string) bool {
		_, err := os.Stat(filepath.Join(data, "blobs", "sha256", d[:2], d))
		return err == nil
	})
}
