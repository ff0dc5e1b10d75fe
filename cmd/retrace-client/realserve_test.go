package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
)

// crashProgram is a fixture program that dies of SIGSEGV when run with
// "crash", and the function gdb names in frame #0 of its backtrace
// (fixtures/cores/NAME-VERSION.bt.txt).
type crashProgram struct {
	name, version, frame string
}

func (p crashProgram) String() string { return p.name + "-" + p.version }

var crashPrograms = []crashProgram{
	{"crashme", "1.0", "crashme_dispatch"},
	{"crashme", "1.1", "crashme_dispatch"},
	{"greeter", "1.0", "emit"},
	{"greeter", "1.1", "emit"},
	{"counter", "1.0", "counter_store"},
	{"counter", "1.1", "counter_store"},
}

// startMu orders the test's process starts: a crashing program is
// started with RLIMIT_CORE raised in this process (the child inherits
// it), and nothing else may start meanwhile.
var startMu sync.Mutex

// startWith starts cmd, with the core size limit unlimited when core.
func startWith(cmd *exec.Cmd, core bool) error {
	startMu.Lock()
	defer startMu.Unlock()
	if !core {
		return cmd.Start()
	}
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_CORE, &old); err != nil {
		return err
	}
	unlimited := syscall.Rlimit{Cur: ^uint64(0), Max: ^uint64(0)} // RLIM_INFINITY
	if err := syscall.Setrlimit(syscall.RLIMIT_CORE, &unlimited); err != nil {
		return fmt.Errorf("raise RLIMIT_CORE: %w", err)
	}
	return errors.Join(cmd.Start(), syscall.Setrlimit(syscall.RLIMIT_CORE, &old))
}

// crasher makes the cores of the fixture programs in the spool.
//
// kernel: each program runs chrooted into a root as fixtures/build.sh's
// makeroot makes it (the RPM's payload, the host's ld.so and libc,
// merged-/usr), in /spool, a bind mount of the spool; with
// kernel.core_pattern a bare name, the kernel writes its core there.
//
// Otherwise (a piped core_pattern, one with a directory, or no root for
// chroot and mount): `retrace-client core-handler` is fed the program's
// committed kernel core, as a piped core_pattern would.
type crasher struct {
	kernel  bool
	spool   string
	client  string // the retrace-client binary
	roots   map[string]string
	pattern string
}

func newCrasher(t *testing.T, spool, client string) *crasher {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Fatal(err)
	}
	c := &crasher{spool: spool, client: client, roots: map[string]string{}, pattern: strings.TrimSpace(string(b))}
	switch {
	case strings.HasPrefix(c.pattern, "|") || strings.Contains(c.pattern, "/"):
		t.Logf("kernel.core_pattern is %q, not a name in the crashing process's directory: core-handler is fed the committed cores instead of real crashes", c.pattern)
		return c
	case os.Geteuid() != 0:
		t.Logf("not root (chroot, mount): core-handler is fed the committed cores instead of real crashes")
		return c
	}
	c.kernel = true
	fixtures.RequireTools(t, "rpm2cpio", "cpio", "ldconfig")
	for _, p := range crashPrograms {
		root := t.TempDir()
		makeRoot(t, root, fixtures.Path("repo", "Packages", p.String()+"-1.x86_64.rpm"))
		mnt := filepath.Join(root, "spool")
		if err := os.Mkdir(mnt, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Mount(spool, mnt, "", syscall.MS_BIND, ""); err != nil {
			t.Fatalf("bind-mount the spool into %s: %v", root, err)
		}
		// Before TempDir's removal, which must not reach the spool.
		t.Cleanup(func() {
			if err := syscall.Unmount(mnt, syscall.MNT_DETACH); err != nil {
				t.Errorf("unmount %s: %v", mnt, err)
			}
		})
		c.roots[p.String()] = root
	}
	t.Logf("kernel.core_pattern %q: real crashes, cores written by the kernel into the spool", c.pattern)
	return c
}

