package main

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/taskclient"
	"github.com/retraced/retraced/retrace/worker"
)

// coreRetracer is the test Retracer: it reads the coredump's ELF header
// and answers with its type and machine, and the executable the crash
// directory names; a coredump that is not ELF fails.
type coreRetracer struct{}

func (r coreRetracer) Retrace(ctx context.Context, crashDir string, log io.Writer) (retrace.Result, error) {
	bt, err := r.retrace(ctx, crashDir, log)
	return retrace.Result{Backtrace: bt}, err
}

func (coreRetracer) retrace(ctx context.Context, crashDir string, log io.Writer) (string, error) {
	fmt.Fprintf(log, "%s coreRetracer: reading the coredump\n", time.Now().UTC().Format("2006-01-02 15:04:05"))
	f, err := elf.Open(filepath.Join(crashDir, "coredump"))
	if err != nil {
		return "", fmt.Errorf("coredump is not an ELF file: %w", err)
	}
	defer f.Close()
	bt := fmt.Sprintf("core %s %s\n", f.Type, f.Machine)
	if exe, err := os.ReadFile(filepath.Join(crashDir, "executable")); err == nil {
		bt += "executable " + string(exe) + "\n"
	}
	entries, err := os.ReadDir(crashDir)
	if err != nil {
		return "", err
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return bt + "files " + strings.Join(names, " ") + "\n", nil
}

// knownPackages is a PackageChecker over "nvr arch" strings.
type knownPackages map[string]bool

func (p knownPackages) HasNVRArch(nvr, arch string) (bool, error) { return p[nvr+" "+arch], nil }

// startServer runs retrace.Server over HTTP (TLS when tls is set).
func startServer(t *testing.T, r retrace.Retracer, tls bool) *httptest.Server {
	t.Helper()
	return startServerOn(t, r, tls, nil)
}

// startServerOn is startServer listening on ln (a free port when nil).
func startServerOn(t *testing.T, r retrace.Retracer, tls bool, ln net.Listener) *httptest.Server {
	t.Helper()
	s, err := retrace.New(filepath.Join(t.TempDir(), "tasks"), r, retrace.Config{
		MinFreeSpace:  -1,
		MaxPackedSize: 8, MaxUnpackedSize: 8,
		Packages: knownPackages{"crashme-1.0-1 x86_64": true},
	})
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	s.Register(e)
	hs := httptest.NewUnstartedServer(e)
	if ln != nil {
		hs.Listener.Close()
		hs.Listener = ln
	}
	if tls {
		hs.StartTLS()
	} else {
		hs.Start()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		<-done
		hs.Close()
	})
	return hs
}

// runClient runs retrace-client in-process with args.
func runClient(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errw bytes.Buffer
	root := newRoot()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&errw)
	err = root.ExecuteContext(context.Background())
	return out.String(), errw.String(), err
}

var (
	coreData []byte
	coreInfo fixtures.Core
)

