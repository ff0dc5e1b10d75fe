package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/servers"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/blob/s3blob"
	"github.com/retraced/retraced/retrace/crashes"
)

// taskNodes reads, from the shared PostgreSQL, the status of each task
// and the node that ran (or runs) it.
func taskNodes(t *testing.T, dsn string) map[string][2]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	rows, err := c.Query(ctx, `SELECT id, status, node FROM retraced_tasks`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][2]string{}
	for rows.Next() {
		var id, status, node string
		if err := rows.Scan(&id, &status, &node); err != nil {
			t.Fatal(err)
		}
		out[id] = [2]string{status, node}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitCompacted waits until every blob in the object store at url is
// compacted: the syncing node compacts after the sync, replacing each
// object with a PUT, and versitygw's posix backend (unlike S3) lets a
// GET that comes during such a PUT read an empty object.
func waitCompacted(t *testing.T, url string) {
	t.Helper()
	c, err := s3blob.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	st, err := s3blob.Open(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pollUntil(t, 120*time.Second, "every blob compacted", func() bool {
		n, done := 0, 0
		err := st.Walk(ctx, func(d blob.Digest, _ int64, _ time.Time) error {
			n++
			if s, err := st.Stat(ctx, d); err == nil && s.Compacted {
				done++
			}
			return nil
		})
		return err == nil && n > 0 && done == n
	})
}

// slowGDB puts, first in PATH, a gdb that waits secs before it runs the
// real one, so that a test can catch a retrace with gdb running.
func slowGDB(t *testing.T, secs int) string {
	real := fixtures.Tool(t, "gdb")
	// Outside t.TempDir, whose parent only this user may enter: gdb runs
	// as nobody when the tests run as root.
	dir, err := os.MkdirTemp("", "slowgdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nsleep " + string(rune('0'+secs)) + "\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "gdb"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir + string(os.PathListSeparator) + os.Getenv("PATH")
}

// TestTwoNodesShareTasks: two serve processes on one PostgreSQL and one
// S3 store (versitygw) share the retrace tasks. Tasks created on node A
// run on either node (some on B), and every task's status, log and
// backtrace answer the same from both nodes. Then B is killed with -9
// while gdb runs for a task A created: A claims B's tasks again and
// finishes every task, each with its backtrace, the killed one's log
// saying that its node stopped.
func TestTwoNodesShareTasks(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	pg := servers.StartPostgres(t)
	s3 := servers.S3(t)
	s3Env(t, s3)
	confA, confB := nodeConfig(t, pg.DSN, "node-a"), nodeConfig(t, pg.DSN, "node-b")
	dataA, dataB := t.TempDir(), t.TempDir()
	path := os.Getenv("PATH")
	t.Setenv("PATH", slowGDB(t, 4)) // B's gdb takes 4 s more: a window to kill it in
	b := startNodeProcess(t, "--data", dataB, "--config", confB)
	t.Setenv("PATH", path)
	a := serveCLI(t, dataA, "--config", confA)
	waitSynced(t, a.url, "fixtures")
	waitCompacted(t, "s3://retraced/m")
	tarball := crashTarball(t, fixtures.CoreFile(t, "crashme-1.0.core.zst"),
		map[string]string{"executable": "/usr/bin/crashme", "package": "crashme-1.0-1"})

	// Created on A, run by either node.
	var first []retraceTask
	for range 6 {
		first = append(first, createTask(t, a.url, tarball))
	}
	for _, rt := range first {
		if st := rt.wait(t, 180*time.Second); st != "FINISHED_SUCCESS" {
			_, _, log := rt.get(t, "/log")
			t.Fatalf("task %s: %s\n%s", rt.id, st, log)
		}
	}
	nodes := taskNodes(t, pg.DSN)
	onB := 0
	for _, rt := range first {
		if nodes[rt.id][1] == "node-b" {
			onB++
		}
		// The same answers from both nodes.
		onA, onOther := rt, rt
		onOther.url = b.url
		for _, p := range []string{"", "/log", "/backtrace"} {
			codeA, stA, bodyA := onA.get(t, p)
			codeB, stB, bodyB := onOther.get(t, p)
			if codeA != http.StatusOK || codeA != codeB || stA != stB || bodyA != bodyB {
				t.Errorf("task %s%s: A %d %s, B %d %s; want 200 and the same from both", rt.id, p, codeA, stA, codeB, stB)
			}
			if p == "/backtrace" && !strings.Contains(bodyA, "crashme_dispatch") {
				t.Errorf("task %s: backtrace:\n%s", rt.id, bodyA)
			}
		}
	}
	if onB == 0 {
		t.Fatalf("no task created on A ran on B: %v", nodes)
	}
	t.Logf("%d of %d tasks created on A ran on B", onB, len(first))

	// B killed with -9 while its gdb runs.
	var second []retraceTask
	for range 6 {
		second = append(second, createTask(t, a.url, tarball))
	}
	var killed retraceTask
	pollUntil(t, 120*time.Second, "B running gdb for a task (its log read from A)", func() bool {
		nodes := taskNodes(t, pg.DSN)
		for _, rt := range second {
			if n := nodes[rt.id]; n[0] == "RUNNING" && n[1] == "node-b" {
				if _, _, log := rt.get(t, "/log"); strings.Contains(log, "gdb: running") && !strings.Contains(log, "gdb: exited") {
					killed = rt
					return true
				}
			}
		}
		return false
	})
	// A's status page says which node runs what.
	if _, _, page := httpDo(t, http.MethodGet, a.url+"/", nil, nil); !strings.Contains(page, killed.id) || !strings.Contains(page, "(on node-b)") {
		t.Errorf("A's status page does not show task %s running on node-b", killed.id)
	}
	if err := b.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed B while gdb ran for task %s", killed.id)
	for _, rt := range second {
		if st := rt.wait(t, 180*time.Second); st != "FINISHED_SUCCESS" {
			_, _, log := rt.get(t, "/log")
			t.Fatalf("task %s after B died: %s\n%s", rt.id, st, log)
		}
		if code, _, bt := rt.get(t, "/backtrace"); code != http.StatusOK || !strings.Contains(bt, "crashme_dispatch") {
			t.Errorf("task %s: backtrace %d:\n%s", rt.id, code, bt)
		}
	}
	if n := taskNodes(t, pg.DSN)[killed.id]; n[1] != "node-a" {
		t.Errorf("task %s, whose node was killed, finished on %q, want node-a", killed.id, n[1])
	}
	_, _, log := killed.get(t, "/log")
	if !strings.Contains(log, "stopped during the retrace") || !strings.Contains(log, "retrace started (attempt 2)") {
		t.Errorf("log of the task whose node was killed:\n%s", log)
	}
	// Each node's crash reports count the tasks it finished.
	finishedOnA := 0
	for _, n := range taskNodes(t, pg.DSN) {
		if n == [2]string{"FINISHED_SUCCESS", "node-a"} {
			finishedOnA++
		}
	}
	pollUntil(t, 10*time.Second, "A's crash reports count the tasks A finished", func() bool {
		var rep crashes.APIReport
		if code := getJSON(t, a.url+"/api/v1/crashes?window=24h", &rep); code != http.StatusOK {
			t.Fatalf("GET /api/v1/crashes: %d", code)
		}
		var n int64
		for _, r := range rep.Rows {
			n += r.Count
		}
		return n == int64(finishedOnA)
	})
	// gdb died with B (Pdeathsig): no orphan runs on.
	if out, _ := exec.Command("pgrep", "-f", filepath.Join(dataB, "sysroots")).Output(); len(out) > 0 {
		t.Errorf("processes of the killed node's retrace still run: %s", out)
	}
}
