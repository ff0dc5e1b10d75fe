package resolver

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/fixtures/fixturestore"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/elfnote"
)

// newFixtureStore mirrors the fixture repository into a fresh data
// directory.
func newFixtureStore(t testing.TB) (*index.Store, *blob.Pool) {
	t.Helper()
	s := fixturestore.New(t, "repo")
	return s.Index, s.Pool
}

func serveDebuginfod(t testing.TB, d *Debuginfod) *httptest.Server {
	t.Helper()
	gin.SetMode(gin.TestMode)
	r := gin.New()
	d.Register(r)
	srv := httptest.NewServer(r) // 127.0.0.1
	t.Cleanup(srv.Close)
	return srv
}

// reference holds the fixture RPMs as rpm2cpio | cpio unpacked them, one
// directory per RPM file, and what rpm -qp says of them.
type reference struct {
	dir   string
	files map[string]string // NEVRA -> RPM file name
}

func unpackReference(t *testing.T) *reference {
	t.Helper()
	fixtures.RequireTools(t, "rpm2cpio", "cpio", "rpm")
	r := &reference{dir: t.TempDir(), files: map[string]string{}}
	for _, p := range fixtures.Packages(t) {
		r.files[p.NEVRA] = p.File
		dst := filepath.Join(r.dir, p.File)
		if err := os.Mkdir(dst, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", `rpm2cpio "$1" | cpio -idm --quiet --no-absolute-filenames`, "sh",
			fixtures.Path("repo", "Packages", p.File))
		cmd.Dir = dst
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("unpack %s: %v\n%s", p.File, err, out)
		}
	}
	return r
}

// rpm returns the RPM file name of nevra.
func (r *reference) rpm(t testing.TB, nevra string) string {
	t.Helper()
	f, ok := r.files[nevra]
	if !ok {
		t.Fatalf("no fixture package %s", nevra)
	}
	return f
}