// fixtureCore returns the path of a real core (crashme-1.0, x86-64) and
// what fixtures/cores/cores.txt says of it.
func fixtureCore(t *testing.T) (string, fixtures.Core) {
	t.Helper()
	if coreData == nil {
		for _, c := range fixtures.Cores(t) {
			if c.File == "crashme-1.0.core.zst" {
				coreInfo = c
			}
		}
		b, err := os.ReadFile(fixtures.CoreFile(t, coreInfo.File))
		if err != nil {
			t.Fatal(err)
		}
		coreData = b
	}
	p := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(p, coreData, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, coreInfo
}

// makeCrashDir makes an ABRT crash directory with the fixture core, plus
// files ABRT keeps that are not sent.
func makeCrashDir(t *testing.T, core []byte, extra map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"coredump":     string(core),
		"executable":   "/usr/bin/crashme",
		"package":      "crashme-1.0-1",
		"architecture": "x86_64",
		"os_release":   "Fedora release 40 (Forty)",
		"reason":       "crashme killed by SIGSEGV",
		"cmdline":      "crashme",
	}
	for k, v := range extra {
		files[k] = v
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var taskRE = regexp.MustCompile(`^Task Id: ([0-9]+)\nTask Password: ([0-9A-Za-z]{32})\n$`)

func TestCreateStatusLogBacktrace(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	dir := makeCrashDir(t, core, nil)
	out, errOut, err := runClient(t, "create", "--url", hs.URL, "-d", dir)
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	m := taskRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed %q", out)
	}
	id, pw := m[1], m[2]

	// status until finished, with the options before the operation as
	// abrt-retrace-client allows.
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, errOut, err = runClient(t, "--url", hs.URL, "-t", id, "-p", pw, "status")
		if err != nil {
			t.Fatalf("status: %v\n%s", err, errOut)
		}
		if strings.HasPrefix(out, "Task Status: FINISHED") {
			break
		}
		if out != "Task Status: PENDING\nWaiting for a free worker\n" && out != "Task Status: PENDING\nGenerating backtrace\n" {
			t.Fatalf("status printed %q", out)
		}
		if time.Now().After(deadline) {
			t.Fatal("task did not finish")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if want := "Task Status: FINISHED_SUCCESS\nRetrace job finished successfully\n"; out != want {
		t.Errorf("status printed %q, want %q", out, want)
	}
	out, _, err = runClient(t, "backtrace", "--url", hs.URL, "-t", id, "-p", pw)
	if err != nil {
		t.Fatal(err)
	}
	// Only the files the protocol allows were packed, and no others.
	want := "core ET_CORE EM_X86_64\nexecutable /usr/bin/crashme\nfiles coredump executable os_release package\n"
	if out != want {
		t.Errorf("backtrace printed %q, want %q", out, want)
	}
	out, _, err = runClient(t, "log", "--url", hs.URL, "-t", id, "-p", pw)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "coreRetracer: reading the coredump\n") || !strings.HasSuffix(out, "retrace finished successfully\n\n") {
		t.Errorf("log printed %q", out)
	}
	out, _, err = runClient(t, "exploitable", "--url", hs.URL, "-t", id, "-p", pw)
	if err != nil || out != "No exploitability information available.\n" {
		t.Errorf("exploitable: %q %v", out, err)
	}
}

func TestURLSources(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	tests := []struct {
		name string
		env  string
		args []string
	}{
		{"--url", "", []string{"--url", hs.URL}},
		{"--uri", "", []string{"--uri", hs.URL}},
		{"--uri=", "", []string{"--uri=" + hs.URL}},
		{"RETRACE_SERVER_URI", hs.URL, nil},
		{"flag over environment", "http://127.0.0.1:1", []string{"--url", hs.URL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("RETRACE_SERVER_URI", tt.env)
			out, errOut, err := runClient(t, append([]string{"create", "-c", corePath}, tt.args...)...)
			if err != nil || !taskRE.MatchString(out) {
				t.Errorf("create: %q %v\n%s", out, err, errOut)
			}
		})
	}
}

func TestBatch(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, info := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("success", func(t *testing.T) {
		out, errOut, err := runClient(t, "batch", "--url", hs.URL, "-d", makeCrashDir(t, core, nil))
		if err != nil {
			t.Fatalf("batch: %v\n%s", err, errOut)
		}
		want := "core ET_CORE EM_X86_64\nexecutable /usr/bin/crashme\nfiles coredump executable os_release package\n\n"
		if out != want {
			t.Errorf("batch printed %q, want %q", out, want)
		}
		if !strings.Contains(errOut, "Retrace job finished successfully\n") || !regexp.MustCompile(`(?m)^Task Id: [0-9]+$`).MatchString(errOut) {
			t.Errorf("progress %q", errOut)
		}
	})
	t.Run("bare core", func(t *testing.T) {
		out, errOut, err := runClient(t, "batch", "--url", hs.URL, "-c", corePath)
		if err != nil {
			t.Fatalf("batch: %v\n%s", err, errOut)
		}
		// The executable is the one cores.txt names for this core (what
		// the fixtures' build recorded), found in the core by the client.
		want := "core ET_CORE EM_X86_64\nexecutable " + info.Executable + "\nfiles coredump executable\n\n"
		if out != want {
			t.Errorf("batch -c printed %q, want %q", out, want)
		}
	})
	t.Run("failure prints the log", func(t *testing.T) {
		dir := makeCrashDir(t, nil, map[string]string{"coredump": "this is no ELF file"})
		out, errOut, err := runClient(t, "batch", "--url", hs.URL, "-d", dir, "--no-pkgcheck")
		var ec exitCode
		if !asExitCode(err, &ec) || ec != 1 {
			t.Fatalf("batch: %v, want exit status 1", err)
		}
		if !strings.Contains(errOut, "Retrace failed. Try again later and if the problem persists report this issue please.\n") ||
			!strings.Contains(errOut, "Retrace job failed\n") {
			t.Errorf("progress %q", errOut)
		}
		if !strings.Contains(out, "retrace failed: coredump is not an ELF file") {
			t.Errorf("batch printed %q, want the log", out)
		}
	})
}

func asExitCode(err error, ec *exitCode) bool {
	e, ok := err.(exitCode)
	if ok {
		*ec = e
	}
	return ok
}

func TestCreateBareCore(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	before, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	out, errOut, err := runClient(t, "create", "--url", hs.URL, "-c", corePath)
	if err != nil || !taskRE.MatchString(out) {
		t.Fatalf("create -c: %q %v\n%s", out, err, errOut)
	}
	after, err := os.ReadDir(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range after {
		if strings.HasPrefix(e.Name(), "retrace-client-") && !contains(before, e.Name()) {
			t.Errorf("temporary crash directory %s left behind", e.Name())
		}
	}
}

func contains(es []os.DirEntry, name string) bool {
	for _, e := range es {
		if e.Name() == name {
			return true
		}
	}
	return false
}

func TestErrors(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	notCore := filepath.Join(t.TempDir(), "notcore")
	if err := os.WriteFile(notCore, []byte("plain text"), 0o644); err != nil {
		t.Fatal(err)
	}
	noCoredump := t.TempDir()
	big := makeCrashDir(t, core, map[string]string{"coredump": strings.Repeat("x", 9<<20)})
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string // on stderr, besides the error
	}{
		{"create without input", []string{"create"}, "Either problem directory or coredump is needed.", ""},
		{"create with both", []string{"create", "-d", noCoredump, "-c", corePath}, "not both", ""},
		{"status without id", []string{"status", "-p", "x"}, "Task id is needed.", ""},
		{"log without password", []string{"log", "-t", "123"}, "Task password is needed.", ""},
		{"unknown task", []string{"status", "-t", "123456789", "-p", "wrong"}, "Unexpected HTTP response from server: 404\nThere is no such task", ""},
		{"crash directory without coredump", []string{"create", "-d", noCoredump}, "'coredump' must be a regular file", ""},
		{"core that is not ELF", []string{"create", "-c", notCore}, "not an ELF core file", ""},
		{"unknown package", []string{"create", "-d", makeCrashDir(t, core, map[string]string{"package": "crashme-9.9-1"})},
			"Unknown package sent to Retrace server.", "Retrace server is unable to process package 'crashme-9.9-1.x86_64'."},
		{"crash too large", []string{"create", "-d", big},
			"The size of your crash is 9.0 MiB, but the retrace server only accepts crashes smaller or equal to 8.0 MiB.", "crash is too large"},
		{"server down", []string{"status", "-t", "1", "-p", "x", "--url", "http://127.0.0.1:1"}, "cannot connect to the retrace server", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if !strings.Contains(strings.Join(args, " "), "--url") {
				args = append(args, "--url", hs.URL)
			}
			_, errOut, err := runClient(t, args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want %q", err, tt.wantErr)
			}
			if !strings.Contains(errOut, tt.wantOut) {
				t.Errorf("stderr %q, want %q", errOut, tt.wantOut)
			}
		})
	}
	// --no-pkgcheck skips the check the unknown package failed.
	out, errOut, err := runClient(t, "create", "--url", hs.URL, "--no-pkgcheck", "-d", makeCrashDir(t, core, map[string]string{"package": "crashme-9.9-1"}))
	if err != nil || !taskRE.MatchString(out) {
		t.Errorf("create --no-pkgcheck: %q %v\n%s", out, err, errOut)
	}
}

