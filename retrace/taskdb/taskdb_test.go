package taskdb

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/index/blob/s3blob"
	"github.com/retraced/retraced/retrace"
)

// blocking is a Retracer that, while hold is set, waits for its context
// to end, and otherwise returns a backtrace at once.
type blocking struct {
	hold    atomic.Bool
	started chan string
	gate    chan struct{} // closing it lets held retraces go on
}

func (b *blocking) Retrace(ctx context.Context, crashDir string, log io.Writer) (retrace.Result, error) {
	core, err := os.ReadFile(filepath.Join(crashDir, "coredump"))
	if err != nil {
		return retrace.Result{}, err
	}
	io.WriteString(log, "retracing\n")
	if b.hold.Load() {
		b.started <- crashDir
		select {
		case <-ctx.Done():
			return retrace.Result{}, ctx.Err()
		case <-b.gate:
		}
	}
	return retrace.Result{Backtrace: "#0 main () core " + string(core) + "\n"}, nil
}

// node is one server on the shared store.
type node struct {
	url   string
	srv   *retrace.Server
	store *Store
	r     *blocking
	now   *atomic.Int64
}

func startNode(t *testing.T, dsn string, obj Objects, name string, space ...*diskspace.Policy) *node {
	t.Helper()
	dir := t.TempDir()
	st, err := Open(context.Background(), dsn, obj, Options{Node: name, Dir: filepath.Join(dir, "work"), Beat: 200 * time.Millisecond, Stale: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	n := &node{store: st, r: &blocking{started: make(chan string, 10), gate: make(chan struct{})}, now: new(atomic.Int64)}
	n.now.Store(time.Now().UnixNano())
	cfg := retrace.Config{MinFreeSpace: -1, Now: func() time.Time { return time.Unix(0, n.now.Load()) }}
	if len(space) > 0 {
		cfg.Space = space[0]
	}
	srv, err := retrace.NewShared(filepath.Join(dir, "spool"), st, n.r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	n.srv = srv
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	srv.Register(e)
	hs := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { srv.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		hs.Close()
		st.Close()
	})
	n.url = hs.URL
	return n
}

func tarball(t *testing.T, core string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "coredump", Mode: 0o644, Size: int64(len(core)), Typeflag: tar.TypeReg}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte(core))
	tw.Close()
	return buf.Bytes()
}

func do(t *testing.T, method, url string, h map[string]string, body []byte) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func create(t *testing.T, url, core, key string) (id, pw string) {
	t.Helper()
	h := map[string]string{"Content-Type": retrace.FormatTar}
	if key != "" {
		h[retrace.HeaderTaskKey] = key
	}
	code, hdr, body := do(t, http.MethodPost, url+"/create", h, tarball(t, core))
	if code != http.StatusCreated {
		t.Fatalf("create: %d %s", code, body)
	}
	return hdr.Get(retrace.HeaderTaskID), hdr.Get(retrace.HeaderTaskPassword)
}

func waitFor(t *testing.T, what string, f func() bool, state ...func() string) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if f() {
			return
		}
	}
	for _, s := range state {
		what += " (" + s() + ")"
	}
	t.Fatalf("timed out waiting for %s", what)
}

func objects(t *testing.T, s3 *servers.S3Server, id string) int {
	n := 0
	filepath.WalkDir(filepath.Join(s3.Dir, "tasks", "p", "tasks", id), func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			n++
		}
		return nil
	})
	return n
}