// file returns the bytes of path in the RPM named by nevra.
func (r *reference) file(t testing.TB, nevra, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, r.rpm(t, nevra), path))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// section returns the bytes of ELF section name of path in nevra's RPM,
// as objcopy --dump-section writes them.
func (r *reference) section(t testing.TB, nevra, path, name string) []byte {
	t.Helper()
	fixtures.RequireTools(t, "objcopy")
	tmp := t.TempDir()
	out := filepath.Join(tmp, "section")
	cmd := exec.Command("objcopy", "--dump-section", name+"="+out,
		filepath.Join(r.dir, r.rpm(t, nevra), path), filepath.Join(tmp, "copy"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("objcopy --dump-section %s: %v\n%s", name, err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// lastModified is nevra's build time as rpm -qp reads it, in HTTP form.
func (r *reference) lastModified(t testing.TB, nevra string) string {
	t.Helper()
	out, err := exec.Command("rpm", "-qp", "--qf", "%{BUILDTIME}", fixtures.Path("repo", "Packages", r.rpm(t, nevra))).Output()
	if err != nil {
		t.Fatalf("rpm -qp %s: %v", nevra, err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return time.Unix(sec, 0).UTC().Format(http.TimeFormat)
}

// debugsource names the -debugsource package of nevra's build.
func debugsource(nevra string) string {
	n, err := index.ParseNEVRA(nevra)
	if err != nil {
		panic(err)
	}
	n.Name += "-debugsource"
	return n.String()
}

// buildID returns the reference build-id of path in nevra.
func buildID(t testing.TB, nevra, path string) string {
	t.Helper()
	for _, e := range fixtures.ELFFiles(t) {
		if e.NEVRA == nevra && e.Path == path {
			return e.BuildID
		}
	}
	t.Fatalf("no build-id for %s in %s", path, nevra)
	return ""
}

// TestDebuginfod builds one store from the fixture repository and serves
// it, then checks the protocol with net/http and with the real clients.
func TestDebuginfod(t *testing.T) {
	ref := unpackReference(t)
	idx, pool := newFixtureStore(t)
	srv := serveDebuginfod(t, NewDebuginfod(idx, pool))
	onDisk := NewDebuginfod(idx, pool)
	onDisk.inMemory = -1 // every body from the plain copies, by sendfile
	diskSrv := serveDebuginfod(t, onDisk)

	t.Run("http", func(t *testing.T) { testDebuginfodHTTP(t, srv.URL, ref) })
	t.Run("http-from-disk", func(t *testing.T) { testDebuginfodHTTP(t, diskSrv.URL, ref) })
	t.Run("concurrent", func(t *testing.T) { testDebuginfodConcurrent(t, idx, pool, ref) })
	t.Run("debuginfod-find", func(t *testing.T) { testDebuginfodFind(t, srv.URL, ref) })
	t.Run("eu-stack", func(t *testing.T) { testEUStack(t, srv.URL) })
	t.Run("gdb", func(t *testing.T) { testGDB(t, srv.URL, ref) })
	t.Run("elfutils", func(t *testing.T) { testAgainstElfutils(t, srv.URL) })
}

type httpCase struct {
	name   string
	method string            // GET when empty
	path   string            // request path and query, sent as it is
	req    map[string]string // request headers
	status int
	body   []byte            // want the body to be this (nil with an error status: any plain text)
	hdr    map[string]string // want these response headers
}

// noRedirect is a client that reports redirects rather than following
// them: the protocol has none.
var noRedirect = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Timeout:       30 * time.Second,
}

func testDebuginfodHTTP(t *testing.T, base string, ref *reference) {
	const (
		crashme   = "crashme-1.0-1.x86_64"
		crashmeDI = "crashme-debuginfo-1.0-1.x86_64"
		counter   = "counter-1:1.1-1.x86_64" // epoch 1
		crashSrc  = "/usr/src/debug/crashme-1.0-1.x86_64/"
		debugFile = "/usr/lib/debug/usr/bin/crashme-1.0-1.x86_64.debug"
	)
	exe := buildID(t, crashme, "/usr/bin/crashme")
	lib := buildID(t, crashme, "/usr/lib64/libcrashme.so.1.0.0")
	cnt := buildID(t, counter, "/usr/bin/counter")
	exeBytes := ref.file(t, crashme, "/usr/bin/crashme")
	debugBytes := ref.file(t, crashmeDI, debugFile)
	srcBytes := ref.file(t, debugsource(crashme), crashSrc+"crashme.c")
	libSrcBytes := ref.file(t, debugsource(crashme), crashSrc+"libcrashme.c")
	cntSrcBytes := ref.file(t, debugsource(counter), "/usr/src/debug/counter-1.1-1.x86_64/counter.c")
	debugInfo := ref.section(t, crashmeDI, debugFile, ".debug_info")
	text := ref.section(t, crashme, "/usr/bin/crashme", ".text")
	lm := ref.lastModified(t, crashme)

	headers := func(size int, file, archive string) map[string]string {
		return map[string]string{
			"X-DEBUGINFOD-SIZE":    strconv.Itoa(size),
			"X-DEBUGINFOD-FILE":    file,
			"X-DEBUGINFOD-ARCHIVE": archive,
			"Content-Type":         "application/octet-stream",
			"Last-Modified":        lm,
		}
	}
	with := func(h map[string]string, kv ...string) map[string]string {
		out := map[string]string{}
		for k, v := range h {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i]] = kv[i+1]
		}
		return out
	}
	exeHdr := headers(len(exeBytes), "/usr/bin/crashme", ref.rpm(t, crashme))
	srcHdr := headers(len(srcBytes), crashSrc+"crashme.c", ref.rpm(t, debugsource(crashme)))
	unknown := strings.Repeat("0123456789abcdef", 2) + "01234567"

	cases := []httpCase{
		{name: "executable", path: "/buildid/" + exe + "/executable", status: 200, body: exeBytes,
			hdr: with(exeHdr, "Content-Length", strconv.Itoa(len(exeBytes)))},
		{name: "executable of a library", path: "/buildid/" + lib + "/executable", status: 200,
			body: ref.file(t, crashme, "/usr/lib64/libcrashme.so.1.0.0")},
		{name: "executable uppercase id", path: "/buildid/" + strings.ToUpper(exe) + "/executable", status: 200, body: exeBytes},
		{name: "debuginfo", path: "/buildid/" + exe + "/debuginfo", status: 200, body: debugBytes,
			hdr: headers(len(debugBytes), debugFile, ref.rpm(t, crashmeDI))},
		{name: "HEAD executable", method: "HEAD", path: "/buildid/" + exe + "/executable", status: 200, body: []byte{},
			hdr: with(exeHdr, "Content-Length", strconv.Itoa(len(exeBytes)))},
		{name: "HEAD debuginfo", method: "HEAD", path: "/buildid/" + exe + "/debuginfo", status: 200, body: []byte{},
			hdr: headers(len(debugBytes), debugFile, ref.rpm(t, crashmeDI))},
		{name: "range", path: "/buildid/" + exe + "/executable", req: map[string]string{"Range": "bytes=16-31"},
			status: 206, body: exeBytes[16:32],
			hdr: with(exeHdr, "Content-Range", fmt.Sprintf("bytes 16-31/%d", len(exeBytes)), "Content-Length", "16")},
		{name: "range suffix", path: "/buildid/" + exe + "/debuginfo", req: map[string]string{"Range": "bytes=-100"},
			status: 206, body: debugBytes[len(debugBytes)-100:]},
		{name: "range past the end", path: "/buildid/" + exe + "/executable",
			req: map[string]string{"Range": fmt.Sprintf("bytes=%d-", len(exeBytes)+10)}, status: 416},
		{name: "not modified", path: "/buildid/" + exe + "/executable", req: map[string]string{"If-Modified-Since": lm},
			status: 304, body: []byte{}},
		{name: "source", path: "/buildid/" + exe + "/source" + crashSrc + "crashme.c", status: 200, body: srcBytes, hdr: srcHdr},
		{name: "HEAD source", method: "HEAD", path: "/buildid/" + exe + "/source" + crashSrc + "crashme.c", status: 200,
			body: []byte{}, hdr: with(srcHdr, "Content-Length", strconv.Itoa(len(srcBytes)))},
		{name: "source of a library", path: "/buildid/" + lib + "/source" + crashSrc + "libcrashme.c", status: 200,
			body: libSrcBytes},
		{name: "source path with // and ./ and ..", path: "/buildid/" + exe + "/source/" + crashSrc + "./build/../crashme.c",
			status: 200, body: srcBytes, hdr: srcHdr},
		{name: "source with an epoch", path: "/buildid/" + cnt + "/source/usr/src/debug/counter-1.1-1.x86_64/counter.c",
			status: 200, body: cntSrcBytes,
			hdr: map[string]string{"X-DEBUGINFOD-ARCHIVE": ref.rpm(t, debugsource(counter))}},
		{name: "section from debuginfo", path: "/buildid/" + exe + "/section/.debug_info", status: 200, body: debugInfo,
			hdr: headers(len(debugInfo), debugFile, ref.rpm(t, crashmeDI))},
		{name: "section NOBITS in debuginfo from executable", path: "/buildid/" + exe + "/section/.text", status: 200,
			body: text, hdr: headers(len(text), "/usr/bin/crashme", ref.rpm(t, crashme))},
		{name: "section range", path: "/buildid/" + exe + "/section/.debug_info", req: map[string]string{"Range": "bytes=4-11"},
			status: 206, body: debugInfo[4:12]},
		{name: "HEAD section", method: "HEAD", path: "/buildid/" + exe + "/section/.text", status: 200, body: []byte{},
			hdr: map[string]string{"Content-Length": strconv.Itoa(len(text)), "X-DEBUGINFOD-SIZE": strconv.Itoa(len(text))}},

		{name: "max size", path: "/buildid/" + exe + "/executable", req: map[string]string{"X-DEBUGINFOD-MAXSIZE": "100"}, status: 406},
		{name: "max size of a section", path: "/buildid/" + exe + "/section/.text", req: map[string]string{"X-DEBUGINFOD-MAXSIZE": "100"}, status: 406},
		{name: "max size large enough", path: "/buildid/" + exe + "/executable",
			req: map[string]string{"X-DEBUGINFOD-MAXSIZE": strconv.Itoa(len(exeBytes))}, status: 200, body: exeBytes},
		{name: "max size not a number", path: "/buildid/" + exe + "/executable", req: map[string]string{"X-DEBUGINFOD-MAXSIZE": "lots"},
			status: 200, body: exeBytes},

		{name: "unknown build-id", path: "/buildid/" + unknown + "/executable", status: 404},
		{name: "HEAD unknown build-id", method: "HEAD", path: "/buildid/" + unknown + "/debuginfo", status: 404, body: []byte{}},
		{name: "unknown build-id source", path: "/buildid/" + unknown + "/source/usr/src/x.c", status: 404},
		{name: "unknown build-id section", path: "/buildid/" + unknown + "/section/.text", status: 404},
		{name: "section nowhere", path: "/buildid/" + exe + "/section/.no_such", status: 404},
		{name: "section NOBITS everywhere", path: "/buildid/" + exe + "/section/.bss", status: 404},
		{name: "source not shipped", path: "/buildid/" + exe + "/source/usr/include/stdio.h", status: 404},
		{name: "source of another version", path: "/buildid/" + exe + "/source/usr/src/debug/crashme-1.1-1.x86_64/crashme.c", status: 404},
		{name: "source is a directory", path: "/buildid/" + exe + "/source/", status: 404},
		{name: "no such artifact", path: "/buildid/" + exe + "/vmlinux", status: 404},

		{name: "malformed build-id", path: "/buildid/xyz/executable", status: 400},
		{name: "odd build-id", path: "/buildid/abc/debuginfo", status: 400},
		{name: "over-long build-id", path: "/buildid/" + strings.Repeat("ab", index.MaxBuildIDLen+1) + "/executable", status: 400},
		{name: "malformed build-id source", path: "/buildid/zz/source/usr/src/x.c", status: 400},
		{name: "malformed build-id section", path: "/buildid/zz/section/.text", status: 400},
		{name: "HEAD malformed build-id", method: "HEAD", path: "/buildid/xyz/executable", status: 400, body: []byte{}},
		{name: "source without a path", path: "/buildid/" + exe + "/source", status: 400},
		{name: "source climbing above /", path: "/buildid/" + exe + "/source/../etc/passwd", status: 400},
		{name: "source climbing above / later", path: "/buildid/" + exe + "/source" + crashSrc + "../../../../../etc/passwd", status: 400},
		{name: "source escaped ..", path: "/buildid/" + exe + "/source/%2e%2e/etc/passwd", status: 400},
		{name: "source with NUL", path: "/buildid/" + exe + "/source" + crashSrc + "crashme.c%00.h", status: 400},
		{name: "over-long source path", path: "/buildid/" + exe + "/source/" + strings.Repeat("a/", MaxSourcePath/2), status: 400},
		{name: "over-long section name", path: "/buildid/" + exe + "/section/" + strings.Repeat("s", MaxSectionName+1), status: 400},
		{name: "section with NUL", path: "/buildid/" + exe + "/section/.text%00", status: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = http.MethodGet
			}
			req, err := http.NewRequest(method, base+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tc.req {
				req.Header.Set(k, v)
			}
			code, header, body := do(t, req)
			if code != tc.status {
				t.Fatalf("status %d, want %d; body %.200q", code, tc.status, body)
			}
			for k, v := range tc.hdr {
				if got := header.Get(k); got != v {
					t.Errorf("%s: %q, want %q", k, got, v)
				}
			}
			switch {
			case tc.body != nil:
				if !bytes.Equal(body, tc.body) {
					t.Errorf("body: %d bytes differ from the reference's %d", len(body), len(tc.body))
				}
			case code >= 400 && code != 416:
				if ct := header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("error Content-Type %q, want text/plain", ct)
				}
				if len(body) == 0 || body[0] == '{' {
					t.Errorf("error body %q, want plain text", body)
				}
			}
		})
	}
}

// testDebuginfodConcurrent hits a cold server from many goroutines, with
// its plain copies removed half-way: every answer must still be right.
func testDebuginfodConcurrent(t *testing.T, idx *index.Store, pool *blob.Pool, ref *reference) {
	type want struct {
		path string
		body []byte
	}
	var wants []want
	var digests []blob.Digest
	for _, e := range fixtures.ELFFiles(t) {
		kind := "executable"
		if e.Kind == "debuginfo" {
			kind = "debuginfo"
		}
		wants = append(wants, want{"/buildid/" + e.BuildID + "/" + kind, ref.file(t, e.NEVRA, e.Path)})
		id, err := index.ParseBuildID(e.BuildID)
		if err != nil {
			t.Fatal(err)
		}
		ms, err := idx.Lookup(id)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ms {
			digests = append(digests, m.Blob)
		}
	}
	removePlain := func() {
		for _, d := range digests {
			if err := pool.RemovePlain(d); err != nil {
				t.Error(err)
			}
		}
	}
	removePlain()
	srv := serveDebuginfod(t, NewDebuginfod(idx, pool))
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for g := range 16 {
		wg.Go(func() {
			for i := range 3 * len(wants) {
				if g == 0 && i == len(wants) {
					removePlain() // cached paths now point at nothing
				}
				w := wants[(i+g)%len(wants)]
				resp, err := http.Get(srv.URL + w.path)
				if err != nil {
					errs <- err
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || !bytes.Equal(body, w.body) {
					errs <- fmt.Errorf("%s: status %d, %d bytes, err %v", w.path, resp.StatusCode, len(body), err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// clientEnv is the environment of a debuginfod client that asks only
// base, with a fresh cache and home.
func clientEnv(t testing.TB, base string) (env []string, cache string) {
	t.Helper()
	cache = t.TempDir()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEBUGINFOD_") && !strings.HasPrefix(kv, "HOME=") && !strings.HasPrefix(kv, "XDG_") {
			env = append(env, kv)
		}
	}
	return append(env, "DEBUGINFOD_URLS="+base, "DEBUGINFOD_CACHE_PATH="+cache, "DEBUGINFOD_TIMEOUT=20",
		"HOME="+t.TempDir()), cache
}

func run(t testing.TB, env []string, name string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

func testDebuginfodFind(t *testing.T, base string, ref *reference) {
	fixtures.RequireTools(t, "debuginfod-find")
	const crashme, counter = "crashme-1.0-1.x86_64", "counter-1:1.1-1.x86_64"
	exe := buildID(t, crashme, "/usr/bin/crashme")
	lib := buildID(t, crashme, "/usr/lib64/libcrashme.so.1.0.0")
	cnt := buildID(t, counter, "/usr/lib64/libcounter.so.1.0.0")
	libSrc := "/usr/src/debug/counter-1.1-1.x86_64/libcounter.c"
	cases := []struct {
		name string
		args []string // after -v
		want []byte
		hdr  []string // lines debuginfod-find -v prints
	}{
		{"executable", []string{"executable", exe}, ref.file(t, crashme, "/usr/bin/crashme"),
			[]string{"X-DEBUGINFOD-FILE: /usr/bin/crashme", "X-DEBUGINFOD-ARCHIVE: " + ref.rpm(t, crashme),
				fmt.Sprintf("X-DEBUGINFOD-SIZE: %d", len(ref.file(t, crashme, "/usr/bin/crashme")))}},
		{"executable of a library", []string{"executable", lib}, ref.file(t, crashme, "/usr/lib64/libcrashme.so.1.0.0"), nil},
		{"debuginfo", []string{"debuginfo", exe},
			ref.file(t, "crashme-debuginfo-1.0-1.x86_64", "/usr/lib/debug/usr/bin/crashme-1.0-1.x86_64.debug"),
			[]string{"X-DEBUGINFOD-FILE: /usr/lib/debug/usr/bin/crashme-1.0-1.x86_64.debug"}},
		{"source", []string{"source", exe, "/usr/src/debug/crashme-1.0-1.x86_64/crashme.c"},
			ref.file(t, debugsource(crashme), "/usr/src/debug/crashme-1.0-1.x86_64/crashme.c"),
			[]string{"X-DEBUGINFOD-ARCHIVE: " + ref.rpm(t, debugsource(crashme))}},
		{"source of a library with an epoch", []string{"source", cnt, libSrc},
			ref.file(t, debugsource(counter), libSrc), []string{"X-DEBUGINFOD-FILE: " + libSrc}},
		{"section", []string{"section", exe, ".debug_line"},
			ref.section(t, "crashme-debuginfo-1.0-1.x86_64", "/usr/lib/debug/usr/bin/crashme-1.0-1.x86_64.debug", ".debug_line"), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env, cache := clientEnv(t, base)
			out, errOut, err := run(t, env, "debuginfod-find", append([]string{"-v"}, tc.args...)...)
			if err != nil {
				t.Fatalf("debuginfod-find -v %s: %v\n%s", strings.Join(tc.args, " "), err, errOut)
			}
			path := strings.TrimSpace(out)
			if !strings.HasPrefix(path, cache+"/") {
				t.Fatalf("debuginfod-find printed %q, not a file in its cache %s", path, cache)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("%s: %d bytes differ from the reference's %d", path, len(got), len(tc.want))
			}
			for _, h := range tc.hdr {
				if !strings.Contains(errOut, h+"\n") {
					t.Errorf("debuginfod-find -v did not print %q:\n%s", h, errOut)
				}
			}
		})
	}
	t.Run("miss", func(t *testing.T) {
		t.Parallel()
		env, _ := clientEnv(t, base)
		out, errOut, err := run(t, env, "debuginfod-find", "executable", strings.Repeat("ab", 20))
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("debuginfod-find of an unknown id: %v, stdout %q", err, out)
		}
		if !strings.Contains(errOut, "No such file or directory") {
			t.Errorf("stderr %q, want ENOENT", errOut)
		}
	})
}

// frame is one stack frame: function, source file base name, line.
type frame struct {
	fn, file string
	line     int
}

func (f frame) String() string { return fmt.Sprintf("%s %s:%d", f.fn, f.file, f.line) }

// gdbFrame matches a frame of gdb's bt: "#N  [0xADDR in ]FN (ARGS) at FILE:LINE".
var gdbFrame = regexp.MustCompile(`^#\d+\s+(?:0x[0-9a-f]+ in )?(\S+) \(.*\) at (\S+):(\d+)$`)

// fixtureFrames returns the frames of gdb's bt output that lie in the
// fixture programs' own sources (file names without a directory: the host
// libc's are "../sysdeps/...").
func fixtureFrames(t testing.TB, bt string) []frame {
	t.Helper()
	var fs []frame
	for _, l := range strings.Split(bt, "\n") {
		m := gdbFrame.FindStringSubmatch(strings.TrimSpace(l))
		if m == nil || strings.Contains(m[2], "/") {
			continue
		}
		n, err := strconv.Atoi(m[3])
		if err != nil {
			t.Fatal(err)
		}
		fs = append(fs, frame{m[1], m[2], n})
	}
	return fs
}

func referenceFrames(t testing.TB, c fixtures.Core) []frame {
	t.Helper()
	b, err := os.ReadFile(fixtures.Path("cores", strings.TrimSuffix(c.File, ".core.zst")+".bt.txt"))
	if err != nil {
		t.Fatal(err)
	}
	fs := fixtureFrames(t, string(b))
	if len(fs) < 2 {
		t.Fatalf("%s: reference backtrace has %d fixture frames", c.File, len(fs))
	}
	return fs
}

func executableID(t testing.TB, c fixtures.Core) string {
	t.Helper()
	for _, m := range c.Modules {
		if m.Name == c.Executable {
			return m.BuildID
		}
	}
	t.Fatalf("%s: no module %s", c.File, c.Executable)
	return ""
}

// testEUStack unwinds each fixture core with eu-stack, which has nothing
// but the core and the server: no executable, library or debuginfo is on
// this machine.
func testEUStack(t *testing.T, base string) {
	fixtures.RequireTools(t, "eu-stack")
	for _, c := range fixtures.Cores(t) {
		t.Run(c.File, func(t *testing.T) {
			t.Parallel()
			core := fixtures.CoreFile(t, c.File)
			env, cache := clientEnv(t, base)
			out, errOut, err := run(t, env, "eu-stack", "-s", "-i", "--core="+core)
			var ee *exec.ExitError
			if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: some frames had errors
				t.Fatalf("eu-stack: %v\n%s\n%s", err, out, errOut)
			}
			got := euStackFrames(out)
			want := referenceFrames(t, c)
			if !isSubsequence(got, want) {
				t.Errorf("eu-stack frames\n  %v\ndo not hold gdb's reference frames in order\n  %v\n%s", got, want, out)
			}
			if _, err := os.Stat(filepath.Join(cache, executableID(t, c), "executable")); err != nil {
				t.Errorf("eu-stack did not fetch the executable: %v", err)
			}
		})
	}
}

// euStackFrames parses the first thread of eu-stack -s output (the one
// that crashed comes first in a core): "#N  0xADDR FN" then, indented,
// "FILE:LINE:COL".
func euStackFrames(out string) []frame {
	var fs []frame
	sc := bufio.NewScanner(strings.NewReader(out))
	var fn string
	threads := 0
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "TID ") {
			if threads++; threads > 1 {
				break
			}
			continue
		}
		if strings.HasPrefix(l, "#") {
			f := strings.Fields(l)
			fn = ""
			if len(f) >= 3 {
				fn = f[2]
			}
			continue
		}
		if fn == "" || !strings.HasPrefix(l, "    ") {
			continue
		}
		loc := strings.TrimSpace(l)
		file, rest, ok := strings.Cut(loc, ":")
		if !ok {
			continue
		}
		lineStr, _, _ := strings.Cut(rest, ":")
		n, err := strconv.Atoi(lineStr)
		if err != nil {
			continue
		}
		fs = append(fs, frame{fn, filepath.Base(file), n})
		fn = ""
	}
	return fs
}

// isSubsequence reports whether want appears in got in order.
func isSubsequence(got, want []frame) bool {
	i := 0
	for _, g := range got {
		if i < len(want) && g == want[i] {
			i++
		}
	}
	return i == len(want)
}

// testGDB gives gdb nothing but each fixture core: gdb 13 fetches the
// executable by the build-id the core records, then the shared library,
// their debuginfo and the sources.
func testGDB(t *testing.T, base string, ref *reference) {
	fixtures.RequireTools(t, "gdb")
	out, err := exec.Command("gdb", "-batch", "-nx", "-ex", "show debuginfod enabled").CombinedOutput()
	if err != nil {
		t.Fatalf("gdb: %v\n%s", err, out)
	}
	if bytes.Contains(out, []byte("not compiled")) {
		t.Skipf("gdb without debuginfod: %s", out)
	}
	for _, c := range fixtures.Cores(t) {
		t.Run(c.File, func(t *testing.T) {
			t.Parallel()
			core := fixtures.CoreFile(t, c.File)
			env, cache := clientEnv(t, base)
			want := referenceFrames(t, c)
			// bt prints no source lines; selecting the innermost fixture
			// frame does (a gcore's innermost frame is in libc).
			out, errOut, err := run(t, env, "gdb", "-batch", "-nx",
				"-iex", "set debuginfod enabled on", "-iex", "set debuginfod urls "+base,
				"-ex", `echo @@bt\n`, "-ex", "bt", "-ex", `echo @@end\n`, "-ex", "frame function "+want[0].fn, "-c", core)
			if err != nil {
				t.Fatalf("gdb: %v\n%s\n%s", err, out, errOut)
			}
			_, bt, ok := strings.Cut(out, "@@bt\n")
			bt, _, ok2 := strings.Cut(bt, "@@end\n")
			if !ok || !ok2 {
				t.Fatalf("gdb printed no backtrace:\n%s\n%s", out, errOut)
			}
			got := fixtureFrames(t, bt)
			if !slices.Equal(got, want) {
				t.Errorf("gdb bt frames\n  %v\nwant (fixtures/cores)\n  %v\n%s\n%s", got, want, bt, errOut)
			}
			exe, err := os.ReadFile(filepath.Join(cache, executableID(t, c), "executable"))
			if err != nil {
				t.Fatalf("gdb did not fetch the executable: %v\n%s", err, errOut)
			}
			if !bytes.Equal(exe, ref.file(t, c.NEVRA, c.Executable)) {
				t.Errorf("fetched executable differs from %s in %s", c.Executable, c.NEVRA)
			}
			srcs, err := filepath.Glob(filepath.Join(cache, "*", "source##*"))
			if err != nil {
				t.Fatal(err)
			}
			if len(srcs) == 0 {
				t.Fatalf("gdb fetched no source:\n%s", errOut)
			}
			for _, s := range srcs {
				got, err := os.ReadFile(s)
				if err != nil {
					t.Fatal(err)
				}
				p := strings.ReplaceAll(strings.TrimPrefix(filepath.Base(s), "source"), "##", "/")
				if !bytes.Equal(got, ref.file(t, debugsource(c.NEVRA), p)) {
					t.Errorf("fetched source %s differs from the reference", p)
				}
			}
		})
	}
}

// testAgainstElfutils runs elfutils' debuginfod over the fixture RPMs and
// asks both servers the same questions: the bodies and sizes must agree
// wherever elfutils answers. (elfutils serves only the sources a build-id's
// DWARF names; this server serves any source of the build, a superset.)
func testAgainstElfutils(t *testing.T, base string) {
	fixtures.RequireTools(t, "debuginfod")
	anchor, logText := startElfutils(t, "debuginfod")
	// get answers status 0 when the server is not up (yet).
	get := func(url string) (int, http.Header, []byte) {
		resp, err := noRedirect.Get(url)
		if err != nil {
			return 0, nil, nil
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return 0, nil, nil
		}
		return resp.StatusCode, resp.Header, b
	}
	elfs := fixtures.ELFFiles(t)

	var paths []string
	seen := map[string]bool{}
	for _, e := range elfs {
		if seen[e.BuildID] {
			continue
		}
		seen[e.BuildID] = true
		b := "/buildid/" + e.BuildID
		paths = append(paths, b+"/executable", b+"/debuginfo")
		for _, s := range []string{".debug_info", ".debug_line", ".debug_str", ".symtab", ".text", ".rodata",
			".eh_frame", ".dynsym", ".gnu_debuglink", ".note.gnu.build-id", ".bss", ".no_such"} {
			paths = append(paths, b+"/section/"+s)
		}
		name, _, _ := strings.Cut(e.NEVRA, "-debuginfo")
		n, err := index.ParseNEVRA(name)
		if err != nil {
			t.Fatal(err)
		}
		dir := fmt.Sprintf("/usr/src/debug/%s-%s-%s.%s/", n.Name, n.Version, n.Release, n.Arch)
		for _, f := range []string{n.Name + ".c", "lib" + n.Name + ".c", n.Name + ".h"} {
			paths = append(paths, b+"/source"+dir+f)
		}
	}
	agreed := 0
	for _, p := range paths {
		wantCode, wantHdr, wantBody := get(anchor + p)
		code, hdr, body := get(base + p)
		switch {
		case wantCode == 200:
			if code != 200 || !bytes.Equal(body, wantBody) {
				t.Errorf("%s: status %d, %d bytes; elfutils: 200, %d bytes", p, code, len(body), len(wantBody))
				continue
			}
			// elfutils 0.188 sometimes sends the size of the whole file
			// a section came from: for a section, want its own size.
			hs := []string{"Last-Modified", "X-Debuginfod-Size"}
			if strings.Contains(p, "/section/") {
				hs = hs[:1]
				if want := strconv.Itoa(len(wantBody)); hdr.Get("X-Debuginfod-Size") != want {
					t.Errorf("%s: X-DEBUGINFOD-SIZE %q, want %s", p, hdr.Get("X-Debuginfod-Size"), want)
				}
			}
			for _, h := range hs {
				if hdr.Get(h) != wantHdr.Get(h) {
					t.Errorf("%s: %s %q; elfutils %q", p, h, hdr.Get(h), wantHdr.Get(h))
				}
			}
			if filepath.Base(hdr.Get("X-Debuginfod-Archive")) != filepath.Base(wantHdr.Get("X-Debuginfod-Archive")) {
				t.Errorf("%s: archive %q; elfutils %q", p, hdr.Get("X-Debuginfod-Archive"), wantHdr.Get("X-Debuginfod-Archive"))
			}
			agreed++
		case wantCode == 404 && strings.Contains(p, "/section/"):
			if code != 404 {
				t.Errorf("%s: status %d; elfutils 404", p, code)
			}
		case wantCode != 404:
			t.Errorf("%s: elfutils answered %d", p, wantCode)
		}
	}
	t.Logf("%d of %d answers compared with elfutils'", agreed, len(paths))
	if agreed < len(seen)*4 {
		t.Errorf("only %d answers to compare; elfutils log:\n%s", agreed, logText())
	}
}

// discard is a ResponseWriter that keeps nothing, for measuring the
// handler alone.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }

// BenchmarkDebuginfod measures the handlers, warm, without the network:
// what a request costs the server beyond net/http.
func BenchmarkDebuginfod(b *testing.B) {
	idx, pool := newFixtureStore(b)
	gin.SetMode(gin.TestMode)
	r := gin.New()
	NewDebuginfod(idx, pool).Register(r)
	exe := buildID(b, "crashme-1.0-1.x86_64", "/usr/bin/crashme")
	for _, bc := range []struct {
		name, path string
		code       int
	}{
		{"executable", "/buildid/" + exe + "/executable", 200},
		{"debuginfo", "/buildid/" + exe + "/debuginfo", 200},
		{"source", "/buildid/" + exe + "/source/usr/src/debug/crashme-1.0-1.x86_64/crashme.c", 200},
		{"section", "/buildid/" + exe + "/section/.debug_info", 200},
		{"miss", "/buildid/" + strings.Repeat("ab", 20) + "/executable", 404},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, bc.path, nil)
			w := &discard{h: http.Header{}}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				r.ServeHTTP(w, req)
				if w.code != bc.code {
					b.Fatalf("status %d, want %d", w.code, bc.code)
				}
			}
		})
	}
}

