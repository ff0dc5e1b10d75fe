package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// location is a parsed source URL: http(s), file:// or a local path.
type location struct {
	u     *url.URL // http or https
	local string   // a directory on this machine
}

func parseLocation(raw string) (*location, error) {
	if strings.HasPrefix(raw, "http://") || strings.HasPrefix(raw, "https://") {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("url %q: %w", raw, err)
		}
		if u.Host == "" {
			return nil, fmt.Errorf("url %q: no host", raw)
		}
		if !strings.HasSuffix(u.Path, "/") {
			u.Path += "/"
		}
		return &location{u: u}, nil
	}
	if rest, ok := strings.CutPrefix(raw, "file://"); ok {
		u, err := url.Parse(raw)
		if err != nil || (u.Host != "" && u.Host != "localhost") {
			return nil, fmt.Errorf("url %q: want file:///absolute/path", raw)
		}
		rest = u.Path
		if !filepath.IsAbs(rest) {
			return nil, fmt.Errorf("url %q: want file:///absolute/path", raw)
		}
		return &location{local: filepath.Clean(rest)}, nil
	}
	if strings.Contains(raw, "://") {
		return nil, fmt.Errorf("url %q: unsupported scheme (want http, https, file or a path)", raw)
	}
	abs, err := filepath.Abs(raw)
	if err != nil {
		return nil, fmt.Errorf("path %q: %w", raw, err)
	}
	return &location{local: abs}, nil
}

// resolve joins a metadata href (relative, or absolute http for xml:base)
// onto the location, refusing hrefs that climb out of a local tree.
func (l *location) resolve(base, href string) (string, error) {
	if base != "" {
		if strings.HasPrefix(base, "http://") || strings.HasPrefix(base, "https://") {
			b, err := url.Parse(strings.TrimSuffix(base, "/") + "/")
			if err != nil {
				return "", fmt.Errorf("xml:base %q: %w", base, err)
			}
			r, err := b.Parse(href)
			if err != nil {
				return "", fmt.Errorf("href %q: %w", href, err)
			}
			return r.String(), nil
		}
	}
	if l.u != nil {
		r, err := l.u.Parse(href)
		if err != nil {
			return "", fmt.Errorf("href %q: %w", href, err)
		}
		return r.String(), nil
	}
	if strings.Contains(href, "://") || filepath.IsAbs(href) {
		return "", fmt.Errorf("href %q: not relative to a local source", href)
	}
	p := filepath.Join(l.local, filepath.FromSlash(href))
	if !strings.HasPrefix(p, l.local+string(filepath.Separator)) {
		return "", fmt.Errorf("href %q: climbs out of %s", href, l.local)
	}
	return p, nil
}

// errNotExist marks a 404 or a missing local file.
var errNotExist = errors.New("does not exist")

// ErrStalled reports a download whose body made no progress for the
// mirror's IdleTimeout, or (ErrTooSlow) arrived slower than its MinRate.
var ErrStalled = errors.New("download stalled")

// ErrTooSlow reports a download whose body arrived slower than the
// mirror's MinRate over a RateWindow. It wraps ErrStalled.
var ErrTooSlow = fmt.Errorf("%w: too slow", ErrStalled)

// open starts reading one file of a source. size is -1 when unknown. An
// http(s) body that makes no progress for the configured IdleTimeout, or
// brings fewer than MinRate bytes a second over a RateWindow, is cut: its
// Read returns an error wrapping ErrStalled.
func (m *Mirror) open(ctx context.Context, target string) (io.ReadCloser, int64, error) {
	if strings.HasPrefix(target, "http://") || strings.HasPrefix(target, "https://") {
		ctx, cancel := context.WithCancelCause(ctx)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		if err != nil {
			cancel(nil)
			return nil, 0, err
		}
		req.Header.Set("User-Agent", "retraced")
		client := m.cfg.Client
		if isPublicOnly(ctx) {
			client = m.public
		}
		resp, err := client.Do(req)
		if err != nil {
			cancel(nil)
			return nil, 0, fmt.Errorf("GET %s: %w", target, err)
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			cancel(nil)
			err := fmt.Errorf("GET %s: %s", target, resp.Status)
			if resp.StatusCode == http.StatusNotFound {
				err = fmt.Errorf("%w: %w", errNotExist, err)
			}
			return nil, 0, err
		}
		return newBoundBody(ctx, resp.Body, target, m.cfg, cancel), resp.ContentLength, nil
	}
	if isPublicOnly(ctx) {
		return nil, 0, fmt.Errorf("%w: %s is a local file", ErrPrivateAddress, target)
	}
	f, err := os.Open(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %w", errNotExist, err)
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: not a regular file", target)
	}
	return f, fi.Size(), nil
}

