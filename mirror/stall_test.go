package mirror

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/retraced/retraced/fixtures"
)

// stallingServer serves the fixture repository, except that a path for
// which stall returns true gets its headers and half its body, then
// nothing until the client goes away; claim, when not 0, is the
// Content-Length it announces instead of the real one.
func stallingServer(t *testing.T, stall func(path string) bool, claim int64) *httptest.Server {
	t.Helper()
	hs, _ := interceptServer(t, stall, func(w http.ResponseWriter, r *http.Request, b []byte) int64 {
		n := int64(len(b))
		if claim > 0 {
			n = claim
		}
		w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		w.WriteHeader(http.StatusOK)
		w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(time.Minute):
		}
		return int64(len(b) / 2)
	})
	return hs
}

// TestStalledDownload: an upstream that sends headers and half a body,
// then nothing, fails that one package after the idle timeout, with an
// error saying so; the rest of the sync lands and the sync ends.
func TestStalledDownload(t *testing.T) {
	hs := stallingServer(t, func(p string) bool { return strings.HasSuffix(p, "/crashme-1.0-1.x86_64.rpm") }, 0)
	m := newTestMirrorConfig(t, "", Config{Workers: 2, IdleTimeout: 300 * time.Millisecond})
	m.add(t, "stall", hs.URL)
	start := time.Now()
	res := m.sync(t, "stall")
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("the sync took %s", took)
	}
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Location, "crashme-1.0-1.x86_64.rpm") || !errors.Is(res.Failed[0], ErrStalled) {
		t.Fatalf("failed %v, want the stalled package with ErrStalled", res.Failed)
	}
	if !strings.Contains(res.Failed[0].Error(), "no data for 300ms") {
		t.Errorf("error %q does not say why", res.Failed[0].Error())
	}
	if want := len(fixtures.Packages(t)) - 1; res.New != want {
		t.Errorf("%d packages landed, want the other %d", res.New, want)
	}
}

// TestStalledMetadata: a repomd.xml that claims 10 GiB is refused at
// once, and one that stalls half-way fails the sync after the idle
// timeout; neither holds the source.
func TestStalledMetadata(t *testing.T) {
	for name, claim := range map[string]int64{"claims 10 GiB": 10 << 30, "stalls": 0} {
		t.Run(name, func(t *testing.T) {
			hs := stallingServer(t, func(p string) bool { return p == "repodata/repomd.xml" }, claim)
			m := newTestMirrorConfig(t, "", Config{Workers: 2, IdleTimeout: 300 * time.Millisecond})
			m.add(t, "stall", hs.URL)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			res, err := m.Sync(ctx, "stall", nil)
			if ctx.Err() != nil {
				t.Fatal("the sync hung")
			}
			if err == nil && res.Err == nil {
				t.Fatalf("sync succeeded: %s", res.Summary())
			}
			if err == nil {
				err = res.Err
			}
			want := "no data for 300ms"
			if claim > 0 {
				want = "more than the"
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q, want it to say %q", err, want)
			}
			// The source is free again: a second sync runs (and fails the
			// same way) rather than being refused as busy.
			if _, err := m.Sync(ctx, "stall", nil); err != nil && strings.Contains(err.Error(), "already") {
				t.Errorf("second sync: %v", err)
			}
		})
	}
}

// hostileServer serves the fixture repository, except the package whose
// path ends in name, which serve answers with its bytes b instead; it
// returns the server and a count of the bytes serve managed to write.
func hostileServer(t *testing.T, name string, serve func(w http.ResponseWriter, r *http.Request, b []byte) int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	return interceptServer(t, func(p string) bool { return strings.HasSuffix(p, "/"+name) }, serve)
}

// interceptServer serves the fixture repository, except the paths match
// picks, which serve answers with the file's bytes b; it returns the
// server and a count of the bytes serve says it wrote.
func interceptServer(t *testing.T, match func(path string) bool, serve func(w http.ResponseWriter, r *http.Request, b []byte) int64) (*httptest.Server, *atomic.Int64) {
	t.Helper()
	repo := fixtures.FS("repo")
	inner := fixtures.NewServer(repo)
	var written atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if !match(p) {
			inner.ServeHTTP(w, r)
			return
		}
		b, err := fs.ReadFile(repo, p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
		written.Add(serve(w, r, b))
	}))
	t.Cleanup(hs.Close)
	return hs, &written
}