// layoutStore is a store built by hand, for package layouts the fixtures
// do not have.
type layoutStore struct {
	t    *testing.T
	idx  *index.Store
	pool *blob.Pool
}

func newLayoutStore(t *testing.T) *layoutStore {
	st := fixturestore.Empty(t)
	return &layoutStore{t, st.Index, st.Pool}
}

// file is a regular file of content, carrying id (hex) when it is not "".
func (s *layoutStore) file(path, content, id string, kind index.Kind) index.File {
	d := blob.Sum([]byte(content))
	if _, err := s.pool.Put(d, strings.NewReader(content)); err != nil {
		s.t.Fatal(err)
	}
	f := index.File{Path: path, Mode: 0o644, Size: int64(len(content)), Blob: d, Kind: kind}
	if id != "" {
		bid, err := index.ParseBuildID(id)
		if err != nil {
			s.t.Fatal(err)
		}
		f.BuildID = bid
	}
	return f
}

// fetch GETs url, as do sends a request.
func fetch(t testing.TB, url string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return do(t, req)
}

// do sends req, not following redirects, and returns the status, the
// headers and the body.
func do(t testing.TB, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func link(path, target string) index.File {
	return index.File{Path: path, Mode: os.ModeSymlink | 0o777, Link: target}
}

func (s *layoutStore) pkg(nevra, srpm string, files ...index.File) {
	n, err := index.ParseNEVRA(nevra)
	if err != nil {
		s.t.Fatal(err)
	}
	p := &index.Package{NEVRA: n, SourceRPM: srpm, FileName: nevra + ".rpm", BuildTime: 1700000000,
		Sources: []string{"hand"}, Files: files}
	if err := s.idx.PutPackage(p); err != nil {
		s.t.Fatal(err)
	}
}

// TestDebuginfodLayouts serves sources from -debugsource packages whose
// version differs from the binary sub-package's, through symlinks, from
// -debuginfo packages that ship their sources themselves (rpm before
// 4.14), and survives blobs that gc removed.
func TestDebuginfodLayouts(t *testing.T) {
	s := newLayoutStore(t)
	const (
		libs   = "aaaa000000000000000000000000000000000001"
		old    = "aaaa000000000000000000000000000000000002"
		rebuil = "aaaa000000000000000000000000000000000003"
		notELF = "aaaa000000000000000000000000000000000004"
		src    = "/usr/src/debug/foo-2.0-3.x86_64/"
	)
	// foo-libs is a sub-package with a version of its own; its sources
	// are in foo-debugsource, named after the source RPM.
	s.pkg("foo-libs-0.9-3.x86_64", "foo-2.0-3.src.rpm", s.file("/usr/lib64/libfoo.so.0", "libfoo", libs, index.KindExecutable))
	s.pkg("foo-libs-debuginfo-0.9-3.x86_64", "foo-2.0-3.src.rpm",
		s.file("/usr/lib/debug/usr/lib64/libfoo.so.0.debug", "libfoo.debug", libs, index.KindDebuginfo))
	s.pkg("foo-debugsource-2.0-3.x86_64", "foo-2.0-3.src.rpm",
		s.file(src+"foo.c", "int foo;\n", "", index.KindNone),
		link(src+"rel.c", "sub/../foo.c"),
		link(src+"abs.c", src+"foo.c"),
		link(src+"loop1.c", "loop2.c"),
		link(src+"loop2.c", "loop1.c"),
		link(src+"out.c", "../../../../etc/passwd"),
		index.File{Path: src + "dir", Mode: os.ModeDir | 0o755},
	)
	// A version built with the same source RPM name but another release
	// must not lend its sources.
	s.pkg("foo-debugsource-2.0-4.x86_64", "foo-2.0-4.src.rpm", s.file(src+"only-in-4.c", "4", "", index.KindNone))
	// bar: the -debuginfo package ships the sources itself.
	s.pkg("bar-1-1.x86_64", "bar-1-1.src.rpm", s.file("/usr/bin/bar", "bar", old, index.KindExecutable))
	s.pkg("bar-debuginfo-1-1.x86_64", "bar-1-1.src.rpm",
		s.file("/usr/lib/debug/usr/bin/bar.debug", "bar.debug", old, index.KindDebuginfo),
		s.file("/usr/src/debug/bar-1/bar.c", "int bar;\n", "", index.KindNone))
	// baz: two builds carry one build-id; gc removes the newer one's blob.
	s.pkg("baz-1-1.x86_64", "baz-1-1.src.rpm", s.file("/usr/bin/baz", "baz build 1", rebuil, index.KindExecutable))
	s.pkg("baz-1-2.x86_64", "baz-1-2.src.rpm", s.file("/usr/bin/baz", "baz build 2", rebuil, index.KindExecutable))
	// qux: "ELF" files that are not ELF.
	s.pkg("qux-1-1.x86_64", "qux-1-1.src.rpm", s.file("/usr/bin/qux", "\x7fELF garbage", notELF, index.KindExecutable))
	s.pkg("qux-debuginfo-1-1.x86_64", "qux-1-1.src.rpm",
		s.file("/usr/lib/debug/usr/bin/qux.debug", strings.Repeat("\x7fELF", 100), notELF, index.KindDebuginfo))

	srv := serveDebuginfod(t, NewDebuginfod(s.idx, s.pool))
	get := func(t *testing.T, path string) (int, http.Header, string) {
		t.Helper()
		code, h, b := fetch(t, srv.URL+path)
		return code, h, string(b)
	}
	for _, tc := range []struct {
		name, path string
		status     int
		body, file string
	}{
		{"debugsource of the source RPM", "/buildid/" + libs + "/source" + src + "foo.c", 200, "int foo;\n", src + "foo.c"},
		{"relative symlink", "/buildid/" + libs + "/source" + src + "rel.c", 200, "int foo;\n", src + "foo.c"},
		{"absolute symlink", "/buildid/" + libs + "/source" + src + "abs.c", 200, "int foo;\n", src + "foo.c"},
		{"symlink loop", "/buildid/" + libs + "/source" + src + "loop1.c", 404, "", ""},
		{"symlink out of the package", "/buildid/" + libs + "/source" + src + "out.c", 404, "", ""},
		{"directory", "/buildid/" + libs + "/source" + src + "dir", 404, "", ""},
		{"another release's source", "/buildid/" + libs + "/source" + src + "only-in-4.c", 404, "", ""},
		{"sources in -debuginfo", "/buildid/" + old + "/source/usr/src/debug/bar-1/bar.c", 200, "int bar;\n", "/usr/src/debug/bar-1/bar.c"},
		{"newest rebuild", "/buildid/" + rebuil + "/executable", 200, "baz build 2", "/usr/bin/baz"},
		{"no debuginfo", "/buildid/" + rebuil + "/debuginfo", 404, "", ""},
		{"no sources", "/buildid/" + rebuil + "/source/usr/src/debug/baz.c", 404, "", ""},
		{"section of a file that is not ELF", "/buildid/" + notELF + "/section/.text", 404, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, h, body := get(t, tc.path)
			if code != tc.status {
				t.Fatalf("status %d, want %d: %s", code, tc.status, body)
			}
			if tc.status == 200 && (body != tc.body || h.Get("X-Debuginfod-File") != tc.file) {
				t.Errorf("body %q file %q, want %q %q", body, h.Get("X-Debuginfod-File"), tc.body, tc.file)
			}
		})
	}

	t.Run("gc removed the newest rebuild", func(t *testing.T) {
		gc := func(content string) {
			d := blob.Sum([]byte(content))
			if err := s.pool.Remove(d); err != nil {
				t.Fatal(err)
			}
			if err := s.pool.RemovePlain(d); err != nil {
				t.Fatal(err)
			}
		}
		gc("baz build 2")
		// A fresh server, so that nothing is in memory yet.
		srv2 := serveDebuginfod(t, NewDebuginfod(s.idx, s.pool))
		code, _, b := fetch(t, srv2.URL+"/buildid/"+rebuil+"/executable")
		if code != 200 || string(b) != "baz build 1" {
			t.Errorf("status %d body %q, want the older build", code, b)
		}
		gc("baz build 1")
		// The older build's bytes are in memory now: a fresh server again.
		srv2 = serveDebuginfod(t, NewDebuginfod(s.idx, s.pool))
		if code, _, _ := fetch(t, srv2.URL+"/buildid/"+rebuil+"/executable"); code != 404 {
			t.Errorf("every blob gone: status %d, want 404", code)
		}
	})
}

