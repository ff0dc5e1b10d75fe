package retrace

import (
	"archive/tar"
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/klauspost/compress/gzip"
	"github.com/ulikunitz/xz"

	"github.com/retraced/retraced/fixtures"
)

// elfRetracer is the test Retracer: it reads the coredump's ELF header
// with debug/elf and answers with its type and machine, and the
// executable's path when the crash directory names one; a coredump that is
// not ELF fails. When gate is not nil it waits for gate to close (or ctx
// to end) first, so tests can hold tasks running.
type elfRetracer struct {
	gate    chan struct{}
	started atomic.Int32
	runs    atomic.Int32
}

func (r *elfRetracer) Retrace(ctx context.Context, crashDir string, log io.Writer) (Result, error) {
	bt, err := r.retrace(ctx, crashDir, log)
	return Result{Backtrace: bt}, err
}

func (r *elfRetracer) retrace(ctx context.Context, crashDir string, log io.Writer) (string, error) {
	r.started.Add(1)
	fmt.Fprintf(log, "%s elfRetracer: reading %s\n", time.Now().UTC().Format(logTimeFormat), filepath.Join(crashDir, "coredump"))
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
	r.runs.Add(1)
	f, err := elf.Open(filepath.Join(crashDir, "coredump"))
	if err != nil {
		return "", fmt.Errorf("coredump is not an ELF file: %w", err)
	}
	defer f.Close()
	bt := fmt.Sprintf("core %s %s\n", f.Type, f.Machine)
	if exe, err := os.ReadFile(filepath.Join(crashDir, "executable")); err == nil {
		bt += "executable " + strings.TrimSpace(string(exe)) + "\n"
	}
	return bt, nil
}

// hangRetracer blocks until its context ends.
type hangRetracer struct{}

func (hangRetracer) Retrace(ctx context.Context, crashDir string, log io.Writer) (Result, error) {
	fmt.Fprintf(log, "%s hangRetracer: waiting for ever\n", time.Now().UTC().Format(logTimeFormat))
	<-ctx.Done()
	return Result{}, ctx.Err()
}

// panicRetracer panics.
type panicRetracer struct{}

func (panicRetracer) Retrace(context.Context, string, io.Writer) (Result, error) {
	panic("boom")
}

var (
	coreOnce  sync.Once
	coreBytes []byte
	coreErr   error
)

// fixtureCore returns the bytes of a real core file from fixtures
// (crashme-1.0, x86-64, dumped by the kernel).
func fixtureCore(t testing.TB) []byte {
	t.Helper()
	coreOnce.Do(func() {
		coreBytes, coreErr = os.ReadFile(fixtures.CoreFile(t, "crashme-1.0.core.zst"))
	})
	if coreErr != nil {
		t.Fatal(coreErr)
	}
	return coreBytes
}

// tarMember is one tar entry of a test archive.
type tarMember struct {
	name     string
	typ      byte // tar.TypeReg when 0
	body     []byte
	linkname string
}

func tarBytes(t testing.TB, ms ...tarMember) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		if m.typ == tar.TypeXGlobalHeader {
			if err := tw.WriteHeader(&tar.Header{Name: m.name, Typeflag: m.typ, PAXRecords: map[string]string{"comment": "made by a test"}}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		h := &tar.Header{Name: m.name, Typeflag: m.typ, Mode: 0o644, Linkname: m.linkname, ModTime: time.Unix(1735689600, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(m.body))
		}
		if h.Typeflag == tar.TypeDir {
			h.Mode = 0o755
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			if _, err := tw.Write(m.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func xzBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, err := xz.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// crashTar is a good crash directory: the fixture core, its executable
// and package.
func crashTar(t testing.TB) []byte {
	return tarBytes(t,
		tarMember{name: "coredump", body: fixtureCore(t)},
		tarMember{name: "executable", body: []byte("/usr/bin/crashme")},
		tarMember{name: "package", body: []byte("crashme-1.0-1")},
		tarMember{name: "os_release", body: []byte("Fedora release 40 (Forty)\n")})
}

var (
	crashXZOnce  sync.Once
	crashXZBytes []byte
)

// crashXZ is crashTar packed with xz, made once.
func crashXZ(t testing.TB) []byte {
	crashXZOnce.Do(func() { crashXZBytes = xzBytes(t, crashTar(t)) })
	return crashXZBytes
}

// testServer is a Server behind a real HTTP server, with its workers
// running until stop is called (or the test ends).
type testServer struct {
	*Server
	url  string
	dir  string // the Server's directory
	root string // its parent, to check nothing is written outside dir
	stop func()
}

func testConfig() Config {
	return Config{
		MaxRunningTasks: 2,
		MaxQueuedTasks:  8,
		MaxPackedSize:   1,
		MaxUnpackedSize: 4,
		MinFreeSpace:    -1,
		TaskTimeout:     20 * time.Second,
		DeleteAfter:     -1,
	}
}

func startServer(t *testing.T, dir string, r Retracer, cfg Config) *testServer {
	t.Helper()
	s, err := New(dir, r, cfg)
	if err != nil {
		t.Fatal(err)
	}
	gin.SetMode(gin.TestMode)
	e := gin.New()
	s.Register(e)
	hs := httptest.NewServer(e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Run(ctx)
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			hs.Close()
		})
	}
	t.Cleanup(stop)
	return &testServer{Server: s, url: hs.URL, dir: dir, root: filepath.Dir(dir), stop: stop}
}

func newTestServer(t *testing.T, r Retracer, cfg Config) *testServer {
	t.Helper()
	return startServer(t, filepath.Join(t.TempDir(), "tasks"), r, cfg)
}

// post sends body to /create with Content-Type ct.
func (ts *testServer) post(t testing.TB, ct string, body io.Reader) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, ts.url+"/create", body)
	if err != nil {
		t.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// create posts a crash archive and returns the task id and password; it
// fails the test unless the answer is 201.
func (ts *testServer) create(t testing.TB, ct string, body []byte) (string, string) {
	t.Helper()
	resp := ts.post(t, ct, bytes.NewReader(body))
	msg := readBody(t, resp)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d %s", resp.StatusCode, msg)
	}
	return resp.Header.Get(HeaderTaskID), resp.Header.Get(HeaderTaskPassword)
}

// do sends a request for a task path with a password ("" for none).
func (ts *testServer) do(t testing.TB, method, path, password string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, ts.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if password != "" {
		req.Header.Set(HeaderTaskPassword, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, readBody(t, resp)
}

func readBody(t testing.TB, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitStatus polls the task until its X-Task-Status is want.
func (ts *testServer) waitStatus(t testing.TB, id, password string, want Status) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := ts.do(t, http.MethodGet, "/"+id, password)
		got := Status(resp.Header.Get(HeaderTaskStatus))
		if resp.StatusCode == http.StatusOK && got == want {
			return
		}
		if resp.StatusCode != http.StatusOK || got.Finished() || time.Now().After(deadline) {
			_, log := ts.do(t, http.MethodGet, "/"+id+"/log", password)
			t.Fatalf("task %s: %d %s %q, want %s; log:\n%s", id, resp.StatusCode, got, body, want, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitFor polls cond until it holds.
func waitUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listTree returns every path under dir, relative, sorted.
func listTree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// taskDirs returns the ids of the tasks on disk (directories with a
// task.json).
func taskDirs(t testing.TB, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), stateFile)); err == nil {
			ids = append(ids, e.Name())
		}
	}
	return ids
}
