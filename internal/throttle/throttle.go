// Package throttle slows down guessing: it counts each client's failed
// attempts (a wrong task password, a wrong admin token) and refuses the
// client for a while once they pass a limit. Of retraced, it may import
// nothing. serve puts its Middleware in front of every route.
package throttle

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Failures counts failed attempts per key (a client address) in fixed
// windows: after Limit failures within Window, Blocked reports the key
// blocked until the window ends. The zero value is not usable: use New.
type Failures struct {
	limit  int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	keys map[string]*record
}

type record struct {
	start time.Time
	n     int
}

// maxKeys bounds the memory one Failures holds: beyond it, expired
// records are dropped, and if none has expired, all are (a flood of
// addresses then costs the guesser nothing, but the server no memory).
const maxKeys = 1 << 16

// New returns a Failures allowing limit failures per window; now is the
// clock (nil: time.Now).
func New(limit int, window time.Duration, now func() time.Time) *Failures {
	if now == nil {
		now = time.Now
	}
	return &Failures{limit: limit, window: window, now: now, keys: map[string]*record{}}
}

// Blocked reports whether key has failed Limit times in its current
// window, and how long until the window ends.
func (f *Failures) Blocked(key string) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.keys[key]
	if !ok {
		return false, 0
	}
	left := r.start.Add(f.window).Sub(f.now())
	if left <= 0 {
		delete(f.keys, key)
		return false, 0
	}
	return r.n >= f.limit, left
}

// BlockedKeys returns the keys blocked now, each with when its block
// ends, for the status page.
func (f *Failures) BlockedKeys() map[string]time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	out := map[string]time.Time{}
	for k, r := range f.keys {
		if end := r.start.Add(f.window); r.n >= f.limit && end.After(now) {
			out[k] = end
		}
	}
	return out
}

// Fail records one failed attempt of key.
func (f *Failures) Fail(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.now()
	r, ok := f.keys[key]
	if !ok || now.Sub(r.start) >= f.window {
		if !ok && len(f.keys) >= maxKeys {
			f.pruneLocked(now)
		}
		r = &record{start: now}
		f.keys[key] = r
	}
	r.n++
}

func (f *Failures) pruneLocked(now time.Time) {
	for k, r := range f.keys {
		if now.Sub(r.start) >= f.window {
			delete(f.keys, k)
		}
	}
	if len(f.keys) >= maxKeys {
		clear(f.keys)
	}
}

// Middleware answers 429 Too Many Requests, with Retry-After, to a
// client blocked for its failures, and counts as a failure every answer
// of 401 or 403 (a wrong admin token, a wrong task password) to it. A
// client is gin's ClientIP: the connection's address, or the address a
// trusted proxy (the engine's SetTrustedProxies) puts in X-Forwarded-For;
// from anyone else that header is ignored, being anyone's to write.
func (f *Failures) Middleware() gin.HandlerFunc {
	return func(c *gin.Context) {
		key := c.ClientIP()
		if key == "" {
			key = c.Request.RemoteAddr
			if host, _, err := net.SplitHostPort(key); err == nil {
				key = host
			}
		}
		if blocked, left := f.Blocked(key); blocked {
			c.Header("Retry-After", strconv.Itoa(int(left.Seconds()+0.999)))
			msg := "too many failed attempts; try again later"
			if strings.HasPrefix(c.Request.URL.Path, "/api/") {
				c.AbortWithStatusJSON(http.StatusTooManyRequests, gin.H{"error": msg})
			} else {
				c.Abort()
				c.String(http.StatusTooManyRequests, "%s\n", msg)
			}
			return
		}
		c.Next()
		if s := c.Writer.Status(); s == http.StatusUnauthorized || s == http.StatusForbidden {
			f.Fail(key)
		}
	}
}
