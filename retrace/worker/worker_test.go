package worker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/mirror"
)

// workerNeedsGDB skips when gdb is not installed (CI installs it).
func workerNeedsGDB(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed")
	}
}

// workerDir is a temporary directory that GDB, running as nobody when the
// tests run as root, can reach: t.TempDir and its parent are 0700.
func workerDir(t testing.TB) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{filepath.Dir(d), d} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// workerStore mirrors the fixture repositories named (fixtures/repo,
// repo-v1, ...) into a fresh data directory; none gives an empty store.
func workerStore(t testing.TB, repos ...string) (*index.Store, *blob.Pool) {
	t.Helper()
	s := fixturestore.New(t, repos...)
	return s.Index, s.Pool
}

// newTestWorker opens a Worker on a fresh sysroot directory.
func newTestWorker(t testing.TB, idx Index, pool BlobSource, cfg Config) *Worker {
	t.Helper()
	if cfg.SysrootDir == "" {
		cfg.SysrootDir = filepath.Join(workerDir(t), "sysroots")
	}
	w, err := New(idx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Error(err)
		}
	})
	return w
}

// workerCrashDir makes an ABRT crash directory around a fixture core.
func workerCrashDir(t testing.TB, c fixtures.Core) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Rename(fixtures.CoreFile(t, c.File), filepath.Join(dir, "coredump")); err != nil {
		t.Fatal(err)
	}
	nvr := strings.TrimSuffix(c.NEVRA, ".x86_64")
	for name, v := range map[string]string{"executable": c.Executable, "package": nvr, "os_release": "Fedora release 40 (Forty)"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(v+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func workerCore(t testing.TB, name string) fixtures.Core {
	t.Helper()
	for _, c := range fixtures.Cores(t) {
		if c.File == name {
			return c
		}
	}
	t.Fatalf("no fixture core %s", name)
	return fixtures.Core{}
}

// workerExpectedFrames reads cores/BASE.bt.txt: the frames of the crashing
// thread as gdb printed them with every file of the crash at hand.
func workerExpectedFrames(t testing.TB, c fixtures.Core) []string {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path("cores", strings.TrimSuffix(c.File, ".core.zst")+".bt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

var workerLogLineRE = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+\d+\.\d{3}s `)

// TestWorkerRetraceFixtureCores retraces every fixture core from the
// mirrored fixture repository with the real gdb and compares the crashing
// thread's frames with the reference backtraces.
func TestWorkerRetraceFixtureCores(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{})
	for _, c := range fixtures.Cores(t) {
		t.Run(c.File, func(t *testing.T) {
			var log bytes.Buffer
			start := time.Now()
			res, err := w.Retrace(context.Background(), workerCrashDir(t, c), &log)
			bt := res.Backtrace
			elapsed := time.Since(start)
			t.Logf("retrace took %v; log:\n%s", elapsed, log.String())
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range workerExpectedFrames(t, c) {
				if strings.Contains(want, " at ") {
					// A frame of the program or its library: name,
					// arguments and file:line exactly as the reference.
					if !workerHasLine(bt, want) {
						t.Errorf("backtrace lacks the frame\n  %s\nbacktrace:\n%s", want, bt)
					}
					continue
				}
				// A frame in the host's libc, not in the mirror: the
				// same pc, no symbols.
				num, addr, _ := strings.Cut(want, " in ")
				addr = strings.TrimSpace(strings.TrimPrefix(num, strings.Fields(num)[0]))
				if !strings.Contains(bt, strings.Fields(num)[0]+"  "+addr+" in ?? ()") {
					t.Errorf("backtrace lacks a frame %s at %s without symbols:\n%s", strings.Fields(num)[0], addr, bt)
				}
			}
			for _, section := range []string{"\nThread 1 (", "Shared Object Library", "  Yes         /usr/lib64/lib", "\nrip ", "\nrsp "} {
				if !strings.Contains(bt, section) {
					t.Errorf("backtrace lacks %q", section)
				}
			}
			if c.How == "sigsegv" && !strings.Contains(bt, "=> 0x") {
				t.Errorf("no disassembly marking the crashing instruction:\n%s", bt)
			}
			// The log: every line timestamped with the time since the
			// start, each step there, the unresolved objects named.
			lines := strings.Split(strings.TrimSpace(log.String()), "\n")
			for _, l := range lines {
				if !workerLogLineRE.MatchString(l) {
					t.Errorf("log line without time: %q", l)
				}
			}
			for _, step := range []string{"read core: ", "resolve packages: crash package " + c.NEVRA, "debugsource: ", "sysroot ", "gdb: exit status ", "backtrace: 1 threads"} {
				if !strings.Contains(log.String(), step) {
					t.Errorf("log lacks %q", step)
				}
			}
			for _, m := range c.Modules {
				host := m.Name == "libc.so.6" || m.Name == "ld-linux-x86-64.so.2" || m.Name == "linux-vdso.so.1"
				if host && !regexp.MustCompile(`unresolved: \S+ `+m.BuildID+`\n`).MatchString(log.String()) {
					t.Errorf("log does not name %s %s as unresolved", m.Name, m.BuildID)
				}
			}
		})
	}
}

// workerHasLine reports whether text has want as a whole line.
func workerHasLine(text, want string) bool {
	return slices.Contains(strings.Split(text, "\n"), want)
}

// TestWorkerRetraceCore is the path of `retraced retrace CORE
// [--executable PATH]`.
func TestWorkerRetraceCore(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{})
	c := workerCore(t, "counter-1.1.core.zst")
	core := fixtures.CoreFile(t, c.File)
	res, err := w.RetraceCore(context.Background(), core, "", nil)
	bt := res.Backtrace
	if err != nil {
		t.Fatal(err)
	}
	if want := workerExpectedFrames(t, c)[0]; !workerHasLine(bt, want) {
		t.Errorf("backtrace lacks %q:\n%s", want, bt)
	}
	if _, err := w.RetraceCore(context.Background(), core, c.Executable, nil); err != nil {
		t.Errorf("with --executable %s: %v", c.Executable, err)
	}
	var log bytes.Buffer
	_, err = w.RetraceCore(context.Background(), core, "/usr/bin/elsewhere", &log)
	if !errors.Is(err, ErrExecutableUnknown) || !strings.Contains(err.Error(), "/usr/bin/elsewhere is not mapped") {
		t.Errorf("a wrong --executable: %v", err)
	}
}

// TestWorkerDisassemblyWithoutSymbols: with the program's debuginfo
// not mirrored, the crashing pc (in greeter 1.0's static emit, which its
// stripped executable names nowhere) is in no function gdb knows, so
// `disassemble` prints nothing; the instructions from the pc are still
// in the backtrace, "=>" marking the crashing one. With the debuginfo,
// both listings mark it.
func TestWorkerDisassemblyWithoutSymbols(t *testing.T) {
	workerNeedsGDB(t)
	c := workerCore(t, "greeter-1.0.core.zst")
	frame0 := workerExpectedFrames(t, c)[0] // "#0  0x000055555555527d in emit (..."
	pc, err := strconv.ParseUint(strings.Fields(frame0)[1], 0, 64)
	if err != nil {
		t.Fatalf("frame 0 %q: %v", frame0, err)
	}
	marker := regexp.MustCompile(fmt.Sprintf(`(?m)^=> 0x0*%x(:| <)`, pc))

	st := fixturestore.Empty(t)
	src := mirror.Source{Name: "nodebug", URL: fixtures.Path("repo"), Exclude: "-debuginfo-"}
	if _, err := st.Mirror.Add(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if res, err := st.Mirror.Sync(context.Background(), src.Name, nil); err != nil || !res.OK() {
		t.Fatalf("sync: %v %v", res, err)
	}
	w := newTestWorker(t, st.Index, st.Pool, Config{})
	var log bytes.Buffer
	res, err := w.Retrace(context.Background(), workerCrashDir(t, c), &log)
	bt := res.Backtrace
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "No function contains program counter") {
		t.Errorf("gdb found a function around the pc without debuginfo; the test no longer tests the fallback:\n%s", log.String())
	}
	if !strings.Contains(bt, "#0  0x"+fmt.Sprintf("%016x", pc)+" in ?? ()") {
		t.Errorf("frame 0 has a name without debuginfo:\n%s", bt)
	}
	if got := marker.FindAllString(bt, -1); len(got) != 1 {
		t.Errorf("want one instruction marked at the crashing pc %#x, got %d:\n%s", pc, len(got), bt)
	}

	idx, pool := workerStore(t, "repo")
	w = newTestWorker(t, idx, pool, Config{})
	if res, err = w.Retrace(context.Background(), workerCrashDir(t, c), nil); err != nil {
		t.Fatal(err)
	}
	bt = res.Backtrace
	if got := marker.FindAllString(bt, -1); len(got) != 2 {
		t.Errorf("with debuginfo, want the pc %#x marked in disassemble's listing of emit and in the instructions, got %q:\n%s", pc, got, bt)
	}
}

// workerMarkerGDB is a "gdb" that only records it was run.
func workerMarkerGDB(t testing.TB) (gdb, marker string) {
	t.Helper()
	dir := workerDir(t)
	marker = filepath.Join(dir, "gdb-ran")
	gdb = filepath.Join(dir, "gdb")
	if err := os.WriteFile(gdb, []byte("#!/bin/sh\necho ran > "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return gdb, marker
}

// TestWorkerExecutableNotMirrored: a core whose program the mirror does
// not have fails at once, naming the missing build-ids, without gdb.
func TestWorkerExecutableNotMirrored(t *testing.T) {
	c := workerCore(t, "crashme-1.1.core.zst")
	var exeID string
	for _, m := range c.Modules {
		if m.Name == c.Executable {
			exeID = m.BuildID
		}
	}
	for _, tc := range []struct {
		name  string
		repos []string
	}{
		{"only-1.0-mirrored", []string{"repo-v1"}},
		{"empty-store", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			idx, pool := workerStore(t, tc.repos...)
			gdb, marker := workerMarkerGDB(t)
			w := newTestWorker(t, idx, pool, Config{GDB: gdb})
			var log bytes.Buffer
			start := time.Now()
			_, err := w.Retrace(context.Background(), workerCrashDir(t, c), &log)
			elapsed := time.Since(start)
			t.Logf("failed in %v: %v\nlog:\n%s", elapsed, err, log.String())
			if !errors.Is(err, ErrExecutableUnknown) {
				t.Fatalf("error %v, want ErrExecutableUnknown", err)
			}
			if elapsed > time.Second {
				t.Errorf("took %v, want < 1s", elapsed)
			}
			if !strings.Contains(err.Error(), exeID) || !strings.Contains(log.String(), "unresolved: /usr/bin/crashme "+exeID) {
				t.Errorf("the executable's build-id %s is not named", exeID)
			}
			for _, m := range c.Modules {
				if !strings.Contains(log.String(), m.BuildID) {
					t.Errorf("log does not name %s %s", m.Name, m.BuildID)
				}
			}
			if _, err := os.Stat(marker); err == nil {
				t.Error("gdb ran")
			}
		})
	}
}

// TestWorkerGDBHangs: gdb stuck in a command is killed, with what it
// started, at the time limit.
func TestWorkerGDBHangs(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{Timeout: time.Second})
	pidDir := workerDir(t)
	if err := os.Chmod(pidDir, 0o777); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(pidDir, "sleep.pid")
	w.gdbExtra = []string{"shell echo $$ > " + pidFile + "; exec sleep 100"}
	var log bytes.Buffer
	start := time.Now()
	_, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, "crashme-1.0.core.zst")), &log)
	elapsed := time.Since(start)
	t.Logf("took %v: %v\nlog:\n%s", elapsed, err, log.String())
	if !errors.Is(err, ErrGDBTimeout) {
		t.Fatalf("error %v, want ErrGDBTimeout", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("took %v with a 1s limit", elapsed)
	}
	// "after 1.0xx s" on a quiet machine; a loaded one may take a second
	// more to reap the group (the 5 s bound above holds either way).
	if !regexp.MustCompile(`gdb: killed \(SIGKILL\) at the 1s time limit after \d+(\.\d+)?m?s`).MatchString(log.String()) || !strings.Contains(log.String(), "failed: gdb ran out of time: killed after 1s") {
		t.Error("the log does not say gdb was killed at the limit")
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("the hanging command did not start: %v", err)
	}
	if pid := strings.TrimSpace(string(b)); !sandboxGone(pid) {
		t.Errorf("sleep %s (gdb's child) survived gdb's timeout", pid)
	}
	// The sysroot is still good: the next retrace succeeds (with time
	// for gdb on a loaded machine).
	w.gdbExtra = nil
	w.cfg.Timeout = time.Minute
	if _, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, "crashme-1.0.core.zst")), nil); err != nil {
		t.Errorf("after a timeout: %v", err)
	}
}

