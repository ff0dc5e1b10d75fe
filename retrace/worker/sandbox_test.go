package worker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
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

// TestHelperSandbox is the sandbox as a worker that is not root makes
// it, for TestSandboxNotRoot, which runs the test binary as nobody: with
// RETRACED_SANDBOX_HELPER set it prints how the sandbox isolates the
// network ("auto" stands for the default, "") and what a program in it
// sees.
func TestHelperSandbox(t *testing.T) {
	network, ok := os.LookupEnv("RETRACED_SANDBOX_HELPER")
	if !ok {
		t.Skip("helper process only")
	}
	if network == "auto" {
		network = ""
	}
	s, err := newSandbox("", network, 1<<30, 1<<20)
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(0)
	}
	fmt.Printf("netns %v userns %v\nlog: %s\n", s.netns, s.userns, s.describe())
	dir, err := os.MkdirTemp("", "sandbox-helper-")
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	res, err := s.run(context.Background(), dir, s.env(dir), "/bin/sh", "-c", "id -u; cat /proc/net/dev")
	if err != nil {
		fmt.Printf("error: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("%s%s", res.Stdout, res.Stderr)
	os.Exit(0)
}

// netDevices lists the interfaces of the /proc/net/dev in out.
func netDevices(out string) []string {
	_, table, _ := strings.Cut(out, "Inter-|")
	var devs []string
	for _, l := range strings.Split(table, "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(name, "|") {
			devs = append(devs, strings.TrimSpace(name))
		}
	}
	slices.Sort(devs)
	return devs
}

// TestSandboxNotRoot: a worker that is not root (the test binary run as
// nobody) gives gdb a network namespace of its own, inside a user
// namespace, when the kernel lets it; where it does not (a user
// namespace of the test's whose max_user_namespaces is 0, so the host is
// left alone) gdb gets the host's network and the task log says why, or,
// with network "none" configured, the worker refuses to start.
func TestSandboxNotRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the test binary as nobody; TestSandboxUserNamespace covers a non-root run")
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(workerDir(t), "retrace.test")
	if err := copyNew(self, bin, 0o755, func(f *os.File) error { return f.Chmod(0o755) }); err != nil {
		t.Fatal(err)
	}
	host, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	helper := func(t *testing.T, network string, forbid bool) string {
		t.Helper()
		script := `exec "$0" -test.run='^TestHelperSandbox$'`
		if forbid {
			script = `echo 0 > /proc/sys/user/max_user_namespaces && exec ` + setpriv + ` --reuid=65534 --regid=65534 --clear-groups "$0" -test.run='^TestHelperSandbox$'`
		}
		cmd := exec.Command("/bin/sh", "-c", script, bin)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "TMPDIR=/tmp", "RETRACED_SANDBOX_HELPER=" + network}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
		if forbid {
			// Root inside a user namespace mapping every uid to
			// itself: it may lower that namespace's limit, which holds
			// for the namespaces nobody creates in it.
			cmd.SysProcAttr = &syscall.SysProcAttr{
				Cloneflags:                 syscall.CLONE_NEWUSER,
				UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
				GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 65536}},
				GidMappingsEnableSetgroups: true,
			}
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper: %v\n%s", err, out)
		}
		return string(out)
	}

	t.Run("user namespaces allowed", func(t *testing.T) {
		out := helper(t, "auto", false)
		if strings.Contains(out, "may not create a user namespace") {
			t.Skipf("this kernel forbids unprivileged user namespaces:\n%s", out)
		}
		if !strings.Contains(out, "netns true userns true\n") || !strings.Contains(out, "log: as uid 65534, no network") {
			t.Fatalf("want a network namespace in a user namespace:\n%s", out)
		}
		if !strings.Contains(out, "\n65534\n") {
			t.Errorf("the program does not run as nobody:\n%s", out)
		}
		if devs := netDevices(out); !slices.Equal(devs, []string{"lo"}) {
			t.Errorf("inside, interfaces %v, want only lo:\n%s", devs, out)
		}
	})
	t.Run("user namespaces forbidden", func(t *testing.T) {
		out := helper(t, "auto", true)
		if !strings.Contains(out, "netns false userns false\n") ||
			!strings.Contains(out, "log: as uid 65534, host network (not isolated: this user may not create a user namespace: the user namespace limit (max_user_namespaces) is reached (") {
			t.Fatalf("want the host network, the log saying why:\n%s", out)
		}
		if got, want := netDevices(out), netDevices(string(host)); !slices.Equal(got, want) {
			t.Errorf("inside, interfaces %v, want the host's %v", got, want)
		}
		out = helper(t, "none", true)
		if !strings.HasPrefix(out, "error: sandbox network none: gdb cannot get its own network namespace: this user may not create a user namespace: the user namespace limit (max_user_namespaces) is reached (") {
			t.Errorf("with network none, want the worker refused:\n%s", out)
		}
	})
	if b, err := os.ReadFile("/proc/sys/user/max_user_namespaces"); err != nil || strings.TrimSpace(string(b)) == "0" {
		t.Errorf("the host's max_user_namespaces changed: %q %v", b, err)
	}
}