// makeRoot lays out makeroot's chroot (fixtures/build.sh) in root.
func makeRoot(t *testing.T, root, rpm string) {
	t.Helper()
	for _, d := range []string{"usr/lib64", "usr/lib/x86_64-linux-gnu", "usr/bin", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for link, to := range map[string]string{"lib64": "usr/lib64", "lib": "usr/lib", "bin": "usr/bin"} {
		if err := os.Symlink(to, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	payload := exec.Command("rpm2cpio", rpm)
	unpack := exec.Command("cpio", "-idm", "--quiet", "--no-absolute-filenames")
	unpack.Dir = root
	pipe, err := payload.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	unpack.Stdin = pipe
	var payloadErr, unpackErr bytes.Buffer
	payload.Stderr, unpack.Stderr = &payloadErr, &unpackErr
	if err := payload.Start(); err != nil {
		t.Fatal(err)
	}
	if err := unpack.Run(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", rpm, err, unpackErr.String())
	}
	if err := payload.Wait(); err != nil {
		t.Fatalf("rpm2cpio %s: %v\n%s", rpm, err, payloadErr.String())
	}
	for from, to := range map[string]string{
		"/lib64/ld-linux-x86-64.so.2":     "usr/lib64/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/libc.so.6": "usr/lib/x86_64-linux-gnu/libc.so.6",
	} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Skipf("the host's %s: %v", from, err)
		}
		if err := os.WriteFile(filepath.Join(root, to), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "etc/ld.so.conf"), []byte("/usr/lib64\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fixtures.Run(t, "", "ldconfig", "-r", root)
}

// crash makes one core of p in the spool and returns when it is written:
// the program has died (the kernel writes the core before the parent
// sees the death), or core-handler has exited.
func (c *crasher) crash(p crashProgram) error {
	if !c.kernel {
		core, err := os.Open(fixtures.Path("cores", p.String()+".core.zst"))
		if err != nil {
			return err
		}
		defer core.Close() // read-only
		unzstd := exec.Command("zstd", "-dc")
		unzstd.Stdin = core
		b, err := unzstd.Output()
		if err != nil {
			return fmt.Errorf("zstd -dc %s: %w", core.Name(), err)
		}
		cmd := exec.Command(c.client, "core-handler", "--spool", c.spool, p.name, strconv.Itoa(1+rand.IntN(1<<22)), strconv.FormatInt(time.Now().Unix(), 10))
		cmd.Stdin = bytes.NewReader(b)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("core-handler: %v %s", err, out)
		}
		return nil
	}
	cmd := exec.Command("/usr/bin/"+p.name, "crash")
	cmd.Dir = "/spool" // inside the chroot
	cmd.Env = []string{"PATH=/usr/bin", "LC_ALL=C"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: c.roots[p.String()]}
	if err := startWith(cmd, true); err != nil {
		return err
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGSEGV || !ws.CoreDump() {
		return fmt.Errorf("%s crash: %v, want SIGSEGV with a core", p, err)
	}
	return nil
}

// waitTaken waits until the spool holds no core file (with a name-only
// core_pattern every crash writes the same name: one at a time).
func (c *crasher) waitTaken(timeout time.Duration) bool {
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		entries, err := os.ReadDir(c.spool)
		if err != nil {
			return false
		}
		if !slices.ContainsFunc(entries, func(e os.DirEntry) bool { return !e.IsDir() && !strings.HasPrefix(e.Name(), ".") }) {
			return true
		}
	}
	return false
}

// realServe is `retraced serve` as a process on a fixed address and data
// directory, killed and started again by the test.
type realServe struct {
	t       *testing.T
	bin     string
	data    string
	addr    string
	logs    *syncBuffer
	cmd     *exec.Cmd
	started time.Time // when it last answered
}

func (s *realServe) url() string { return "http://" + s.addr }

// start runs serve and waits until it answers.
func (s *realServe) start() {
	s.t.Helper()
	cmd := exec.Command(s.bin, "serve", "--data", s.data, "--listen", s.addr)
	cmd.Stdout, cmd.Stderr = s.logs, s.logs
	if err := startWith(cmd, false); err != nil {
		s.t.Fatal(err)
	}
	s.cmd = cmd
	s.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get(s.url() + "/healthz"); err == nil {
			resp.Body.Close()
			s.started = time.Now()
			return
		}
	}
	s.t.Fatalf("serve did not answer in 30s:\n%s", s.logs)
}

func (s *realServe) kill() {
	s.t.Helper()
	kill(s.t, s.cmd)
}

// waitSynced waits for the first sync of the bundled repository.
func (s *realServe) waitSynced() {
	s.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get(s.url() + "/api/v1/mirrors")
		if err != nil {
			continue
		}
		var views []map[string]any
		err = json.NewDecoder(resp.Body).Decode(&views)
		resp.Body.Close()
		if err == nil && len(views) > 0 && views[0]["last_sync"] != nil {
			return
		}
	}
	s.t.Fatalf("serve did not sync the bundled repository in 30s:\n%s", s.logs)
}