func TestWrongPassword(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	corePath, _ := fixtureCore(t)
	out, _, err := runClient(t, "create", "--url", hs.URL, "-c", corePath)
	if err != nil {
		t.Fatal(err)
	}
	id := taskRE.FindStringSubmatch(out)[1]
	for _, op := range []string{"status", "log", "backtrace"} {
		_, _, err := runClient(t, op, "--url", hs.URL, "-t", id, "-p", strings.Repeat("A", 32))
		if err == nil || err.Error() != "Unexpected HTTP response from server: 403\nInvalid password" {
			t.Errorf("%s: %v", op, err)
		}
	}
}

func TestInsecure(t *testing.T) {
	hs := startServer(t, coreRetracer{}, true)
	corePath, _ := fixtureCore(t)
	if _, _, err := runClient(t, "create", "--url", hs.URL, "-c", corePath); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without -k: %v, want a certificate error", err)
	}
	for _, args := range [][]string{{"-k"}, {"--insecure"}} {
		out, errOut, err := runClient(t, append([]string{"create", "--url", hs.URL, "-c", corePath}, args...)...)
		if err != nil || !taskRE.MatchString(out) {
			t.Errorf("with %v: %q %v\n%s", args, out, err, errOut)
		}
	}
	t.Setenv("RETRACE_SERVER_INSECURE", "insecure")
	if out, _, err := runClient(t, "create", "--url", hs.URL, "-c", corePath); err != nil || !taskRE.MatchString(out) {
		t.Errorf("with RETRACE_SERVER_INSECURE: %q %v", out, err)
	}
}

