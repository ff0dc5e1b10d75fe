package retrace

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func TestSettings(t *testing.T) {
	cfg := testConfig()
	cfg.SupportedReleases = []string{"fedora-40-x86_64", "fedora-41-x86_64"}
	ts := newTestServer(t, &elfRetracer{}, cfg)
	resp, body := ts.do(t, http.MethodGet, "/settings", "")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	want := "running_tasks 0\nmax_running_tasks 2\nmax_packed_size 1\nmax_unpacked_size 4\n" +
		"supported_formats application/x-xz-compressed-tar application/x-gzip application/x-tar\n" +
		"supported_releases fedora-40-x86_64 fedora-41-x86_64\n"
	if body != want {
		t.Errorf("settings:\n%s\nwant:\n%s", body, want)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
}

func TestSettingsDefaults(t *testing.T) {
	ts := newTestServer(t, &elfRetracer{}, Config{MinFreeSpace: -1})
	_, body := ts.do(t, http.MethodGet, "/settings", "")
	for _, line := range []string{"max_running_tasks 2", "max_packed_size 256", "max_unpacked_size 1024", "supported_releases any"} {
		if !strings.Contains(body, line+"\n") {
			t.Errorf("settings lack %q:\n%s", line, body)
		}
	}
}

// packages is a PackageChecker over a fixed set of "nvr arch".
type knownPackages map[string]bool

func (p knownPackages) HasNVRArch(nvr, arch string) (bool, error) { return p[nvr+" "+arch], nil }

func TestCheckPackage(t *testing.T) {
	cfg := testConfig()
	cfg.Packages = knownPackages{"crashme-1.0-1 x86_64": true, "counter-1:1.1-1 x86_64": true, "fonts-2.0-3.fc40 noarch": true}
	ts := newTestServer(t, &elfRetracer{}, cfg)
	none := newTestServer(t, &elfRetracer{}, testConfig())
	tests := []struct {
		name                 string
		srv                  *testServer
		nvr, arch, osRelease string
		want                 int
	}{
		{"found", ts, "crashme-1.0-1", "x86_64", "", http.StatusFound},
		{"found with epoch", ts, "counter-1:1.1-1", "x86_64", "fedora-40-x86_64", http.StatusFound},
		{"found as noarch", ts, "fonts-2.0-3.fc40", "x86_64", "", http.StatusFound},
		{"other version", ts, "crashme-1.1-1", "x86_64", "", http.StatusNotFound},
		{"other arch", ts, "crashme-1.0-1", "aarch64", "", http.StatusNotFound},
		{"no checker", none, "crashme-1.0-1", "x86_64", "", http.StatusNotFound},
		{"missing NVR", ts, "", "x86_64", "", http.StatusBadRequest},
		{"NVR with a space", ts, "crashme 1.0-1", "x86_64", "", http.StatusBadRequest},
		{"NVR with a slash", ts, "../crashme-1.0-1", "x86_64", "", http.StatusBadRequest},
		{"NVR without release", ts, "crashme-1.0", "x86_64", "", http.StatusBadRequest},
		{"NVR without version", ts, "crashme", "x86_64", "", http.StatusBadRequest},
		{"missing arch", ts, "crashme-1.0-1", "", "", http.StatusBadRequest},
		{"bad arch", ts, "crashme-1.0-1", "x86-64", "", http.StatusBadRequest},
		{"bad OS release", ts, "crashme-1.0-1", "x86_64", "Fedora 40", http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, tt.srv.url+"/checkpackage", nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range map[string]string{HeaderPackageNVR: tt.nvr, HeaderPackageArch: tt.arch, HeaderOSRelease: tt.osRelease} {
				if v != "" {
					req.Header.Set(k, v)
				}
			}
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body := readBody(t, resp)
			if resp.StatusCode != tt.want {
				t.Errorf("status %d (%s), want %d", resp.StatusCode, body, tt.want)
			}
		})
	}
}

