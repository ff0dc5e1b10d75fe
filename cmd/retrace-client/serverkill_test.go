package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/retrace"
)

// TestHelperServer is a retrace task server (the coreRetracer, tasks in
// $RETRACE_SERVER_HELPER_DIR, listening on $RETRACE_SERVER_HELPER_ADDR)
// run as a subprocess, so that a test can kill -9 it.
func TestHelperServer(t *testing.T) {
	dir, addr := os.Getenv("RETRACE_SERVER_HELPER_DIR"), os.Getenv("RETRACE_SERVER_HELPER_ADDR")
	if dir == "" {
		t.Skip("a helper for the other tests")
	}
	s, err := retrace.New(dir, coreRetracer{}, retrace.Config{MinFreeSpace: -1, MaxPackedSize: 8, MaxUnpackedSize: 8})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gin.SetMode(gin.ReleaseMode)
	e := gin.New()
	s.Register(e)
	go s.Run(context.Background())
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Fprintln(os.Stderr, http.Serve(ln, e))
	os.Exit(1)
}

// TestWatchWithServerKilled: real programs' cores (gcore of live
// processes) come into the spool while the server is killed with -9 and
// restarted on the same task directory, twice; every core ends finished
// with its backtrace and the server made exactly one task for each.
func TestWatchWithServerKilled(t *testing.T) {
	gcore, err := exec.LookPath("gcore")
	if err != nil {
		t.Skip("gcore (gdb) not installed; CI installs it")
	}
	tasks := filepath.Join(t.TempDir(), "tasks")
	if err := os.MkdirAll(tasks, 0o755); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	serverLogs := &syncBuffer{}
	startSrv := func() *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperServer$")
		cmd.Env = append(os.Environ(), "RETRACE_SERVER_HELPER_DIR="+tasks, "RETRACE_SERVER_HELPER_ADDR="+addr)
		cmd.Stderr = serverLogs
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		for range 100 {
			if c, err := net.Dial("tcp", addr); err == nil {
				c.Close()
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return cmd
	}
	srv := startSrv()
	spool, logs := t.TempDir(), &syncBuffer{}
	startWatch(t, spool, "http://"+addr, writeConfig(t, ""), logs)

	const cores = 4
	for i := range cores {
		sleep := exec.Command("sleep", "60")
		if err := sleep.Start(); err != nil {
			t.Fatal(err)
		}
		pid := sleep.Process.Pid
		prefix := filepath.Join(t.TempDir(), "core")
		out, err := exec.Command(gcore, "-o", prefix, strconv.Itoa(pid)).CombinedOutput()
		sleep.Process.Kill()
		sleep.Wait()
		if err != nil {
			t.Fatalf("gcore: %v\n%s", err, out)
		}
		// Into the spool under the kernel's core_%e_%p_%t name.
		name := fmt.Sprintf("core_sleep_%d_%d", pid, time.Now().Unix())
		if err := os.Rename(prefix+"."+strconv.Itoa(pid), filepath.Join(spool, name)); err != nil {
			t.Fatal(err)
		}
		if i == 1 || i == 2 {
			// The server dies (-9) with work under way, and comes back.
			time.Sleep(time.Duration(100+100*i) * time.Millisecond)
			srv.Process.Signal(syscall.SIGKILL)
			srv.Wait()
			time.Sleep(300 * time.Millisecond)
			srv = startSrv()
		}
	}
	items := waitItems(t, spool, cores, 90*time.Second, logs)
	ids := map[string]bool{}
	for _, it := range items {
		if it.State != stateFinished {
			t.Errorf("%s: %s (%s)\nwatch:\n%s\nserver:\n%s", it.ID, it.State, it.Reason, logs, serverLogs)
			continue
		}
		if b, err := os.ReadFile(filepath.Join(itemDir(spool, it.ID), "backtrace")); err != nil || len(b) == 0 {
			t.Errorf("%s: no backtrace (%v)", it.ID, err)
		}
		ids[it.TaskID] = true
	}
	ents, err := os.ReadDir(tasks)
	if err != nil {
		t.Fatal(err)
	}
	made := 0
	for _, e := range ents {
		if _, err := strconv.ParseUint(e.Name(), 10, 64); err == nil && e.IsDir() {
			if _, err := os.Stat(filepath.Join(tasks, e.Name(), "task.json")); err == nil {
				made++
			}
		}
	}
	if made != cores || len(ids) != cores {
		t.Errorf("the server holds %d tasks and the spool names %d, for %d cores\nwatch:\n%s", made, len(ids), cores, logs)
	}
}