// TestWorkerGDBMemoryLimit: gdb itself runs under the address-space
// limit; one too small to load it fails the retrace with a clear log.
func TestWorkerGDBMemoryLimit(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{MemoryLimit: 16 << 20})
	var log bytes.Buffer
	_, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, "crashme-1.0.core.zst")), &log)
	t.Logf("%v\n%s", err, log.String())
	if !errors.Is(err, ErrGDBFailed) {
		t.Fatalf("error %v, want ErrGDBFailed", err)
	}
	if !strings.Contains(log.String(), "address space 16.0 MiB") || !strings.Contains(log.String(), "failed: gdb gave no backtrace") {
		t.Error("the log does not show the limit and the failure")
	}
}

// TestWorkerSysrootUnreachable: as root, with the sysroot directory under
// a directory nobody cannot search (a 0700 home), gdb still runs as nobody,
// reaching the sysroot and the core through descriptors; the backtrace has
// the program's frames and sources, and no descriptor path.
func TestWorkerSysrootUnreachable(t *testing.T) {
	workerNeedsGDB(t)
	if os.Geteuid() != 0 {
		t.Skip("only root switches gdb to another user")
	}
	private := t.TempDir()
	if err := os.Chmod(private, 0o700); err != nil {
		t.Fatal(err)
	}
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{SysrootDir: filepath.Join(private, "sysroots")})
	w.gdbExtra = []string{"list crashme_dispatch", "shell id -u"}
	c := workerCore(t, "crashme-1.0.core.zst")
	var log bytes.Buffer
	res, err := w.Retrace(context.Background(), workerCrashDir(t, c), &log)
	bt := res.Backtrace
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "as nobody") || !strings.Contains(log.String(), "as descriptors") {
		t.Errorf("the log does not say gdb ran as nobody through descriptors:\n%s", log.String())
	}
	for _, want := range append(workerExpectedFrames(t, c), "libcrashme.c:", "handler(name)", "\n65534\n") {
		if !strings.Contains(bt, want) {
			t.Errorf("backtrace lacks %q:\n%s", want, bt)
		}
	}
	if strings.Contains(bt, fdSysroot) {
		t.Errorf("backtrace shows the descriptor path:\n%s", bt)
	}
}