func TestCreateFormats(t *testing.T) {
	ts := newTestServer(t, &elfRetracer{}, testConfig())
	raw := crashTar(t)
	tests := []struct {
		name, ct string
		body     []byte
	}{
		{"tar", FormatTar, raw},
		{"tar.gz", FormatGzip, gzipBytes(t, raw)},
		{"tar.xz", FormatXZ, xzBytes(t, raw)},
		{"content type with parameters", FormatXZ + "; charset=binary", xzBytes(t, raw)},
	}
	idRE := regexp.MustCompile(`^[1-9][0-9]{8}$`)
	pwRE := regexp.MustCompile(`^[0-9A-Za-z]{32}$`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, pw := ts.create(t, tt.ct, tt.body)
			if !idRE.MatchString(id) {
				t.Errorf("X-Task-Id %q", id)
			}
			if !pwRE.MatchString(pw) {
				t.Errorf("X-Task-Password %q", pw)
			}
			ts.waitStatus(t, id, pw, StatusSuccess)
			resp, bt := ts.do(t, http.MethodGet, "/"+id+"/backtrace", pw)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("backtrace: %d %s", resp.StatusCode, bt)
			}
			if want := "core ET_CORE EM_X86_64\nexecutable /usr/bin/crashme\n"; bt != want {
				t.Errorf("backtrace %q, want %q", bt, want)
			}
			crash := listTree(t, filepath.Join(ts.dir, id, crashDirName))
			if got := strings.Join(crash, " "); got != ". coredump executable os_release package" {
				t.Errorf("crash directory holds %s", got)
			}
		})
	}
}

// TestCreateStatusCodes covers every refusal of POST /create.
func TestCreateStatusCodes(t *testing.T) {
	cfg := testConfig() // packed 1 MiB, unpacked 4 MiB
	ts := newTestServer(t, &elfRetracer{}, cfg)
	big := make([]byte, 2<<20)
	for i := range big {
		big[i] = byte(i*7 + i>>9) // not very compressible by tar alone
	}
	core := fixtureCore(t)
	tests := []struct {
		name    string
		ct      string
		body    func() io.Reader
		want    int
		wantMsg string
	}{
		{"no content type", "", func() io.Reader { return bytes.NewReader(crashTar(t)) }, http.StatusUnsupportedMediaType, "not supported"},
		{"zip", "application/zip", func() io.Reader { return bytes.NewReader(crashTar(t)) }, http.StatusUnsupportedMediaType, "not supported"},
		{"bzip2", "application/x-bzip2", func() io.Reader { return bytes.NewReader(crashTar(t)) }, http.StatusUnsupportedMediaType, "not supported"},
		{"too large by Content-Length", FormatTar, func() io.Reader {
			return bytes.NewReader(tarBytes(t, tarMember{name: "coredump", body: big}))
		}, http.StatusRequestEntityTooLarge, "too large"},
		{"too large while streaming", FormatTar, func() io.Reader {
			// A reader of unknown length: sent chunked, no Content-Length.
			return io.MultiReader(bytes.NewReader(tarBytes(t, tarMember{name: "coredump", body: big})))
		}, http.StatusRequestEntityTooLarge, "larger than"},
		{"gzip body declared as xz", FormatXZ, func() io.Reader { return bytes.NewReader(gzipBytes(t, crashTar(t))) }, http.StatusBadRequest, "not xz data"},
		{"xz body declared as gzip", FormatGzip, func() io.Reader { return bytes.NewReader(crashXZ(t)) }, http.StatusBadRequest, "not gzip data"},
		{"gzip body declared as tar", FormatTar, func() io.Reader { return bytes.NewReader(gzipBytes(t, crashTar(t))) }, http.StatusBadRequest, "not tar data"},
		{"empty body", FormatTar, func() io.Reader { return bytes.NewReader(nil) }, http.StatusBadRequest, "not tar data"},
		{"truncated gzip", FormatGzip, func() io.Reader {
			b := gzipBytes(t, crashTar(t))
			return bytes.NewReader(b[:len(b)/2])
		}, http.StatusBadRequest, "malformed"},
		{"truncated xz", FormatXZ, func() io.Reader {
			b := crashXZ(t)
			return bytes.NewReader(b[:len(b)/2])
		}, http.StatusBadRequest, "malformed"},
		{"gzip with a wrong checksum", FormatGzip, func() io.Reader {
			b := bytes.Clone(gzipBytes(t, crashTar(t)))
			b[len(b)-8] ^= 1 // CRC-32 of the trailer
			return bytes.NewReader(b)
		}, http.StatusBadRequest, "checksum"},
		{"xz with a wrong checksum", FormatXZ, func() io.Reader {
			b := bytes.Clone(crashXZ(t))
			b[len(b)/2] ^= 0x10 // in the middle of the data
			return bytes.NewReader(b)
		}, http.StatusBadRequest, "malformed"},
		{"truncated tar", FormatTar, func() io.Reader {
			b := tarBytes(t, tarMember{name: "coredump", body: core})
			return bytes.NewReader(b[:len(b)/2])
		}, http.StatusBadRequest, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := listTree(t, ts.root)
			resp := ts.post(t, tt.ct, tt.body())
			msg := readBody(t, resp)
			if resp.StatusCode != tt.want || !strings.Contains(msg, tt.wantMsg) {
				t.Errorf("got %d %q, want %d %q", resp.StatusCode, msg, tt.want, tt.wantMsg)
			}
			if after := listTree(t, ts.root); strings.Join(after, "\n") != strings.Join(before, "\n") {
				t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
			}
		})
	}
}

