package main

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/resolver/corefile"
)

// TestRetraceThroughServer: while serve holds the data directory,
// `retraced retrace CORE` has the server retrace the core as a task and
// prints its backtrace; a core of a program the mirror lacks fails with
// the task's log naming the missing build-id. Tasks are deleted after.
func TestRetraceThroughServer(t *testing.T) {
	fixtures.RequireTools(t, "gdb", "gcore")
	cfg := testConfig(t)
	startServe(t, cfg)
	out, stderr, err := run(t, "--data", cfg.Data, "retrace", "-v", fixtures.CoreFile(t, "crashme-1.0.core.zst"))
	if err != nil {
		t.Fatalf("retrace through serve: %v\n%s", err, stderr)
	}
	for _, want := range []string{"crashme_dispatch", "libcrashme.c:", "main"} {
		if !strings.Contains(out, want) {
			t.Fatalf("backtrace lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr, "task ") || !strings.Contains(stderr, "gdb") {
		t.Errorf("-v did not print the task's log:\n%s", stderr)
	}

	// A live `sleep`, dumped by gcore: the mirror has no such program.
	sleep := exec.Command("sleep", "60")
	if err := sleep.Start(); err != nil {
		t.Fatal(err)
	}
	defer sleep.Process.Kill()
	prefix := filepath.Join(t.TempDir(), "core")
	if out, err := exec.Command("gcore", "-o", prefix, strconv.Itoa(sleep.Process.Pid)).CombinedOutput(); err != nil {
		t.Fatalf("gcore: %v\n%s", err, out)
	}
	core := prefix + "." + strconv.Itoa(sleep.Process.Pid)
	c, err := corefile.Open(core)
	if err != nil {
		t.Fatal(err)
	}
	missing := ""
	for _, m := range c.Modules {
		if m.Path == c.Executable && m.BuildID != nil {
			missing = hex.EncodeToString(m.BuildID)
		}
	}
	if missing == "" {
		t.Fatalf("no build-id for %s among the core's modules", c.Executable)
	}
	_, stderr, err = run(t, "--data", cfg.Data, "retrace", core)
	if err == nil || !strings.Contains(err.Error(), "FINISHED_FAILURE") {
		t.Fatalf("retrace of a program not mirrored: %v, want FINISHED_FAILURE", err)
	}
	if !strings.Contains(stderr, missing) {
		t.Errorf("the task's log does not name the executable's build-id %s:\n%s", missing, stderr)
	}
	ents, err := os.ReadDir(filepath.Join(cfg.Data, "tasks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err == nil {
			t.Errorf("task %s left behind", e.Name())
		}
	}
}