func TestParseSettings(t *testing.T) {
	s := taskclient.ParseSettings("running_tasks 1\nMAX_RUNNING_TASKS 5\nmax_packed_size 50\nmax_unpacked_size 1024\n" +
		"supported_formats application/x-xz-compressed-tar application/x-gzip\nsupported_releases fedora-40-x86_64 rhel-9-x86_64\nnonsense\n")
	if s.RunningTasks != 1 || s.MaxRunningTasks != 5 || s.MaxPackedSize != 50<<20 || s.MaxUnpackedSize != 1024<<20 ||
		strings.Join(s.Formats, ",") != "application/x-xz-compressed-tar,application/x-gzip" ||
		strings.Join(s.Releases, ",") != "fedora-40-x86_64,rhel-9-x86_64" {
		t.Errorf("%+v", s)
	}
}

// TestCreateSendsLength: create packs the crash first and uploads it with
// a Content-Length, not chunked, as abrt-retrace-client does.
func TestCreateSendsLength(t *testing.T) {
	hs := startServer(t, coreRetracer{}, false)
	target, err := url.Parse(hs.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var mu sync.Mutex
	var lengths []int64
	var chunked bool
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/create" {
			mu.Lock()
			lengths = append(lengths, r.ContentLength)
			chunked = chunked || slices.Contains(r.TransferEncoding, "chunked")
			mu.Unlock()
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	corePath, _ := fixtureCore(t)
	out, errOut, err := runClient(t, "create", "--url", front.URL, "-c", corePath)
	if err != nil || !taskRE.MatchString(out) {
		t.Fatalf("create: %q %v\n%s", out, err, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lengths) != 1 || lengths[0] <= 0 || chunked {
		t.Errorf("create sent Content-Length %v, chunked %v; want one upload with a length", lengths, chunked)
	}
}

// realWorkerServer is a task server whose Retracer is the real worker
// over the mirrored fixture repository (skipping without gdb, which CI
// installs).
func realWorkerServer(t *testing.T) *httptest.Server {
	t.Helper()
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed (CI installs it)")
	}
	return startServer(t, newRealWorker(t, fixturestore.New(t, "repo")), false)
}

// newRealWorker is the real worker on st's index and pool, its sysroots
// in a directory gdb (running as nobody) can reach.
func newRealWorker(t *testing.T, st *fixturestore.Store) *worker.Worker {
	t.Helper()
	dir := t.TempDir()
	for _, p := range []string{filepath.Dir(dir), dir} { // gdb may run as nobody
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	w, err := worker.New(st.Index, st.Pool, worker.Config{SysrootDir: filepath.Join(dir, "sysroots")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// TestBatchRealWorker: batch against a server whose worker is the real
// one (the fixture repository mirrored, the real gdb). The fixture core's
// libc and ld.so are Debian's, in no package of the mirror: the client's
// output says the backtrace's rating and names each missing object with
// its build-id, as the status and the log do.
func TestBatchRealWorker(t *testing.T) {
	hs := realWorkerServer(t)
	corePath, info := fixtureCore(t)
	out, errOut, err := runClient(t, "batch", "--url", hs.URL, "-c", corePath)
	if err != nil {
		t.Fatalf("batch: %v\n%s", err, errOut)
	}
	if !strings.Contains(out, "crashme_dispatch") {
		t.Errorf("batch printed no backtrace:\n%s", out)
	}
	id := regexp.MustCompile(`Task Id: (\d+)`).FindStringSubmatch(errOut)
	pw := regexp.MustCompile(`Task Password: (\S+)`).FindStringSubmatch(errOut)
	logOut, _, err := runClient(t, "log", "--url", hs.URL, "-t", id[1], "-p", pw[1])
	if err != nil || !strings.Contains(logOut, "backtrace rating: ") || !strings.Contains(logOut, "missing from the mirror: ") {
		t.Errorf("log: %v\n%s", err, logOut)
	}
	// The server's directories are not the client's business.
	tmp := filepath.Dir(t.TempDir())
	if strings.Contains(logOut, tmp) {
		t.Errorf("the log shows the server's paths (%s):\n%s", tmp, logOut)
	}
	if !regexp.MustCompile(`(?m)^Backtrace rating: [0-4]/4 \(quality [0-9.]+: \d+ of \d+ frames`).MatchString(errOut) {
		t.Errorf("batch's progress has no rating:\n%s", errOut)
	}
	// Each unresolved module of the core, as eu-unstrip saw it, is named
	// with its build-id.
	missing := 0
	for _, m := range info.Modules {
		if m.BuildID == "" || (m.Name != "libc.so.6" && m.Name != "ld-linux-x86-64.so.2") {
			continue
		}
		missing++
		want := regexp.MustCompile(`(?m)^Missing: /\S*/` + regexp.QuoteMeta(m.Name) + " " + m.BuildID + "$")
		if !want.MatchString(errOut) {
			t.Errorf("batch's progress lacks %s:\n%s", want, errOut)
		}
	}
	if missing == 0 {
		t.Fatal("the fixture core maps no Debian library: the test tests nothing")
	}

	// A core cut short fails; its log says why without the server's paths.
	b, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	cut := filepath.Join(t.TempDir(), "core")
	if err := os.WriteFile(cut, b[:4096], 0o644); err != nil {
		t.Fatal(err)
	}
	out, errOut, err = runClient(t, "batch", "--url", hs.URL, "-d", makeCrashDir(t, b[:4096], nil))
	var ec exitCode
	if !asExitCode(err, &ec) || ec != 1 || !strings.Contains(out, "read core") {
		t.Fatalf("batch of a cut core: %v\n%s\n%s", err, out, errOut)
	}
	if strings.Contains(out, tmp) {
		t.Errorf("the failure's log shows the server's paths (%s):\n%s", tmp, out)
	}
}

// tokenRetracer is coreRetracer reporting a worker's statistics, each
// retrace taking one token from allow first.
type tokenRetracer struct{ allow chan struct{} }

func (r tokenRetracer) Retrace(ctx context.Context, crashDir string, log io.Writer) (retrace.Result, error) {
	select {
	case <-r.allow:
	case <-ctx.Done():
		return retrace.Result{}, ctx.Err()
	}
	res, err := coreRetracer{}.Retrace(ctx, crashDir, log)
	res.Stats = retrace.RetraceStats{Packages: 4, SysrootBytes: 1 << 20}
	return res, err
}

// TestStatusShowsEstimate: once a task has finished, `status` of a
// running task prints the server's estimate of its duration.
func TestStatusShowsEstimate(t *testing.T) {
	r := tokenRetracer{allow: make(chan struct{}, 2)}
	hs := startServer(t, r, false)
	corePath, _ := fixtureCore(t)
	core, err := os.ReadFile(corePath)
	if err != nil {
		t.Fatal(err)
	}
	r.allow <- struct{}{}
	if _, errOut, err := runClient(t, "batch", "--url", hs.URL, "-d", makeCrashDir(t, core, nil)); err != nil {
		t.Fatalf("batch: %v\n%s", err, errOut)
	}
	out, errOut, err := runClient(t, "create", "--url", hs.URL, "-d", makeCrashDir(t, core, nil))
	if err != nil {
		t.Fatalf("create: %v\n%s", err, errOut)
	}
	m := taskRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("create printed %q", out)
	}
	defer func() { r.allow <- struct{}{} }()
	out, errOut, err = runClient(t, "--url", hs.URL, "-t", m[1], "-p", m[2], "status")
	if err != nil {
		t.Fatalf("status: %v\n%s", err, errOut)
	}
	want := regexp.MustCompile(`^Task Status: PENDING\n(Waiting for a free worker|Generating backtrace)\nEstimated duration: about [0-9.]+ s; from the last 1 finished tasks: 0% reused a cached sysroot; assembling one, median [0-9.]+ s\n$`)
	if !want.MatchString(out) {
		t.Errorf("status printed %q", out)
	}
}

// TestBatchMissingMultifile: the real worker on a mirror of repo-dist
// without the package that ships the dwz multifile (toolbox-debuginfo),
// and the core of a crash in the subpackage toolbox-extra: gdb names no
// frame, the task fails, and batch's progress (the status body) gives
// the rating and names the missing multifile by build-id with the .debug
// file that needs it; the log it prints says both too. Which multifile
// and package come from the fixture's reference lists.
func TestBatchMissingMultifile(t *testing.T) {
	if _, err := exec.LookPath("gdb"); err != nil {
		t.Skip("gdb not installed (CI installs it)")
	}
	var core fixtures.Core
	for _, c := range fixtures.DistCores(t) {
		if strings.HasPrefix(c.File, "toolbox-extra-") {
			core = c
		}
	}
	inCore := make(map[string]bool)
	for _, m := range core.Modules {
		inCore[m.BuildID] = true
	}
	altID, shipper := "", ""
	var debugPaths []string
	for _, l := range fixtures.AltLinks(t) {
		if inCore[l.BuildID] {
			altID = l.AltBuildID
			debugPaths = append(debugPaths, regexp.QuoteMeta(l.Path))
		}
	}
	for _, f := range fixtures.DistELFFiles(t) {
		if f.BuildID == altID && f.Kind == "debuginfo" {
			shipper = f.NEVRA
		}
	}
	if altID == "" || shipper == "" {
		t.Fatal("the reference lists give toolbox-extra's core no dwz multifile: the test tests nothing")
	}

	st := fixturestore.Empty(t)
	src := mirror.Source{Name: "dist", URL: fixtures.Path("repo-dist"), Exclude: "/" + regexp.QuoteMeta(shipper) + `\.rpm$`}
	if _, err := st.Mirror.Add(context.Background(), src); err != nil {
		t.Fatal(err)
	}
	if res, err := st.Mirror.Sync(context.Background(), "dist", nil); err != nil || !res.OK() {
		t.Fatalf("sync: %v %v", err, res)
	}
	hs := startServer(t, newRealWorker(t, st), false)

	out, errOut, err := runClient(t, "batch", "--url", hs.URL, "-c", fixtures.CoreFile(t, core.File))
	var ec exitCode
	if !asExitCode(err, &ec) || ec != 1 {
		t.Fatalf("batch: %v, want exit status 1 (an unusable backtrace)\n%s\n%s", err, errOut, out)
	}
	missing := `'s dwz multifile ` + altID + `$`
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Backtrace rating: 0/4 \(quality 0\.00: 0 of [1-9]\d* frames of the crashing thread, `),
		regexp.MustCompile(`(?m)^Missing: (?:` + strings.Join(debugPaths, "|") + `)` + missing),
	} {
		if !want.MatchString(errOut) {
			t.Errorf("batch's progress lacks %s:\n%s", want, errOut)
		}
	}
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`backtrace rating: 0/4 \(quality 0\.00: 0 of [1-9]\d* frames of the crashing thread`),
		regexp.MustCompile(`(?m)missing from the mirror: (?:` + strings.Join(debugPaths, "|") + `)` + missing),
		regexp.MustCompile(`unusable backtrace`),
	} {
		if !want.MatchString(out) {
			t.Errorf("the log batch prints lacks %s:\n%s", want, out)
		}
	}
}