func TestCreateQueueFull(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRunningTasks, cfg.MaxQueuedTasks = 1, 2
	r := &elfRetracer{gate: make(chan struct{})}
	ts := newTestServer(t, r, cfg)
	body := crashXZ(t)
	var tasks [][2]string
	for range 2 {
		id, pw := ts.create(t, FormatXZ, body)
		tasks = append(tasks, [2]string{id, pw})
	}
	resp := ts.post(t, FormatXZ, bytes.NewReader(body))
	msg := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("third create: %d %s, want 503", resp.StatusCode, msg)
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
	waitUntil(t, "a running task", func() bool { return ts.Stats().Running == 1 })
	// The second task waits behind the first, and says so.
	_, step := ts.do(t, http.MethodGet, "/"+tasks[1][0], tasks[1][1])
	if step != stepQueued {
		t.Errorf("second task's step %q, want %q", step, stepQueued)
	}
	_, settings := ts.do(t, http.MethodGet, "/settings", "")
	if !strings.Contains(settings, "running_tasks 1\n") {
		t.Errorf("settings while one runs:\n%s", settings)
	}
	close(r.gate)
	for _, tk := range tasks {
		ts.waitStatus(t, tk[0], tk[1], StatusSuccess)
	}
	ts.create(t, FormatXZ, body) // room again
}

func TestCreateNoSpace(t *testing.T) {
	cfg := testConfig()
	cfg.MinFreeSpace = 1 << 40 // MiB: more than any disk
	ts := newTestServer(t, &elfRetracer{}, cfg)
	before := listTree(t, ts.root)
	resp := ts.post(t, FormatXZ, bytes.NewReader(crashXZ(t)))
	msg := readBody(t, resp)
	if resp.StatusCode != http.StatusInsufficientStorage {
		t.Fatalf("got %d %s, want 507", resp.StatusCode, msg)
	}
	if after := listTree(t, ts.root); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("files changed:\nbefore %v\nafter  %v", before, after)
	}
}