// exists reports whether href exists under the source URL raw.
func (m *Mirror) exists(ctx context.Context, raw, href string) (bool, error) {
	loc, err := parseLocation(raw)
	if err != nil {
		return false, err
	}
	t, err := loc.resolve("", href)
	if err != nil {
		return false, err
	}
	rc, _, err := m.open(ctx, t)
	if errors.Is(err, errNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	rc.Close()
	return true, nil
}

// boundBody is a response body whose request is cancelled when no Read
// has returned data for idle, or when a window passes with fewer than
// a minimum rate's worth read. Both are checked by timers, not by Read, so that
// a body that trickles (each Read returning a byte) is cut as surely as
// one that stops.
type boundBody struct {
	ctx    context.Context
	rc     io.ReadCloser
	target string
	idle   time.Duration
	timer  *time.Timer // idle
	cancel context.CancelCauseFunc
	n      atomic.Int64 // bytes read in this window
	eof    atomic.Bool  // the whole body is read: nothing more to bound
}

func newBoundBody(ctx context.Context, rc io.ReadCloser, target string, cfg Config, cancel context.CancelCauseFunc) *boundBody {
	b := &boundBody{ctx: ctx, rc: rc, target: target, idle: cfg.IdleTimeout, cancel: cancel}
	b.timer = time.AfterFunc(b.idle, func() {
		cancel(fmt.Errorf("%w: GET %s: no data for %s", ErrStalled, target, b.idle))
	})
	go b.watchRate(cfg.RateWindow, cfg.MinRate)
	return b
}

// watchRate cancels the request when a window passes with fewer than
// perSecond bytes a second read, until the request ends.
func (b *boundBody) watchRate(window time.Duration, perSecond int64) {
	perWindow := perSecond * int64(window) / int64(time.Second)
	t := time.NewTicker(window)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
			if got := b.n.Swap(0); got < perWindow && !b.eof.Load() {
				b.cancel(fmt.Errorf("%w: GET %s: %d bytes in %s, slower than %d bytes/s", ErrTooSlow, b.target, got, window, perSecond))
				return
			}
		}
	}
}

func (b *boundBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
		b.timer.Reset(b.idle)
	}
	if err == io.EOF {
		b.eof.Store(true)
		b.timer.Stop()
	}
	if err != nil && err != io.EOF {
		if cause := context.Cause(b.ctx); errors.Is(cause, ErrStalled) {
			return n, cause
		}
		err = fmt.Errorf("read %s: %w", b.target, err)
	}
	return n, err
}

func (b *boundBody) Close() error {
	b.timer.Stop()
	err := b.rc.Close()
	b.cancel(nil)
	return err
}

// errTooLarge marks a file larger than its bound.
var errTooLarge = errors.New("too large")

// readAll reads a small file of a source whole, refusing more than max
// with an error wrapping errTooLarge.
func (m *Mirror) readAll(ctx context.Context, target string, max int64) ([]byte, error) {
	rc, size, err := m.open(ctx, target)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if size > max {
		return nil, fmt.Errorf("read %s: %w: the server says %d bytes, more than the %d allowed", target, errTooLarge, size, max)
	}
	b, err := io.ReadAll(io.LimitReader(rc, max+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", target, err)
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("read %s: %w: more than %d bytes", target, errTooLarge, max)
	}
	return b, nil
}