// TestWorkerConcurrent: retraces running at once share sysroots.
func TestWorkerConcurrent(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{})
	dirs := []string{
		workerCrashDir(t, workerCore(t, "crashme-1.0.core.zst")),
		workerCrashDir(t, workerCore(t, "counter-1.1.core.zst")),
	}
	errs := make(chan error, 6)
	for i := range 6 {
		go func() {
			_, err := w.Retrace(context.Background(), dirs[i%2], nil)
			errs <- err
		}()
	}
	for range 6 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if n, _, builds := w.cache.stats(); n != 2 || builds != 2 {
		t.Errorf("%d sysroots, %d builds for 2 package sets", n, builds)
	}
}

// TestWorkerSandbox looks at gdb's surroundings from inside: gdb's shell
// commands run in its namespaces, with its user, limits and environment.
func TestWorkerSandbox(t *testing.T) {
	workerNeedsGDB(t)
	if os.Geteuid() != 0 {
		t.Skip("the sandbox's user switch and network namespace need root")
	}
	t.Setenv("DEBUGINFOD_URLS", "http://debuginfod.invalid")
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{})
	w.gdbExtra = []string{
		"echo --net--\\n", "shell cat /proc/net/dev",
		"echo --id--\\n", "shell id -u; id -g; id -G",
		"echo --limits--\\n", "shell grep -E '^Max (address space|core file size)' /proc/self/limits",
		"echo --env--\\n", "shell env",
		"echo --end--\\n",
	}
	res, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, "crashme-1.0.core.zst")), nil)
	bt := res.Backtrace
	if err != nil {
		t.Fatal(err)
	}
	section := func(name string) string {
		_, rest, _ := strings.Cut(bt, "--"+name+"--\n")
		s, _, _ := strings.Cut(rest, "--")
		return s
	}
	t.Logf("inside gdb:\n%s", section("net")+section("id")+section("limits")+section("env"))

	var ifaces []string
	for _, l := range strings.Split(section("net"), "\n") {
		if name, _, ok := strings.Cut(l, ":"); ok && !strings.Contains(name, "|") {
			ifaces = append(ifaces, strings.TrimSpace(name))
		}
	}
	if strings.Join(ifaces, " ") != "lo" {
		t.Errorf("network interfaces in gdb's namespace: %v, want only lo", ifaces)
	}
	if host, err := os.ReadFile("/proc/net/dev"); err == nil {
		t.Logf("the host's, for comparison:\n%s", host)
	}
	if id := strings.Fields(section("id")); strings.Join(id, " ") != "65534 65534 65534" {
		t.Errorf("gdb runs as uid gid groups %v, want nobody's 65534 and no other group", id)
	}
	if lim := section("limits"); !regexp.MustCompile(`Max address space\s+2147483648\s+2147483648`).MatchString(lim) ||
		!regexp.MustCompile(`Max core file size\s+0\s+0`).MatchString(lim) {
		t.Errorf("limits:\n%s", lim)
	}
	env := section("env")
	if strings.Contains(env, "DEBUGINFOD") {
		t.Errorf("DEBUGINFOD_URLS reached gdb:\n%s", env)
	}
	if !strings.Contains(env, "HOME="+w.cfg.SysrootDir+"/.run-") {
		t.Errorf("HOME is not the run directory:\n%s", env)
	}
}