// tasks returns the ids of the tasks serve holds (DATA/tasks/ID/task.json).
func (s *realServe) tasks() map[string]bool {
	s.t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.data, "tasks"))
	if err != nil {
		s.t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(s.data, "tasks", e.Name(), "task.json")); err == nil && e.IsDir() {
			ids[e.Name()] = true
		}
	}
	return ids
}

// realWatch is the `retrace-client watch` binary on a spool.
type realWatch struct {
	t                     *testing.T
	bin, spool, url, conf string
	logs                  *syncBuffer
	cmd                   *exec.Cmd
}

func (w *realWatch) start() {
	w.t.Helper()
	args := []string{"watch", "--spool", w.spool, "--url", w.url}
	if w.conf != "" {
		args = append(args, "--config", w.conf)
	}
	cmd := exec.Command(w.bin, args...)
	cmd.Stderr = w.logs
	if err := startWith(cmd, false); err != nil {
		w.t.Fatal(err)
	}
	w.cmd = cmd
	w.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
}

// buildBinaries builds retraced and retrace-client into dir with the go
// command that runs the test (and its GOFLAGS: CI's -tags=liblzma).
func buildBinaries(t *testing.T, dir string) (retraced, client string) {
	t.Helper()
	goBin := fixtures.Tool(t, "go")
	start := time.Now()
	cmd := exec.Command(goBin, "build", "-o", dir+string(filepath.Separator),
		"github.com/retraced/retraced/cmd/retraced", "github.com/retraced/retraced/cmd/retrace-client")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Logf("built retraced and retrace-client in %s", time.Since(start).Round(time.Millisecond))
	return filepath.Join(dir, "retraced"), filepath.Join(dir, "retrace-client")
}

// freeAddr returns a loopback address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// itemIDs returns the ids of the spool's items.
func itemIDs(spool string) map[string]*item {
	items, _ := loadItems(spool)
	m := map[string]*item{}
	for _, it := range items {
		m[it.ID] = it
	}
	return m
}

// checkBacktrace reports what is wrong with a finished item's backtrace:
// frame #0 must name the crashing function of its program.
func checkBacktrace(spool string, it *item) error {
	bt, err := os.ReadFile(filepath.Join(itemDir(spool, it.ID), "backtrace"))
	if err != nil {
		return err
	}
	for _, p := range crashPrograms {
		if it.Executable == "/usr/bin/"+p.name {
			if !regexp.MustCompile(`(?m)^#0\s.*\b` + p.frame + ` \(`).Match(bt) {
				return fmt.Errorf("frame #0 is not %s:\n%s", p.frame, bt)
			}
			return nil
		}
	}
	return fmt.Errorf("executable %q is no fixture program's", it.Executable)
}

