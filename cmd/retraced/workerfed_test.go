package main

import (
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// TestRetraceFederation: a node whose mirror lacks toolbox-libs (the
// package of libtoolbox.so.1) retraces the toolbox core through its task
// protocol. With [retrace] federate off, the task reports libtoolbox as
// missing and its frames have no names; with it on, the worker fetches
// libtoolbox and its debuginfo from the upstream node (a second serve
// that mirrors all of repo-dist), the crashing thread's frames name the
// functions of the fixture's reference backtrace, and the log names the
// upstream.
func TestRetraceFederation(t *testing.T) {
	fixtures.RequireTools(t, "gdb")
	sync := func(cfg Config, args ...string) {
		t.Helper()
		if _, _, err := run(t, append([]string{"--data", cfg.Data, "mirror", "add", "dist", fixtures.Path("repo-dist")}, args...)...); err != nil {
			t.Fatal(err)
		}
		if _, stderr, err := run(t, "--data", cfg.Data, "mirror", "sync"); err != nil {
			t.Fatalf("sync: %v\n%s", err, stderr)
		}
	}
	up := testConfig(t)
	sync(up)
	upstream := startServe(t, up)

	cfg := testConfig(t)
	sync(cfg, "--exclude", "toolbox-libs")
	cfg.UpstreamDebuginfod = []string{upstream}
	core := fixtures.CoreFile(t, "toolbox-2.0.core.zst")
	const lib = "/usr/lib64/libtoolbox.so.1.0.0 95a9a0bdb9b28fd3442cf15c59b477366458a6e0"
	want := referenceFunctions(t, "toolbox-2.0.bt.txt")
	retraceOnce := func(federate bool) (status, step, logText string, funcs []string, metrics string) {
		t.Helper()
		cfg.Retrace.Federate = federate
		url, stop := runServeUntil(t, cfg)
		defer stop()
		task := createTask(t, url, crashTarball(t, core, map[string]string{"executable": "/usr/bin/toolbox"}))
		var bt string
		status, step, logText, bt = task.finish(t)
		_, _, metrics = httpDo(t, http.MethodGet, url+"/metrics", nil, nil)
		for _, f := range crashingThread(t, bt) {
			if m := regexp.MustCompile(`^#\d+ (\w+) \(`).FindStringSubmatch(f); m != nil {
				funcs = append(funcs, m[1])
			}
		}
		return status, step, logText, funcs, metrics
	}

	status, step, logText, funcs, _ := retraceOnce(false)
	if !strings.Contains(logText, "missing from the mirror: "+lib) {
		t.Errorf("federate off: the log does not report %s missing (%s):\n%s\n%s", lib, status, step, logText)
	}
	if strings.Contains(logText, "federation:") {
		t.Errorf("federate off, yet the worker asked the federation:\n%s", logText)
	}
	if strings.Join(funcs, " ") == strings.Join(want, " ") {
		t.Errorf("federate off, yet the frames are all named: %v", funcs)
	}

	status, step, logText, funcs, metrics := retraceOnce(true)
	if status != "FINISHED_SUCCESS" {
		t.Fatalf("federate on: %s\n%s\n%s", status, step, logText)
	}
	if !strings.Contains(logText, "federation: "+lib+": executable from "+upstream+", debuginfo from "+upstream) {
		t.Errorf("federate on: the log does not say libtoolbox came from %s:\n%s", upstream, logText)
	}
	if strings.Contains(logText, "missing from the mirror: "+lib) {
		t.Errorf("federate on: libtoolbox still reported missing:\n%s", logText)
	}
	if strings.Join(funcs, " ") != strings.Join(want, " ") {
		t.Errorf("federate on: crashing thread's functions %v, want the reference's %v\n%s", funcs, want, logText)
	}
	// The worker's fetches count in /metrics as the handlers' do: the
	// executable and its debuginfo, fetched.
	if !regexp.MustCompile(`(?m)^retraced_federation_requests_total\{result="fetched"\} 2$`).MatchString(metrics) {
		t.Errorf("federate on: /metrics does not count the worker's 2 fetches:\n%s", grepLines(metrics, "federation"))
	}
}

// grepLines are the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// referenceFunctions are the function names of the frames of a fixture
// core's reference backtrace.
func referenceFunctions(t *testing.T, name string) []string {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path("cores/" + name))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^#\d+\s+(?:0x[0-9a-f]+ in )?(\w+) \(`).FindAllStringSubmatch(string(b), -1) {
		out = append(out, m[1])
	}
	if len(out) == 0 {
		t.Fatalf("no frames in %s", name)
	}
	return out
}
