package throttle

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
)

func TestFailures(t *testing.T) {
	now := time.Unix(1000, 0)
	f := New(3, time.Minute, func() time.Time { return now })
	for i := range 3 {
		if b, _ := f.Blocked("a"); b {
			t.Fatalf("blocked after %d failures", i)
		}
		f.Fail("a")
	}
	if b, left := f.Blocked("a"); !b || left != time.Minute {
		t.Fatalf("after 3 failures: blocked %v for %s, want blocked for 1m", b, left)
	}
	if b, _ := f.Blocked("b"); b {
		t.Fatal("another key is blocked")
	}
	now = now.Add(time.Minute)
	if b, _ := f.Blocked("a"); b {
		t.Fatal("still blocked after the window")
	}
	f.Fail("a")
	if b, _ := f.Blocked("a"); b {
		t.Fatal("one failure in a new window blocks")
	}
}

func TestFailuresBounded(t *testing.T) {
	now := time.Unix(1000, 0)
	f := New(1, time.Minute, func() time.Time { return now })
	for i := range maxKeys + 10 {
		f.Fail(fmt.Sprint(i))
	}
	if n := len(f.keys); n > maxKeys {
		t.Fatalf("%d keys held, bound %d", n, maxKeys)
	}
}

// TestMiddleware: 401 and 403 answers count against the client's address
// (not X-Forwarded-For, which it writes itself, as no proxy is trusted);
// once blocked it gets 429 with Retry-After, JSON under /api/; other
// clients are unaffected.
func TestMiddleware(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	if err := r.SetTrustedProxies(nil); err != nil {
		t.Fatal(err)
	}
	r.Use(New(2, time.Minute, nil).Middleware())
	r.GET("/api/x", func(c *gin.Context) { c.JSON(http.StatusUnauthorized, gin.H{"error": "token"}) })
	r.GET("/t", func(c *gin.Context) { c.String(http.StatusForbidden, "Invalid password") })
	r.GET("/ok", func(c *gin.Context) { c.String(http.StatusOK, "ok") })
	do := func(path, addr, xff string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = addr
		req.Header.Set("X-Forwarded-For", xff)
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w
	}
	if w := do("/api/x", "10.0.0.1:1000", "1.1.1.1"); w.Code != http.StatusUnauthorized {
		t.Fatalf("first: %d", w.Code)
	}
	if w := do("/t", "10.0.0.1:2000", "2.2.2.2"); w.Code != http.StatusForbidden {
		t.Fatalf("second: %d", w.Code)
	}
	w := do("/ok", "10.0.0.1:3000", "3.3.3.3")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "60" {
		t.Fatalf("blocked client: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if w := do("/api/x", "10.0.0.1:3000", ""); w.Code != http.StatusTooManyRequests || !strings.Contains(w.Body.String(), `"error"`) {
		t.Fatalf("blocked client on the API: %d %s", w.Code, w.Body)
	}
	if w := do("/ok", "10.0.0.2:1000", ""); w.Code != http.StatusOK {
		t.Fatalf("another client: %d", w.Code)
	}
}

// TestMiddlewareBehindProxy: behind a trusted proxy, each client its
// X-Forwarded-For names is counted on its own: one client's guesses block
// it and not the others that come through the same proxy; a client that
// is not the proxy cannot choose its address by writing the header.
func TestMiddlewareBehindProxy(t *testing.T) {
	gin.SetMode(gin.TestMode)
	r := gin.New()
	r.ForwardedByClientIP = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	if err := r.SetTrustedProxies([]string{"10.0.0.0/24"}); err != nil {
		t.Fatal(err)
	}
	f := New(2, time.Minute, nil)
	r.Use(f.Middleware())
	r.GET("/t", func(c *gin.Context) { c.String(http.StatusForbidden, "Invalid password") })
	do := func(addr, xff string) int {
		req := httptest.NewRequest(http.MethodGet, "/t", nil)
		req.RemoteAddr = addr
		if xff != "" {
			req.Header.Set("X-Forwarded-For", xff)
		}
		w := httptest.NewRecorder()
		r.ServeHTTP(w, req)
		return w.Code
	}
	// The guesser, through the proxy (a client may prepend anything: the
	// proxy appends the address it saw, and that is the one taken).
	for range 2 {
		do("10.0.0.1:1000", "198.51.100.1, 203.0.113.7")
	}
	if c := do("10.0.0.1:1000", "203.0.113.7"); c != http.StatusTooManyRequests {
		t.Fatalf("guesser behind the proxy: %d, want 429", c)
	}
	if c := do("10.0.0.1:1000", "203.0.113.8"); c != http.StatusForbidden {
		t.Fatalf("another client behind the same proxy: %d, want 403 (not blocked)", c)
	}
	if _, ok := f.BlockedKeys()["203.0.113.7"]; !ok || len(f.BlockedKeys()) != 1 {
		t.Fatalf("blocked: %v, want only 203.0.113.7", f.BlockedKeys())
	}
	// Not from the proxy: the header is ignored; the connection counts.
	for range 2 {
		do("192.0.2.5:1000", "203.0.113.9")
	}
	if c := do("192.0.2.5:1000", "203.0.113.10"); c != http.StatusTooManyRequests {
		t.Fatalf("a direct client changing X-Forwarded-For: %d, want 429", c)
	}
}