// syncBounded syncs source name, failing the test if that takes 20 s.
func (m *testMirror) syncBounded(t *testing.T, name string) (*Result, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	res, err := m.Sync(ctx, name, nil)
	took := time.Since(start)
	if ctx.Err() != nil {
		t.Fatalf("the sync hung for %s", took)
	}
	if err != nil {
		t.Fatal(err)
	}
	return res, took
}

// TestTricklingDownload: an upstream that sends a package a byte every
// 20 ms (50 bytes/s, always within the idle timeout) fails that package
// with ErrTooSlow within about two rate windows; the rest of the sync
// lands. Before, only the idle timeout bounded a body, and the trickle
// held the sync for the package's whole size (here over 3 minutes).
func TestTricklingDownload(t *testing.T) {
	const name = "crashme-1.0-1.x86_64.rpm"
	hs, _ := hostileServer(t, name, func(w http.ResponseWriter, r *http.Request, b []byte) int64 {
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusOK)
		for i := range b {
			if _, err := w.Write(b[i : i+1]); err != nil {
				return int64(i)
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return int64(i + 1)
			case <-time.After(20 * time.Millisecond):
			}
		}
		return int64(len(b))
	})
	m := newTestMirrorConfig(t, "", Config{Workers: 2, IdleTimeout: 5 * time.Second, MinRate: 1 << 10, RateWindow: 300 * time.Millisecond})
	m.add(t, "trickle", hs.URL)
	res, took := m.syncBounded(t, "trickle")
	if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Location, name) || !errors.Is(res.Failed[0], ErrTooSlow) || !errors.Is(res.Failed[0], ErrStalled) {
		t.Fatalf("failed %v, want the trickled package with ErrTooSlow", res.Failed)
	}
	if !strings.Contains(res.Failed[0].Error(), "slower than 1024 bytes/s") {
		t.Errorf("error %q does not say why", res.Failed[0].Error())
	}
	if took > 5*time.Second {
		t.Errorf("the sync took %s, want the trickle cut within two 300ms windows", took)
	}
	if want := len(fixtures.Packages(t)) - 1; res.New != want {
		t.Errorf("%d packages landed, want the other %d", res.New, want)
	}
}

// TestSizeFromPrimary: primary.xml's size of a package bounds its
// download. A server announcing 10 GiB (and sending zeros for as long as
// the client reads) is refused on its headers, and one whose chunked body
// runs on past the package with endless zeros is cut one byte after the
// size; either way the package fails saying so, the server gets to write
// little, and the rest of the sync lands.
func TestSizeFromPrimary(t *testing.T) {
	const name = "crashme-1.0-1.x86_64.rpm"
	zeros := make([]byte, 64<<10)
	endless := func(w http.ResponseWriter, n int64) int64 {
		for n < 16<<30 {
			m, err := w.Write(zeros)
			n += int64(m)
			if err != nil {
				break
			}
		}
		return n
	}
	for _, tc := range []struct {
		name  string
		serve func(w http.ResponseWriter, r *http.Request, b []byte) int64
		want  string
	}{
		{"content-length over the size", func(w http.ResponseWriter, r *http.Request, b []byte) int64 {
			w.Header().Set("Content-Length", strconv.FormatInt(10<<30, 10))
			w.WriteHeader(http.StatusOK)
			return endless(w, 0)
		}, "the server says 10737418240 bytes, the metadata"},
		{"body past the size", func(w http.ResponseWriter, r *http.Request, b []byte) int64 {
			w.WriteHeader(http.StatusOK) // chunked: no length to refuse
			n, _ := w.Write(b)
			return endless(w, int64(n))
		}, "larger than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hs, written := hostileServer(t, name, tc.serve)
			m := newTestMirrorConfig(t, "", Config{Workers: 2})
			m.add(t, "big", hs.URL)
			res, _ := m.syncBounded(t, "big")
			if len(res.Failed) != 1 || !strings.Contains(res.Failed[0].Location, name) || !strings.Contains(res.Failed[0].Error(), tc.want) {
				t.Fatalf("failed %v, want the package refused with %q", res.Failed, tc.want)
			}
			if want := len(fixtures.Packages(t)) - 1; res.New != want {
				t.Errorf("%d packages landed, want the other %d", res.New, want)
			}
			hs.Close() // waits for the handler: written is final
			t.Logf("%s; the server wrote %d bytes", res.Failed[0].Error(), written.Load())
			if n := written.Load(); n > 64<<20 {
				t.Errorf("the server wrote %d bytes before the client stopped reading", n)
			}
		})
	}
}
