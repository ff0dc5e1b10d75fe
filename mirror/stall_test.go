package mirror

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
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
	repo := fixtures.FS("repo")
	inner := fixtures.NewServer(repo)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := strings.TrimPrefix(r.URL.Path, "/")
		if !stall(p) {
			inner.ServeHTTP(w, r)
			return
		}
		b, err := fs.ReadFile(repo, p)
		if err != nil {
			http.NotFound(w, r)
			return
		}
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
	}))
	t.Cleanup(hs.Close)
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
