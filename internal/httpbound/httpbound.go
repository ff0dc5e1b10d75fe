// Package httpbound keeps one HTTP client from holding the server: request
// bodies slower than a minimum rate are cut, and the connections served at
// once are capped below the process's file descriptor limit, so that a
// crowd of idle or trickling connections cannot starve downloads, syncs
// and gdb of descriptors. Of retraced, it may import nothing. Its users
// are serve and the retrace task protocol.
package httpbound

import (
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
)

// ErrTooSlow reports a request body slower than the minimum rate.
var ErrTooSlow = errors.New("request body too slow")

// RateReader reads a request body, failing with ErrTooSlow when fewer
// than min bytes a second arrive over any window, and at the request's
// deadline. The connection's read deadline moves along two windows ahead
// of the last check, so that a client that sends nothing at all is cut
// too (its Read fails with os.ErrDeadlineExceeded) within two windows.
type RateReader struct {
	r        io.Reader
	rc       *http.ResponseController
	end      time.Time // the whole body's deadline
	window   time.Duration
	min      int64 // bytes per window
	winStart time.Time
	n        int64 // bytes in this window
}

// NewRateReader wraps the body r of the request that rc controls: at
// least perSecond bytes a second over each window, all of it within
// timeout of now. Start sets the first deadline.
func NewRateReader(r io.Reader, rc *http.ResponseController, now time.Time, timeout, window time.Duration, perSecond int64) *RateReader {
	return &RateReader{r: r, rc: rc, end: now.Add(timeout), window: window,
		min: perSecond * int64(window) / int64(time.Second), winStart: now}
}

// Start sets the first read deadline. It returns http.ErrNotSupported for
// a connection without deadlines.
func (r *RateReader) Start() error { return r.rc.SetReadDeadline(r.deadline(r.winStart)) }

func (r *RateReader) deadline(now time.Time) time.Time {
	if d := now.Add(2 * r.window); d.Before(r.end) {
		return d
	}
	return r.end
}

// TimedOut reports whether the whole body's deadline has passed.
func (r *RateReader) TimedOut() bool { return !time.Now().Before(r.end) }

func (r *RateReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if now := time.Now(); now.Sub(r.winStart) >= r.window {
		if r.n < r.min {
			return n, ErrTooSlow
		}
		r.winStart, r.n = now, 0
		if derr := r.rc.SetReadDeadline(r.deadline(now)); derr != nil && !errors.Is(derr, http.ErrNotSupported) {
			return n, derr
		}
	}
	return n, err
}

// Close closes the body.
func (r *RateReader) Close() error {
	if c, ok := r.r.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// BodyRate is a gin middleware that puts every request body (except on
// the routes listed in skip, which bound their own) behind a RateReader
// of perSecond bytes a second over window, within timeout.
func BodyRate(perSecond int64, window, timeout time.Duration, skip ...string) gin.HandlerFunc {
	return func(c *gin.Context) {
		if c.Request.Body == nil || c.Request.Body == http.NoBody || c.Request.ContentLength == 0 {
			c.Next()
			return
		}
		for _, s := range skip {
			if c.FullPath() == s {
				c.Next()
				return
			}
		}
		rr := NewRateReader(c.Request.Body, http.NewResponseController(c.Writer), time.Now(), timeout, window, perSecond)
		if err := rr.Start(); err != nil && !errors.Is(err, http.ErrNotSupported) {
			c.Next()
			return
		}
		c.Request.Body = rr
		c.Next()
	}
}

// MaxConns is how many connections a server may hold open with nofile
// file descriptors: half of what is left after 64 for the process's own
// files, at least 16, at most 4096. The other half stays for downloads,
// blobs, the index and gdb.
func MaxConns(nofile uint64) int {
	n := (int64(nofile) - 64) / 2
	return int(min(4096, max(16, n)))
}

// NoFile returns the process's soft RLIMIT_NOFILE (1024 when unknown).
func NoFile() uint64 {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return 1024
	}
	return rl.Cur
}

// LimitListener caps the connections ln hands out at n at once; the rest
// wait in the kernel's backlog, holding no descriptor of ours.
func LimitListener(ln net.Listener, n int) net.Listener { return netutil.LimitListener(ln, n) }

// Linger bounds for a refused request's unread body.
const (
	lingerTotal = 10 * time.Second
	lingerIdle  = 2 * time.Second
	lingerBytes = 1 << 30
)

// Refusal prepares an answer written before the request body has been
// read (a 4xx for an upload refused by its headers or its first bytes):
// call it before writing the answer, and call the function it returns
// after. That function flushes the answer and then reads and discards
// what the client still sends, for at most 10 seconds, 1 GiB, or 2
// seconds without data, so that the client, still writing its body, gets
// to read the answer. Closing at once with the body unread makes the
// kernel answer the client's next segments with a reset, which destroys
// the answer in the client's receive buffer before it is read (a refused
// 50 MB upload saw a reset in about half of its tries). The answer should
// say "Connection: close" (the connection is not reused) and carry a
// Content-Length, so that it is whole once flushed, before the draining.
func Refusal(w http.ResponseWriter, body io.Reader) (after func()) {
	rc := http.NewResponseController(w)
	if rc.EnableFullDuplex() != nil || body == nil || body == http.NoBody {
		return func() {} // HTTP/2 streams are reset per stream, harmlessly
	}
	return func() {
		if rc.Flush() != nil {
			return
		}
		end := time.Now().Add(lingerTotal)
		buf := make([]byte, 64<<10)
		var n int64
		for n < lingerBytes {
			now := time.Now()
			if !now.Before(end) {
				return
			}
			d := now.Add(lingerIdle)
			if d.After(end) {
				d = end
			}
			if err := rc.SetReadDeadline(d); err != nil {
				return
			}
			m, err := body.Read(buf)
			n += int64(m)
			if err != nil {
				return
			}
		}
	}
}