// TestWorkerSysrootReused: the second retrace of a core uses the sysroot
// the first one built.
func TestWorkerSysrootReused(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{})
	c := workerCore(t, "greeter-1.0.core.zst")
	dir := workerCrashDir(t, c)
	var log1, log2 bytes.Buffer
	if _, err := w.Retrace(context.Background(), dir, &log1); err != nil {
		t.Fatal(err)
	}
	key := workerSysrootKey(t, w, log1.String())
	st1, err := os.Stat(filepath.Join(w.cfg.SysrootDir, key))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Retrace(context.Background(), dir, &log2); err != nil {
		t.Fatal(err)
	}
	t.Logf("first:\n%s\nsecond:\n%s", log1.String(), log2.String())
	if !strings.Contains(log1.String(), key[:16]+": assembled") || !strings.Contains(log2.String(), key[:16]+": reused") {
		t.Error("the log does not say assembled, then reused")
	}
	st2, err := os.Stat(filepath.Join(w.cfg.SysrootDir, key))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, builds := w.cache.stats(); builds != 1 || !os.SameFile(st1, st2) {
		t.Errorf("%d builds, same directory %v: the sysroot was rebuilt", builds, os.SameFile(st1, st2))
	}
	// The sysroot holds the packages' files as hard links, the merged-/usr
	// links, debuginfo and sources.
	root := filepath.Join(w.cfg.SysrootDir, key)
	for _, p := range []string{"usr/bin/greeter", "usr/lib64/libgreeter.so.1", "lib64", "usr/src/debug/greeter-1.0-1.x86_64/greeter.c"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			t.Error(err)
		}
	}
	m, _, err := readSysrootManifest(root)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"greeter-1.0-1.x86_64", "greeter-debuginfo-1.0-1.x86_64", "greeter-debugsource-1.0-1.x86_64"}
	if !slices.Equal(m.Packages, want) || m.Copied != 0 {
		t.Errorf("manifest packages %v (copied %d), want %v, all linked", m.Packages, m.Copied, want)
	}
	// A new worker on the same directory finds it.
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	w2, err := New(idx, pool, w.cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Close()
	var log3 bytes.Buffer
	if _, err := w2.Retrace(context.Background(), dir, &log3); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(log3.String(), key[:16]+": reused") {
		t.Errorf("a new worker rebuilt the sysroot:\n%s", log3.String())
	}
}