func TestCleanSourcePath(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"/usr/src/debug/a.c", "/usr/src/debug/a.c", true},
		{"//usr/src//debug/./a.c", "/usr/src/debug/a.c", true},
		{"/usr/src/debug/glibc-2.38/csu/../sysdeps/x86_64/start.S", "/usr/src/debug/glibc-2.38/sysdeps/x86_64/start.S", true},
		{"/usr/..", "/", true},
		{"/", "/", true},
		{"/a/b/", "/a/b", true},
		{"", "", false},
		{"usr/src/a.c", "", false},
		{"/..", "", false},
		{"/../etc/passwd", "", false},
		{"/a/../../etc/passwd", "", false},
		{"/a/./../b/../..", "", false},
		{"/a\x00b", "", false},
		{"/" + strings.Repeat("a", MaxSourcePath), "", false},
	} {
		got, err := cleanSourcePath(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("cleanSourcePath(%.40q) = %q, %v; want %q, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func FuzzCleanSourcePath(f *testing.F) {
	for _, s := range []string{"/usr/src/debug/a.c", "//a/./b/../c", "/../x", "/a/..", "", "a", "/a\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := cleanSourcePath(in)
		if err != nil {
			return
		}
		if !strings.HasPrefix(got, "/") || filepath.Clean(got) != got || len(got) > MaxSourcePath ||
			strings.Contains(got, "\x00") || slices.Contains(strings.Split(got, "/"), "..") {
			t.Errorf("cleanSourcePath(%q) = %q: not a clean absolute path", in, got)
		}
	})
}

func TestCacheBudget(t *testing.T) {
	c := newCache[int, int](100, 4)
	for i := range 1000 {
		if got := c.put(i, i, 1); got != i {
			t.Fatalf("put(%d) returned %d", i, got)
		}
		if v, ok := c.get(i); !ok || v != i {
			t.Fatalf("get(%d) right after put: %d, %v", i, v, ok)
		}
	}
	n := 0
	for i := range c.shards {
		if c.shards[i].cost > c.per || int64(len(c.shards[i].m)) != c.shards[i].cost {
			t.Errorf("shard %d: cost %d, %d entries, budget %d", i, c.shards[i].cost, len(c.shards[i].m), c.per)
		}
		n += len(c.shards[i].m)
	}
	if n == 0 || n > 100 {
		t.Errorf("%d entries kept, want 1..100", n)
	}
	if got := c.put(5000, 1, 1); got != 1 {
		t.Fatal(got)
	}
	if got := c.put(5000, 2, 1); got != 1 {
		t.Errorf("second put of a key returned %d, want the first value", got)
	}
	c.drop(5000)
	if _, ok := c.get(5000); ok {
		t.Error("dropped key still there")
	}
}

// TestDebuginfodUnstripped: an executable built with -g and never
// stripped answers /debuginfo itself when no separate debug file exists,
// as debuginfod does; a stripped one is still 404 there.
func TestDebuginfodUnstripped(t *testing.T) {
	fixtures.RequireTools(t, "gcc", "strip")
	dir := t.TempDir()
	src := filepath.Join(dir, "m.c")
	if err := os.WriteFile(src, []byte("int main(void) { return 0; }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	full, stripped := filepath.Join(dir, "full"), filepath.Join(dir, "stripped")
	for _, args := range [][]string{
		{"gcc", "-g", "-Wl,--build-id", "-o", full, src},
		{"gcc", "-g", "-Wl,--build-id=0x1234567890abcdef1234567890abcdef12345678", "-o", stripped, src},
		{"strip", stripped},
	} {
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	s := newLayoutStore(t)
	ids := map[string]string{}
	for name, path := range map[string]string{"full": full, "stripped": stripped} {
		raw, err := elfnote.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		ids[name] = fmt.Sprintf("%x", raw)
		content, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		s.pkg(name+"-1-1.x86_64", name+"-1-1.src.rpm", s.file("/usr/bin/"+name, string(content), ids[name], index.KindExecutable))
	}
	srv := serveDebuginfod(t, NewDebuginfod(s.idx, s.pool))
	get := func(path string) (int, []byte) {
		t.Helper()
		code, _, b := fetch(t, srv.URL+path)
		return code, b
	}
	want, err := os.ReadFile(full)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := get("/buildid/" + ids["full"] + "/debuginfo"); code != http.StatusOK || !bytes.Equal(body, want) {
		t.Fatalf("debuginfo of an unstripped executable: %d, %d bytes; want 200 and its %d bytes", code, len(body), len(want))
	}
	if code, _ := get("/buildid/" + ids["stripped"] + "/debuginfo"); code != http.StatusNotFound {
		t.Fatalf("debuginfo of a stripped executable: %d, want 404", code)
	}
	if code, _ := get("/buildid/" + ids["stripped"] + "/executable"); code != http.StatusOK {
		t.Fatalf("executable of the stripped one: %d, want 200", code)
	}
}

// startElfutils runs elfutils' debuginfod (the binary bin) over the fixture
// RPMs, without federation, and returns its URL once it serves every
// fixture build-id, with a function that reads its log.
func startElfutils(t *testing.T, bin string) (url string, logText func() string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-p", strconv.Itoa(port), "-d", filepath.Join(dir, "db.sqlite"),
		"-t0", "-g0", "-R", fixtures.Path("repo", "Packages"))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DEBUGINFOD_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	logs, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() })
	cmd.Stdout, cmd.Stderr = logs, logs
	logText = func() string {
		b, err := os.ReadFile(logs.Name())
		if err != nil {
			return err.Error()
		}
		return string(b)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := cmd.Wait(); err != nil && ctx.Err() == nil {
			t.Errorf("elfutils debuginfod: %v\n%s", err, logText())
		}
	})
	url = fmt.Sprintf("http://127.0.0.1:%d", port)
	deadline := time.Now().Add(60 * time.Second)
	for _, e := range fixtures.ELFFiles(t) {
		for {
			resp, err := noRedirect.Get(url + "/buildid/" + e.BuildID + "/" + e.Kind)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("elfutils debuginfod did not serve %s %s in time:\n%s", e.BuildID, e.Kind, logText())
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return url, logText
}