// TestWatchRealServe: the retrace-client and retraced binaries, real
// crashes of the fixture programs (the kernel writes each core into the
// spool), the real worker and gdb.
//
// First, with watch's default config and nothing killed, the time from a
// core written to its backtrace saved in the spool, per program: the
// median must be under 2 s (issue 14).
//
// Then rounds in which watch or serve, chosen at random (seeded, the seed
// logged), is killed with -9 at a random point while programs crash, and
// started again on the same spool and data directory. Every core ends
// finished with a backtrace whose frame #0 is the crashing function, none
// is lost, and serve holds exactly one task per core (the re-sent uploads
// carry the item's X-Task-Key).
func TestWatchRealServe(t *testing.T) {
	fixtures.RequireTools(t, "gdb", "zstd")
	bin := t.TempDir()
	retraced, client := buildBinaries(t, bin)
	spool, data := t.TempDir(), t.TempDir()
	for _, d := range []string{filepath.Dir(data), data} { // gdb runs as nobody
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cr := newCrasher(t, spool, client)
	srv := &realServe{t: t, bin: retraced, data: data, addr: freeAddr(t), logs: &syncBuffer{}}
	srv.start()
	srv.waitSynced()
	w := &realWatch{t: t, bin: client, spool: spool, url: srv.url(), logs: &syncBuffer{}}
	dump := func() string {
		var b strings.Builder
		for _, it := range itemIDs(spool) {
			fmt.Fprintf(&b, "%s %s %q task %s: %s\n", it.ID, it.State, it.Executable, it.TaskID, it.Reason)
		}
		return fmt.Sprintf("items:\n%swatch:\n%s\nserve:\n%s", b.String(), w.logs, srv.logs)
	}

	// Latency, default config.
	w.start()
	const runs = 3
	took := map[string][]time.Duration{}
	var all []time.Duration
	for range runs {
		for _, p := range crashPrograms {
			before := itemIDs(spool)
			if err := cr.crash(p); err != nil {
				t.Fatal(err)
			}
			written := time.Now()
			var done *item
			for done == nil {
				if time.Since(written) > 30*time.Second {
					t.Fatalf("%s: no backtrace 30s after the crash\n%s", p, dump())
				}
				time.Sleep(5 * time.Millisecond)
				for id, it := range itemIDs(spool) {
					if before[id] == nil && terminal(it.State) {
						done = it
					}
				}
			}
			d := time.Since(written)
			if done.State != stateFinished {
				t.Fatalf("%s: %s (%s)\n%s", p, done.State, done.Reason, dump())
			}
			if err := checkBacktrace(spool, done); err != nil {
				t.Errorf("%s: %v", p, err)
			}
			took[p.String()] = append(took[p.String()], d)
			all = append(all, d)
		}
	}
	median := func(ds []time.Duration) time.Duration {
		ds = slices.Clone(ds)
		slices.Sort(ds)
		return ds[len(ds)/2].Round(time.Millisecond)
	}
	for _, p := range crashPrograms {
		t.Logf("core written -> backtrace saved, default config, %s: median %s of %v", p, median(took[p.String()]), took[p.String()])
	}
	t.Logf("core written -> backtrace saved, default config, all %d: median %s (min %s, max %s)",
		len(all), median(all), slices.Min(all).Round(time.Millisecond), slices.Max(all).Round(time.Millisecond))
	if m := median(all); m >= 2*time.Second {
		t.Errorf("median %s from core written to backtrace saved, want under 2s (issue 14)", m)
	}
	kill(t, w.cmd)

	// Kill rounds. Short backoffs and no giving up: serve is down at
	// times. serve is killed only after living 2s, so that no task is
	// cut off MaxAttempts times (the server then fails it, rightly).
	w.conf = filepath.Join(t.TempDir(), "watch.toml")
	if err := os.WriteFile(w.conf, []byte("[submit]\nattempts = 1000\nbackoff = \"100ms\"\nmax_backoff = \"1s\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("kill rounds from seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 14))
	order := slices.Concat(crashPrograms, crashPrograms)
	rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	var crashMu sync.Mutex
	crashErr := error(nil)
	pauses := make([]time.Duration, len(order))
	for i := range pauses {
		pauses[i] = time.Duration(rng.IntN(400)) * time.Millisecond
	}
	w.start()
	crashed := make(chan struct{})
	go func() {
		defer close(crashed)
		for i, p := range order {
			if !cr.waitTaken(60 * time.Second) {
				crashMu.Lock()
				crashErr = fmt.Errorf("crash %d: the last core is still in the spool after 60s", i)
				crashMu.Unlock()
				return
			}
			time.Sleep(pauses[i])
			if err := cr.crash(p); err != nil {
				crashMu.Lock()
				crashErr = err
				crashMu.Unlock()
				return
			}
		}
	}()
	const rounds = 8
	var kills []string
	for round := 0; ; round++ {
		if round >= rounds && isClosed(crashed) {
			break
		}
		time.Sleep(time.Duration(100+rng.IntN(1200)) * time.Millisecond)
		down := time.Duration(rng.IntN(600)) * time.Millisecond
		if rng.IntN(2) == 0 {
			if young := 2*time.Second - time.Since(srv.started); young > 0 {
				time.Sleep(young)
			}
			srv.kill()
			time.Sleep(down)
			srv.start()
			kills = append(kills, "serve")
		} else {
			kill(t, w.cmd)
			time.Sleep(down)
			w.start()
			kills = append(kills, "watch")
		}
	}
	<-crashed
	crashMu.Lock()
	if crashErr != nil {
		t.Fatalf("%v\n%s", crashErr, dump())
	}
	crashMu.Unlock()
	t.Logf("%d kills -9: %s", len(kills), strings.Join(kills, " "))

	total := runs*len(crashPrograms) + len(order)
	items := waitItems(t, spool, total, 60*time.Second, stringer(dump))
	if len(items) != total {
		t.Fatalf("%d items for %d cores\n%s", len(items), total, dump())
	}
	perExe := map[string]int{}
	taskIDs := map[string]bool{}
	for _, it := range items {
		perExe[it.Executable]++
		if it.State != stateFinished {
			t.Errorf("%s: %s (%s)", it.ID, it.State, it.Reason)
			continue
		}
		if err := checkBacktrace(spool, it); err != nil {
			t.Errorf("%s: %v", it.ID, err)
		}
		taskIDs[it.TaskID] = true
	}
	for _, name := range []string{"crashme", "greeter", "counter"} {
		if n := perExe["/usr/bin/"+name]; n != 2*(runs+2) {
			t.Errorf("%d cores of %s finished, want %d", n, name, 2*(runs+2))
		}
	}
	held := srv.tasks()
	if len(held) != total || len(taskIDs) != total {
		t.Errorf("serve holds %d tasks and the spool names %d, for %d cores", len(held), len(taskIDs), total)
	}
	for id := range taskIDs {
		if !held[id] {
			t.Errorf("task %s of the spool is not on the server", id)
		}
	}
	t.Logf("%d cores, %d finished with their backtrace, %d tasks on the server; %d uploads re-sent after a kill of watch during them",
		total, len(taskIDs), len(held), strings.Count(w.logs.String(), "stopped while submitting"))
	if t.Failed() {
		t.Log(dump())
	}

	// All done: the watcher sleeps (fsnotify and one timer, no polling).
	before := procCPU(t, w.cmd.Process.Pid)
	time.Sleep(2 * time.Second)
	idle := procCPU(t, w.cmd.Process.Pid) - before
	t.Logf("idle watch binary: %d clock ticks of CPU in 2s", idle)
	if idle > 1 {
		t.Errorf("the idle watcher used %d clock ticks of CPU in 2s", idle)
	}
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// stringer makes a func a fmt.Stringer.
type stringer func() string

func (s stringer) String() string { return s() }