var workerKeyRE = regexp.MustCompile(`sysroot ([0-9a-f]{16}): `)

func workerSysrootKey(t testing.TB, w *Worker, log string) string {
	t.Helper()
	m := workerKeyRE.FindStringSubmatch(log)
	if m == nil {
		t.Fatalf("no sysroot in the log:\n%s", log)
	}
	ents, err := filepath.Glob(filepath.Join(w.cfg.SysrootDir, m[1]+"*"))
	if err == nil && len(ents) == 1 {
		return filepath.Base(ents[0])
	}
	t.Fatalf("sysroot %s not found: %v %v", m[1], ents, err)
	return ""
}

// TestWorkerSysrootEvicted: with a budget smaller than one sysroot, a
// sysroot lives while its retrace runs and is removed after.
func TestWorkerSysrootEvicted(t *testing.T) {
	workerNeedsGDB(t)
	idx, pool := workerStore(t, "repo")
	w := newTestWorker(t, idx, pool, Config{SysrootBudget: 1})
	for _, name := range []string{"crashme-1.0.core.zst", "counter-1.1.core.zst"} {
		if _, err := w.Retrace(context.Background(), workerCrashDir(t, workerCore(t, name)), nil); err != nil {
			t.Fatal(err)
		}
		if n, total, _ := w.cache.stats(); n != 0 || total != 0 {
			t.Errorf("after %s: %d sysroots, %d bytes kept with a 1-byte budget", name, n, total)
		}
	}
	ents, err := os.ReadDir(w.cfg.SysrootDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.Name() != ".lock" {
			t.Errorf("left in the sysroot directory: %s", e.Name())
		}
	}
}