// TestCreateUploadTimeout: an upload that stalls is cut off with 408 and
// gives its queue slot back.
func TestCreateUploadTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.UploadTimeout = 300 * time.Millisecond
	ts := newTestServer(t, &elfRetracer{}, cfg)
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	part := crashTar(t)[:2000]
	if _, err := fmt.Fprintf(conn, "POST /create HTTP/1.1\r\nHost: test\r\nContent-Type: %s\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n",
		FormatTar, len(part), part); err != nil {
		t.Fatal(err)
	}
	// Then nothing more.
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	msg := readBody(t, resp)
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("got %d %q, want 408", resp.StatusCode, msg)
	}
	if st := ts.Stats(); st.Pending != 0 || st.Running != 0 {
		t.Errorf("stats %+v after a timed-out upload", st)
	}
	if ids := listTree(t, ts.dir); len(ids) != 1 {
		t.Errorf("task directory holds %v", ids)
	}
}

// TestSlowUploadsDoNotFillQueue: uploads trickling a byte at a time (as
// many as the queue has slots) take no queue slot: a normal client's
// create still gets 201 while they stream, and each slow one is cut with
// 408 within two rate windows, keeping nothing.
func TestSlowUploadsDoNotFillQueue(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedTasks = 2
	cfg.MinUploadRate = 1 // KiB/s
	cfg.UploadRateWindow = 300 * time.Millisecond
	ts := newTestServer(t, &elfRetracer{}, cfg)
	part := crashTar(t)[:4000]
	type answer struct {
		code int
		msg  string
		took time.Duration
	}
	answers := make(chan answer, cfg.MaxQueuedTasks)
	for range cfg.MaxQueuedTasks {
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		go func() {
			start := time.Now()
			fmt.Fprintf(conn, "POST /create HTTP/1.1\r\nHost: test\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", FormatTar, len(part))
			go func() { // one byte every 50 ms: 20 bytes/s
				for _, b := range part {
					if _, err := conn.Write([]byte{b}); err != nil {
						return
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				answers <- answer{msg: err.Error(), took: time.Since(start)}
				return
			}
			answers <- answer{resp.StatusCode, readBody(t, resp), time.Since(start)}
		}()
	}
	waitUntil(t, "the slow uploads streaming", func() bool { return ts.Stats().Uploading == cfg.MaxQueuedTasks })
	ts.create(t, FormatXZ, crashXZ(t)) // not 503
	for range cfg.MaxQueuedTasks {
		a := <-answers
		if a.code != http.StatusRequestTimeout || !strings.Contains(a.msg, "slower than 1 KiB/s") || a.took > 3*time.Second {
			t.Errorf("slow upload: %d %q after %s, want 408 within two windows", a.code, a.msg, a.took)
		}
	}
	if st := ts.Stats(); st.Uploading != 0 {
		t.Errorf("stats %+v after the slow uploads", st)
	}
}

// TestTaskRoutes covers GET /{id}, /{id}/log, /{id}/backtrace and DELETE
// /{id}: 200, 403 and 404 each.
func TestTaskRoutes(t *testing.T) {
	r := &elfRetracer{gate: make(chan struct{})}
	ts := newTestServer(t, r, testConfig())
	id, pw := ts.create(t, FormatXZ, crashXZ(t))
	waitUntil(t, "the task to start", func() bool { return r.started.Load() == 1 })

	// While it runs: PENDING, a log, no backtrace yet.
	resp, step := ts.do(t, http.MethodGet, "/"+id, pw)
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderTaskStatus) != "PENDING" || step != stepRetracing {
		t.Errorf("status while running: %d %s %q", resp.StatusCode, resp.Header.Get(HeaderTaskStatus), step)
	}
	if resp, _ := ts.do(t, http.MethodGet, "/"+id+"/backtrace", pw); resp.StatusCode != http.StatusNotFound {
		t.Errorf("backtrace while running: %d, want 404", resp.StatusCode)
	}
	resp, log := ts.do(t, http.MethodGet, "/"+id+"/log", pw)
	if resp.StatusCode != http.StatusOK || !strings.Contains(log, "elfRetracer: reading") {
		t.Errorf("log while running: %d %q", resp.StatusCode, log)
	}
	close(r.gate)
	ts.waitStatus(t, id, pw, StatusSuccess)

	wrong := strings.Repeat("x", PasswordLength)
	for _, path := range []string{"/" + id, "/" + id + "/log", "/" + id + "/backtrace"} {
		tests := []struct {
			name, path, password string
			want                 int
		}{
			{"right password", path, pw, http.StatusOK},
			{"wrong password", path, wrong, http.StatusForbidden},
			{"password of another length", path, pw[:10], http.StatusForbidden},
			{"no password", path, "", http.StatusForbidden},
			{"unknown id", strings.Replace(path, id, "123456789", 1), pw, http.StatusNotFound},
			{"id too long", strings.Replace(path, id, strings.Repeat("1", 40), 1), pw, http.StatusNotFound},
		}
		for _, tt := range tests {
			t.Run("GET "+path+" "+tt.name, func(t *testing.T) {
				resp, body := ts.do(t, http.MethodGet, tt.path, tt.password)
				if resp.StatusCode != tt.want {
					t.Errorf("%d %q, want %d", resp.StatusCode, body, tt.want)
				}
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q", ct)
				}
			})
		}
	}
	resp, step = ts.do(t, http.MethodGet, "/"+id, pw)
	if resp.Header.Get(HeaderTaskStatus) != "FINISHED_SUCCESS" || step != stepSuccess {
		t.Errorf("finished status: %s %q", resp.Header.Get(HeaderTaskStatus), step)
	}
	if _, log := ts.do(t, http.MethodGet, "/"+id+"/log", pw); !strings.Contains(log, "retrace finished successfully") {
		t.Errorf("log:\n%s", log)
	}

	// DELETE: 403, 404, then 200, after which the task is gone.
	for _, tt := range []struct {
		name, id, password string
		want               int
	}{
		{"wrong password", id, wrong, http.StatusForbidden},
		{"no password", id, "", http.StatusForbidden},
		{"unknown id", "123456789", pw, http.StatusNotFound},
		{"right password", id, pw, http.StatusOK},
		{"again", id, pw, http.StatusNotFound},
	} {
		t.Run("DELETE "+tt.name, func(t *testing.T) {
			resp, body := ts.do(t, http.MethodDelete, "/"+tt.id, tt.password)
			if resp.StatusCode != tt.want {
				t.Errorf("%d %q, want %d", resp.StatusCode, body, tt.want)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(ts.dir, id)); !os.IsNotExist(err) {
		t.Errorf("task directory after DELETE: %v", err)
	}
	if ents, _ := os.ReadDir(ts.dir); len(ents) != 0 {
		t.Errorf("left in the task directory: %v", ents)
	}
}

func TestDeleteRunningAndPending(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRunningTasks = 1
	ts := newTestServer(t, hangRetracer{}, cfg)
	body := crashXZ(t)
	id1, pw1 := ts.create(t, FormatXZ, body)
	id2, pw2 := ts.create(t, FormatXZ, body)
	waitUntil(t, "the first task to run", func() bool { return ts.Stats().Running == 1 })
	if st := ts.Stats(); st.Pending != 1 {
		t.Fatalf("stats %+v", st)
	}
	for _, tk := range [][2]string{{id2, pw2}, {id1, pw1}} {
		if resp, body := ts.do(t, http.MethodDelete, "/"+tk[0], tk[1]); resp.StatusCode != http.StatusOK {
			t.Fatalf("DELETE %s: %d %s", tk[0], resp.StatusCode, body)
		}
	}
	waitUntil(t, "an empty queue", func() bool { st := ts.Stats(); return st.Pending == 0 && st.Running == 0 })
	if ids := taskDirs(t, ts.dir); len(ids) != 0 {
		t.Errorf("tasks left: %v", ids)
	}
}

func TestPasswordStoredHashed(t *testing.T) {
	ts := newTestServer(t, &elfRetracer{}, testConfig())
	id, pw := ts.create(t, FormatXZ, crashXZ(t))
	ts.waitStatus(t, id, pw, StatusSuccess)
	err := filepath.WalkDir(filepath.Join(ts.dir, id), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, []byte(pw)) {
			t.Errorf("%s holds the password in plain text", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	stored, err := os.ReadFile(filepath.Join(ts.dir, id, passwordFile))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^sha256 [0-9a-f]{32} [0-9a-f]{64}\n$`).Match(stored) {
		t.Errorf("password file %q", stored)
	}
}

func TestNewPassword(t *testing.T) {
	seen := map[string]bool{}
	counts := map[rune]int{}
	for range 2000 {
		pw, err := newPassword()
		if err != nil {
			t.Fatal(err)
		}
		if len(pw) != PasswordLength || seen[pw] {
			t.Fatalf("password %q (seen %v)", pw, seen[pw])
		}
		seen[pw] = true
		for _, c := range pw {
			counts[c]++
		}
	}
	// 64000 draws over 62 characters: about 1032 each.
	if len(counts) != len(passwordAlphabet) {
		t.Fatalf("%d distinct characters", len(counts))
	}
	for c, n := range counts {
		if n < 800 || n > 1300 {
			t.Errorf("character %q drawn %d times", c, n)
		}
	}
}

// TestRoutesBesideOthers registers the task routes on an engine that also
// has the routes of the rest of serve, as the lead's serve does.
func TestRoutesBesideOthers(t *testing.T) {
	s, err := New(t.TempDir(), &elfRetracer{}, testConfig())
	if err != nil {
		t.Fatal(err)
	}
	e := gin.New()
	other := func(name string) gin.HandlerFunc {
		return func(c *gin.Context) { c.String(http.StatusOK, "%s", name) }
	}
	e.GET("/", other("status page"))
	e.GET("/healthz", other("healthz"))
	e.GET("/metrics", other("metrics"))
	e.GET("/api/v1/buildid/:id", other("api buildid"))
	e.POST("/api/v1/buildids", other("api buildids"))
	e.POST("/api/v1/coredump2packages", other("api c2p"))
	e.GET("/api/v1/mirrors", other("api mirrors"))
	e.POST("/api/v1/mirrors/:name/sync", other("api sync"))
	e.DELETE("/api/v1/mirrors/:name", other("api remove"))
	e.GET("/buildid/:id/executable", other("debuginfod executable"))
	e.GET("/buildid/:id/debuginfo", other("debuginfod debuginfo"))
	e.GET("/buildid/:id/source/*path", other("debuginfod source"))
	e.GET("/buildid/:id/section/:name", other("debuginfod section"))
	s.Register(e)
	tests := []struct {
		method, path string
		want         int
		body         string
	}{
		{"GET", "/", 200, "status page"},
		{"GET", "/healthz", 200, "healthz"},
		{"GET", "/metrics", 200, "metrics"},
		{"GET", "/api/v1/buildid/ab12", 200, "api buildid"},
		{"GET", "/api/v1/mirrors", 200, "api mirrors"},
		{"GET", "/buildid/ab12/executable", 200, "debuginfod executable"},
		{"GET", "/buildid/ab12/source/usr/src/debug/x.c", 200, "debuginfod source"},
		{"GET", "/settings", 200, "running_tasks 0"},
		{"GET", "/123456789", 404, "There is no such task"},
		{"GET", "/123456789/log", 404, "There is no such task"},
		{"GET", "/123456789/backtrace", 404, "There is no such task"},
		{"DELETE", "/123456789", 404, "There is no such task"},
		{"GET", "/favicon.ico", 404, "404 page not found"},
		{"GET", "/api/log", 404, `{"error":"not found"}`},
		{"GET", "/buildid/ab12/log", 404, "404 page not found"},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			w := httptest.NewRecorder()
			e.ServeHTTP(w, httptest.NewRequest(tt.method, tt.path, nil))
			if w.Code != tt.want || !strings.Contains(w.Body.String(), tt.body) {
				t.Errorf("%d %q, want %d %q", w.Code, w.Body.String(), tt.want, tt.body)
			}
		})
	}
}

func TestTaskTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.TaskTimeout = 300 * time.Millisecond
	ts := newTestServer(t, hangRetracer{}, cfg)
	id, pw := ts.create(t, FormatXZ, crashXZ(t))
	start := time.Now()
	ts.waitStatus(t, id, pw, StatusFailure)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failed after %s", d)
	}
	_, log := ts.do(t, http.MethodGet, "/"+id+"/log", pw)
	if !strings.Contains(log, "retrace failed: killed after the task timeout of 300ms") {
		t.Errorf("log:\n%s", log)
	}
	if resp, _ := ts.do(t, http.MethodGet, "/"+id+"/backtrace", pw); resp.StatusCode != http.StatusNotFound {
		t.Errorf("backtrace of a failed task: %d", resp.StatusCode)
	}
}

// TestRetracerNotStopping: a Retracer that ignores its context is
// abandoned and its task fails.
func TestRetracerNotStopping(t *testing.T) {
	cfg := testConfig()
	cfg.TaskTimeout = 100 * time.Millisecond
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	s, err := New(filepath.Join(t.TempDir(), "tasks"), retracerFunc(func(ctx context.Context, dir string, log io.Writer) (string, error) {
		<-block
		return "", nil
	}), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.abandonAfter = 100 * time.Millisecond
	id, _, _, err := s.create(bytes.NewReader(crashTar(t)), FormatTar, -1, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitUntil(t, "the task to fail", func() bool {
		st, err := s.task(id).readState()
		return err == nil && st.Status == StatusFailure
	})
	st, _ := s.task(id).readState()
	if !strings.Contains(st.Error, "did not stop within 100ms") {
		t.Errorf("error %q", st.Error)
	}
}

type retracerFunc func(ctx context.Context, dir string, log io.Writer) (string, error)

func (f retracerFunc) Retrace(ctx context.Context, dir string, log io.Writer) (Result, error) {
	bt, err := f(ctx, dir, log)
	return Result{Backtrace: bt}, err
}

func TestFailingRetracers(t *testing.T) {
	tests := []struct {
		name    string
		r       Retracer
		core    []byte
		wantLog string
	}{
		{"core not ELF", &elfRetracer{}, []byte("not a core at all"), "retrace failed: coredump is not an ELF file"},
		{"panic", panicRetracer{}, nil, "retrace failed: retracer panicked: boom"},
		{"empty backtrace", retracerFunc(func(context.Context, string, io.Writer) (string, error) { return " \n", nil }),
			nil, "retrace failed: the retracer produced an empty backtrace"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := newTestServer(t, tt.r, testConfig())
			core := tt.core
			if core == nil {
				core = fixtureCore(t)
			}
			id, pw := ts.create(t, FormatTar, tarBytes(t, tarMember{name: "coredump", body: core}))
			ts.waitStatus(t, id, pw, StatusFailure)
			resp, step := ts.do(t, http.MethodGet, "/"+id, pw)
			if step != stepFailure || resp.Header.Get(HeaderTaskStatus) != "FINISHED_FAILURE" {
				t.Errorf("status %s %q", resp.Header.Get(HeaderTaskStatus), step)
			}
			if _, log := ts.do(t, http.MethodGet, "/"+id+"/log", pw); !strings.Contains(log, tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, log)
			}
		})
	}
}

// unusableRetracer returns a backtrace with no named frame, as the worker
// does: rated (in the words worker.Rating says it for this backtrace:
// worker's TestRatingString checks them), with what was missing, and
// ErrUnusable.
type unusableRetracer struct{}

// textRating is a rating already in words.
type textRating string

func (r textRating) String() string { return string(r) }

func (unusableRetracer) Retrace(ctx context.Context, dir string, log io.Writer) (Result, error) {
	bt := "Thread 1 (LWP 7):\n#0  0x00007f00000010fc in ?? ()\n#1  0x00007f0000001234 in ?? ()\n"
	r := textRating("0/4 (quality 0.00: 0 of 2 frames of the crashing thread, 0 of 2 of its top 5 and 0 of 2 of all threads have a function name and a source file)")
	return Result{Backtrace: bt, Rating: r, Missing: []string{"/usr/lib64/libc.so.6 93ac61ec5a8eb1396f9fbd350e3169a558528a40"}},
		fmt.Errorf("%w: no frame of the crashing thread has a function name", ErrUnusable)
}

// TestUnusableBacktrace: a task whose backtrace names no frame ends
// FINISHED_FAILURE; the backtrace is kept, and the status body says the
// rating and what was missing.
func TestUnusableBacktrace(t *testing.T) {
	ts := newTestServer(t, unusableRetracer{}, testConfig())
	id, pw := ts.create(t, FormatXZ, crashXZ(t))
	ts.waitStatus(t, id, pw, StatusFailure)
	_, step := ts.do(t, http.MethodGet, "/"+id, pw)
	for _, want := range []string{stepFailure, "\nBacktrace rating: 0/4 (quality 0.00: 0 of 2 frames", "\nMissing: /usr/lib64/libc.so.6 93ac61ec5a8eb1396f9fbd350e3169a558528a40"} {
		if !strings.Contains(step, want) {
			t.Errorf("status body %q lacks %q", step, want)
		}
	}
	resp, bt := ts.do(t, http.MethodGet, "/"+id+"/backtrace", pw)
	if resp.StatusCode != http.StatusOK || !strings.Contains(bt, "#0  0x00007f00000010fc in ?? ()") {
		t.Errorf("backtrace: %d %q", resp.StatusCode, bt)
	}
	_, logText := ts.do(t, http.MethodGet, "/"+id+"/log", pw)
	if !strings.Contains(logText, "retrace failed: unusable backtrace") {
		t.Errorf("log:\n%s", logText)
	}
}

// TestMaxUploads: with MaxUploads 2 and the queue nearly empty, two
// uploads streaming at once hold both upload slots: a third create is
// refused with 503 and Retry-After without its body being taken, while a
// queue slot is still free; once one upload arrives (201), its slot goes
// to the next create.
func TestMaxUploads(t *testing.T) {
	cfg := testConfig()
	cfg.MaxUploads = 2
	cfg.UploadRateWindow = 10 * time.Second // the held uploads are not cut during the test
	ts := newTestServer(t, &elfRetracer{}, cfg)
	body := crashTar(t)
	type answer struct {
		code int
		msg  string
	}
	var rest []func() answer
	for range cfg.MaxUploads {
		conn, err := net.Dial("tcp", strings.TrimPrefix(ts.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /create HTTP/1.1\r\nHost: test\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n", FormatTar, len(body))
		conn.Write(body[:1000]) // and hold the rest
		rest = append(rest, func() answer {
			conn.Write(body[1000:])
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				return answer{msg: err.Error()}
			}
			return answer{resp.StatusCode, readBody(t, resp)}
		})
	}
	waitUntil(t, "two uploads streaming", func() bool { return ts.Stats().Uploading == cfg.MaxUploads })
	resp := ts.post(t, FormatXZ, bytes.NewReader(crashXZ(t)))
	msg := readBody(t, resp)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("create beyond max_uploads: %d %q (Retry-After %q), want 503 with Retry-After", resp.StatusCode, msg, resp.Header.Get("Retry-After"))
	}
	if st := ts.Stats(); st.Pending+st.Running != 0 || st.Uploading != cfg.MaxUploads {
		t.Errorf("stats %+v: the refused create took something", st)
	}
	if a := rest[0](); a.code != http.StatusCreated {
		t.Fatalf("held upload, once sent: %d %q, want 201", a.code, a.msg)
	}
	waitUntil(t, "one upload streaming", func() bool { return ts.Stats().Uploading == 1 })
	ts.create(t, FormatXZ, crashXZ(t)) // the freed upload slot
	if a := rest[1](); a.code != http.StatusCreated {
		t.Fatalf("second held upload, once sent: %d %q, want 201", a.code, a.msg)
	}
}