// sharedStorage starts the PostgreSQL cluster and the S3 bucket the
// test's nodes share.
func sharedStorage(t *testing.T) (*servers.PostgresServer, *servers.S3Server, *s3blob.Store) {
	t.Helper()
	pg := servers.StartPostgres(t)
	s3 := servers.S3(t)
	obj, err := s3blob.Open(s3blob.Config{Bucket: "tasks", Prefix: "p/", Endpoint: s3.Endpoint, Region: s3.Region, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if err := obj.EnsureBucket(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pg, s3, obj
}

// TestSharedTasks: two servers on one PostgreSQL and one S3 store. A keyed
// create repeated on the other node answers with the same task; a task
// deleted on one node while the other retraces it stops there and
// leaves no row and no object; finished tasks expire from any node, with
// their objects; a create's leftovers, its node dead, are swept.
func TestSharedTasks(t *testing.T) {
	pg, s3, obj := sharedStorage(t)
	a := startNode(t, pg.DSN, obj, "a")
	b := startNode(t, pg.DSN, obj, "b")

	// X-Task-Key across nodes.
	key := strings.Repeat("k", retrace.PasswordLength)
	id1, pw := create(t, a.url, "one", key)
	id2, _ := create(t, b.url, "two", key)
	if id1 != id2 || pw != key {
		t.Fatalf("keyed create on A made %s, repeated on B %s; want the same task", id1, id2)
	}
	hdr := map[string]string{retrace.HeaderTaskPassword: pw}
	waitFor(t, "the keyed task finished", func() bool {
		_, h, _ := do(t, http.MethodGet, b.url+"/"+id1, hdr, nil)
		return h.Get(retrace.HeaderTaskStatus) == string(retrace.StatusSuccess)
	})
	if n := objects(t, s3, id1); n != 3 { // crash/coredump, log, backtrace
		t.Fatalf("%d objects of the finished task, want 3", n)
	}
	for _, n := range []*node{a, b} {
		if code, _, bt := do(t, http.MethodGet, n.url+"/"+id1+"/backtrace", hdr, nil); code != http.StatusOK || !strings.Contains(bt, "core one") {
			t.Errorf("backtrace from %s: %d %q", n.url, code, bt)
		}
		if code, _, _ := do(t, http.MethodGet, n.url+"/"+id1, map[string]string{retrace.HeaderTaskPassword: strings.Repeat("x", 32)}, nil); code != http.StatusForbidden {
			t.Errorf("wrong password: %d", code)
		}
	}

	// Deleted on one node while the other runs it.
	a.r.hold.Store(true)
	b.r.hold.Store(true)
	id, pw := create(t, a.url, "held", "")
	var runner, other *node
	select {
	case <-a.r.started:
		runner, other = a, b
	case <-b.r.started:
		runner, other = b, a
	case <-time.After(30 * time.Second):
		t.Fatal("no node started the task")
	}
	if code, _, body := do(t, http.MethodDelete, other.url+"/"+id, map[string]string{retrace.HeaderTaskPassword: pw}, nil); code != http.StatusOK {
		t.Fatalf("delete on the other node: %d %s", code, body)
	}
	waitFor(t, "the running node let go of the deleted task", func() bool { return runner.srv.Stats().Running == 0 })
	if code, _, _ := do(t, http.MethodGet, runner.url+"/"+id, map[string]string{retrace.HeaderTaskPassword: pw}, nil); code != http.StatusNotFound {
		t.Errorf("deleted task on the node that ran it: %d, want 404", code)
	}
	if n := objects(t, s3, id); n != 0 {
		t.Errorf("%d objects of the deleted task left", n)
	}
	a.r.hold.Store(false)
	b.r.hold.Store(false)

	// Expiry, from the node that did not run it, by its clock.
	b.now.Add(int64(8 * 24 * time.Hour))
	if n, err := b.srv.Expire(); err != nil || n != 1 {
		t.Fatalf("expire on B: %d, %v; want the one finished task", n, err)
	}
	if code, _, _ := do(t, http.MethodGet, a.url+"/"+id1, hdr, nil); code != http.StatusNotFound {
		t.Errorf("expired task on A: %d, want 404", code)
	}
	if n := objects(t, s3, id1); n != 0 {
		t.Errorf("%d objects of the expired task left", n)
	}

	// A create cut off: its row UPLOADING, its node gone, an object up.
	ctx := context.Background()
	// (The objects go first: a sweep may come between the two.)
	if err := obj.PutObject(ctx, crashObject("123456789", "coredump"), strings.NewReader("x"), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.store.pool.Exec(ctx, `INSERT INTO retraced_tasks (id, status, created, state, password, node, node_id)
		VALUES ('123456789', 'UPLOADING', now(), '{}', '', 'gone', 'deadbeef')`); err != nil {
		t.Fatal(err)
	}
	var row string
	waitFor(t, "the sweep removed the cut-off create", func() bool {
		row = ""
		a.store.pool.QueryRow(ctx, `SELECT status || ' ' || (now() - heartbeat)::text FROM retraced_tasks WHERE id = '123456789'`).Scan(&row)
		n := objects(t, s3, "123456789")
		if row != "" || n != 0 {
			row = fmt.Sprintf("row %q, %d objects", row, n)
			return false
		}
		return true
	}, func() string { return row })

	// Tasks whose node died mid-retrace: one with attempts left runs
	// again and succeeds, one at MaxAttempts fails, its log saying why.
	for _, r := range []struct {
		id       string
		attempts int
	}{{"223456789", 1}, {"323456789", retrace.MaxAttempts}} {
		if err := obj.PutObject(ctx, crashObject(r.id, "coredump"), strings.NewReader("dead"), 4); err != nil {
			t.Fatal(err)
		}
		if err := obj.PutObject(ctx, fileObject(r.id, retrace.LogFile), strings.NewReader("earlier\n"), 8); err != nil {
			t.Fatal(err)
		}
		st, _ := json.Marshal(retrace.State{Status: retrace.StatusRunning, Created: time.Now(), Started: time.Now(), Attempts: r.attempts})
		if _, err := a.store.pool.Exec(ctx, `INSERT INTO retraced_tasks (id, status, created, state, password, files, node, node_id, claim)
			VALUES ($1, 'RUNNING', now(), $2, '', '{coredump}', 'gone', 'deadbeef', 7)`, r.id, st); err != nil {
			t.Fatal(err)
		}
	}
	readLog := func(id string) string {
		rc, _, err := b.store.Open(ctx, id, retrace.LogFile)
		if err != nil {
			return err.Error()
		}
		defer rc.Close()
		l, _ := io.ReadAll(rc)
		return string(l)
	}
	var again, doomed retrace.State
	waitFor(t, "the dead node's tasks finished", func() bool {
		again, _, _ = b.store.Get(ctx, "223456789")
		doomed, _, _ = b.store.Get(ctx, "323456789")
		return again.Status.Finished() && doomed.Status.Finished()
	})
	if again.Status != retrace.StatusSuccess || again.Attempts != 2 {
		t.Errorf("task with attempts left: %+v, want success at attempt 2", again)
	}
	if l := readLog("223456789"); !strings.HasPrefix(l, "earlier\n") || !strings.Contains(l, "stopped during the retrace") || !strings.Contains(l, "retrace started (attempt 2)") {
		t.Errorf("log of the task run again:\n%s", l)
	}
	if doomed.Status != retrace.StatusFailure || !strings.Contains(doomed.Error, "stopped during this task's retrace 3 times") {
		t.Errorf("task at MaxAttempts: %+v, want failed", doomed)
	}
	if l := readLog("323456789"); !strings.HasPrefix(l, "earlier\n") || !strings.HasSuffix(l, "giving up\n") {
		t.Errorf("log of the task given up:\n%s", l)
	}
}

// TestSharedTasksPostgresRestart: PostgreSQL restarts while a node
// retraces a task; once it is back, the task finishes (on that node or,
// its claim taken for dead, on the other), new tasks are created and
// claimed, and two creates with one key make one task, leaving nothing of
// the other.
func TestSharedTasksPostgresRestart(t *testing.T) {
	pg, s3, obj := sharedStorage(t)
	a := startNode(t, pg.DSN, obj, "a")
	b := startNode(t, pg.DSN, obj, "b")
	a.r.hold.Store(true)
	b.r.hold.Store(true)
	id, pw := create(t, a.url, "restart", "")
	runner := ""
	select {
	case <-a.r.started:
		runner = "a"
	case <-b.r.started:
		runner = "b"
	case <-time.After(30 * time.Second):
		t.Fatal("no node started the task")
	}
	pg.Stop()
	time.Sleep(time.Second)
	pg.Start()
	a.r.hold.Store(false)
	b.r.hold.Store(false)
	close(a.r.gate)
	close(b.r.gate)
	hdr := map[string]string{retrace.HeaderTaskPassword: pw}
	status := func(n *node, id string, h map[string]string) string {
		_, hd, _ := do(t, http.MethodGet, n.url+"/"+id, h, nil)
		return hd.Get(retrace.HeaderTaskStatus)
	}
	waitFor(t, "the task running at the restart finished", func() bool { return status(a, id, hdr) != string(retrace.StatusPending) })
	if st := status(b, id, hdr); st != string(retrace.StatusSuccess) {
		t.Fatalf("task running at the restart: %s", st)
	}
	// Its node lived through the restart: nothing was taken from it.
	var node string
	var attempts int
	if err := a.store.pool.QueryRow(context.Background(), `SELECT node, (state->>'attempts')::int FROM retraced_tasks WHERE id = $1`, id).Scan(&node, &attempts); err != nil {
		t.Fatal(err)
	}
	if node != runner || attempts != 1 {
		t.Errorf("task running at the restart finished on %s after %d attempts, want on %s after 1", node, attempts, runner)
	}
	id2, pw2 := create(t, b.url, "after", "")
	waitFor(t, "a task created after the restart finished", func() bool {
		return status(a, id2, map[string]string{retrace.HeaderTaskPassword: pw2}) == string(retrace.StatusSuccess)
	})

	// Two creates with one key, both past the key lookup: the store's
	// unique key makes the second a duplicate of the first.
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "coredump"), []byte("keyed"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	first, err := a.store.Create(ctx, dir, []byte("pw"), "kh", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.store.Create(ctx, dir, []byte("pw"), "kh", time.Now())
	var dup *retrace.DuplicateError
	if !errors.As(err, &dup) || dup.ID != first {
		t.Fatalf("second create with the key: %v, want a duplicate of %s", err, first)
	}
	var rows int
	if err := a.store.pool.QueryRow(ctx, `SELECT count(*) FROM retraced_tasks WHERE id NOT IN ($1, $2, $3)`, id, id2, first).Scan(&rows); err != nil || rows != 0 {
		t.Errorf("%d rows besides the tasks made (%v)", rows, err)
	}
	ents, _ := os.ReadDir(filepath.Join(s3.Dir, "tasks", "p", "tasks"))
	if len(ents) != 3 {
		t.Errorf("objects of %d tasks, want 3", len(ents))
	}
}

// TestSharedTasksFullNode: a node whose disk is below its free-space
// minimum claims no task; the other runs them all.
func TestSharedTasksFullNode(t *testing.T) {
	pg, _, obj := sharedStorage(t)
	a := startNode(t, pg.DSN, obj, "a", &diskspace.Policy{Dir: t.TempDir(), MinPercent: 100})
	a.r.hold.Store(true) // a task A took would hang there
	b := startNode(t, pg.DSN, obj, "b")
	var tasks [][2]string
	for range 4 {
		id, pw := create(t, b.url, "x", "")
		tasks = append(tasks, [2]string{id, pw})
	}
	for _, tk := range tasks {
		waitFor(t, "task "+tk[0]+" finished", func() bool {
			_, h, _ := do(t, http.MethodGet, a.url+"/"+tk[0], map[string]string{retrace.HeaderTaskPassword: tk[1]}, nil)
			return h.Get(retrace.HeaderTaskStatus) == string(retrace.StatusSuccess)
		})
	}
	var onA int
	if err := a.store.pool.QueryRow(context.Background(), `SELECT count(*) FROM retraced_tasks WHERE node = 'a'`).Scan(&onA); err != nil || onA != 0 {
		t.Errorf("%d tasks ran on the full node (%v)", onA, err)
	}
	// Its uploads are refused as ever: 507.
	code, _, _ := do(t, http.MethodPost, a.url+"/create", map[string]string{"Content-Type": retrace.FormatTar}, tarball(t, "y"))
	if code != http.StatusInsufficientStorage {
		t.Errorf("create on the full node: %d, want 507", code)
	}
}
