package retrace

import (
	"context"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestSandboxBoundedOutput(t *testing.T) {
	b := &boundedBuffer{max: 5}
	for _, s := range []string{"abc", "def", "ghi"} {
		if n, err := b.Write([]byte(s)); n != 3 || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if b.buf.String() != "abcde" || b.dropped != 4 {
		t.Errorf("kept %q, dropped %d", b.buf.String(), b.dropped)
	}
}

func TestSandboxGDBSafePath(t *testing.T) {
	for p, want := range map[string]bool{
		"/var/lib/retraced/sysroots":    true,
		"/tmp/Test_x-1/001/a.b+c@d,e=f": true,
		"":                              false,
		"/a b":                          false,
		"/a:b":                          false,
		"~/x":                           false,
		"/a\nb":                         false,
		`/a"b`:                          false,
	} {
		if got := gdbSafePath(p); got != want {
			t.Errorf("gdbSafePath(%q) = %v", p, got)
		}
	}
}

// TestSandboxLimitsAndKill runs a shell in the sandbox as the tests'
// user: the limits hold with prlimit and with the sh fallback, and a
// timeout kills the whole process group.
func TestSandboxLimitsAndKill(t *testing.T) {
	for _, fallback := range []bool{false, true} {
		name := "prlimit"
		if fallback {
			name = "ulimit"
		}
		t.Run(name, func(t *testing.T) {
			s, err := newSandbox("", "host", 1<<30, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			s.cred = nil // as ourselves: this test is about limits
			if fallback {
				s.prlimit = ""
			} else if s.prlimit == "" {
				t.Skip("no prlimit")
			}
			dir := t.TempDir()
			res, err := s.run(context.Background(), dir, s.env(dir), "/bin/sh", "-c", "grep -E '^Max (address space|core file size|file size)' /proc/self/limits; echo HOME=$HOME; echo DBG=$DEBUGINFOD_URLS")
			if err != nil {
				t.Fatal(err)
			}
			out := string(res.Stdout)
			for _, re := range []string{`Max address space\s+1073741824\s+1073741824`, `Max core file size\s+0\s+0`, `Max file size\s+67108864\s+67108864`, "HOME=" + regexp.QuoteMeta(dir), "DBG=\n"} {
				if !regexp.MustCompile(re).MatchString(out) {
					t.Errorf("output lacks %s:\n%s%s", re, out, res.Stderr)
				}
			}

			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			start := time.Now()
			res, err = s.run(ctx, dir, s.env(dir), "/bin/sh", "-c", "sleep 30 & echo $!; wait")
			if err != nil {
				t.Fatal(err)
			}
			if !res.TimedOut || res.Signal.String() != "killed" || time.Since(start) > 3*time.Second {
				t.Errorf("timed out %v, signal %v, after %v", res.TimedOut, res.Signal, time.Since(start))
			}
			if pid := strings.TrimSpace(string(res.Stdout)); !sandboxGone(pid) {
				t.Errorf("the background sleep %s survived", pid)
			}
		})
	}
}

// TestSandboxUserNamespace: a worker that is not root gets its network
// namespace inside a user namespace of its own uid. (As root the worker
// needs none; see TestWorkerSandbox.)
func TestSandboxUserNamespace(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("as root the network namespace needs no user namespace")
	}
	s, err := newSandbox("", "none", 1<<30, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if !s.netns || !s.userns || s.cred != nil {
		t.Fatalf("sandbox %+v: want a network namespace in a user namespace", s)
	}
	dir := t.TempDir()
	res, err := s.run(context.Background(), dir, s.env(dir), "/bin/sh", "-c", "cat /proc/net/dev; id -u")
	if err != nil {
		t.Skipf("user namespaces unavailable here: %v", err)
	}
	out := string(res.Stdout)
	if !strings.Contains(out, "lo:") || strings.Count(out, ":") != 1 || !strings.HasSuffix(out, "\n"+strconv.Itoa(os.Getuid())+"\n") {
		t.Errorf("inside:\n%s%s", out, res.Stderr)
	}
}

// sandboxGone waits a little for process pid to be gone or a zombie: a
// SIGKILLed process may still be on its way out.
func sandboxGone(pid string) bool {
	for range 100 {
		st, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return true
		}
		if i := strings.LastIndexByte(string(st), ')'); i >= 0 && strings.HasPrefix(string(st[i:]), ") Z") {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