// TestWorkerTiming prints the median retrace time of a fixture core over
// five runs, cold (new sysroot, no plain copies in the pool) and warm.
func TestWorkerTiming(t *testing.T) {
	workerNeedsGDB(t)
	if testing.Short() {
		t.Skip("timing")
	}
	idx, pool := workerStore(t, "repo")
	c := workerCore(t, "crashme-1.0.core.zst")
	dir := workerCrashDir(t, c)
	median := func(ds []time.Duration) time.Duration {
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	var cold, warm []time.Duration
	for range 5 {
		if err := os.RemoveAll(filepath.Join(pool.Dir(), "plain")); err != nil {
			t.Fatal(err)
		}
		w, err := New(idx, pool, Config{SysrootDir: filepath.Join(workerDir(t), "sysroots")})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err = w.Retrace(context.Background(), dir, nil)
		cold = append(cold, time.Since(start))
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	w := newTestWorker(t, idx, pool, Config{})
	if _, err := w.Retrace(context.Background(), dir, nil); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		start := time.Now()
		if _, err := w.Retrace(context.Background(), dir, nil); err != nil {
			t.Fatal(err)
		}
		warm = append(warm, time.Since(start))
	}
	t.Logf("retrace %s: median of 5: cold %v %v, warm %v %v", c.File, median(cold), cold, median(warm), warm)
	if m := median(warm); m > 2*time.Second {
		t.Errorf("warm median %v, want at most 2s", m)
	}
}

func BenchmarkWorkerRetrace(b *testing.B) {
	workerNeedsGDB(b)
	idx, pool := workerStore(b, "repo")
	w := newTestWorker(b, idx, pool, Config{})
	dir := workerCrashDir(b, workerCore(b, "crashme-1.0.core.zst"))
	for b.Loop() {
		if _, err := w.Retrace(context.Background(), dir, nil); err != nil {
			b.Fatal(err)
		}
	}
}
