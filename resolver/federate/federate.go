// Package federate asks upstream debuginfod servers for the executables
// and debug files a mirror lacks, as elfutils' debuginfod does with its
// DEBUGINFOD_URLS: the upstreams in order, the first answer wins, and
// what came back is kept in a disk cache bounded in bytes and in age.
//
// Loops: every request to an upstream carries X-Forwarded-For with the
// hops it has already made plus this one, and a request that arrives
// with MaxHops hops or more is not sent further (elfutils'
// --forwarded-ttl-limit does the same), so two servers that name each
// other as upstreams answer a miss after a bounded number of hops.
//
// Upstream answers are hostile: each is bounded in size (MaxFile) and
// time, checked to be an ELF file carrying the build-id asked for, and
// written to the cache atomically.
//
// Of retraced, federate may import only index/elfnote.
package federate

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/retraced/retraced/index/elfnote"
)

// ErrMiss reports that no upstream has the file.
var ErrMiss = errors.New("no upstream has it")

// ErrLoop reports a request that came through MaxHops servers already.
var ErrLoop = errors.New("forwarded too many times (a federation loop?)")

// Config tunes a Client.
type Config struct {
	// URLs are the upstream servers, asked in order.
	URLs []string
	// Dir is the cache directory (created).
	Dir string
	// MaxBytes bounds the cache (0: 1 GiB); the oldest files go first.
	MaxBytes int64
	// TTL is how long a cached file is served (0: 24 h); a miss is
	// remembered for a minute.
	TTL time.Duration
	// MaxFile bounds one upstream file (0: 4 GiB).
	MaxFile int64
	// MaxHops is the forwarding limit (0: 8).
	MaxHops int
	// Timeout bounds one upstream request, body included (0: 5 min), and
	// IdleTimeout a body that stops arriving (0: 30 s).
	Timeout, IdleTimeout time.Duration
	Client               *http.Client
}

// Client is the federation. It is safe for concurrent use.
type Client struct {
	cfg Config

	mu     sync.Mutex
	misses map[string]time.Time
	flight map[string]*call
	origin map[string]string // cache key: the upstream it came from

	onResult atomic.Pointer[func(result string)]
}

type call struct {
	done chan struct{}
	path string
	err  error
}

// New returns a client over cfg.URLs, caching in cfg.Dir.
func New(cfg Config) (*Client, error) {
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 1 << 30
	}
	if cfg.TTL == 0 {
		cfg.TTL = 24 * time.Hour
	}
	if cfg.MaxFile == 0 {
		cfg.MaxFile = 4 << 30
	}
	if cfg.MaxHops == 0 {
		cfg.MaxHops = 8
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = 30 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout}
	}
	for i, u := range cfg.URLs {
		cfg.URLs[i] = strings.TrimRight(u, "/")
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return nil, fmt.Errorf("upstream %q: want an http:// or https:// URL", u)
		}
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("federation cache: %w", err)
	}
	return &Client{cfg: cfg, misses: map[string]time.Time{}, flight: map[string]*call{}, origin: map[string]string{}}, nil
}

// URLs returns the upstreams.
func (c *Client) URLs() []string { return c.cfg.URLs }

// Hops counts the servers a request went through, from its
// X-Forwarded-For header (comma-separated addresses).
func Hops(forwardedFor string) int {
	n := 0
	for _, f := range strings.Split(forwardedFor, ",") {
		if strings.TrimSpace(f) != "" {
			n++
		}
	}
	return n
}

// Fetch returns the path of a cached copy of the file of kind
// ("executable" or "debuginfo") carrying build-id id (lowercase hex),
// from the cache or the upstreams; forwardedFor is the incoming request's
// X-Forwarded-For and client its sender's address. fromCache says which.
// The file stays until the cache evicts it: open it before long.
func (c *Client) Fetch(ctx context.Context, id, kind, forwardedFor, client string) (path string, fromCache bool, err error) {
	path, fromCache, err = c.fetch(ctx, id, kind, forwardedFor, client)
	if fn := c.onResult.Load(); fn != nil {
		(*fn)(result(fromCache, err))
	}
	return path, fromCache, err
}

// OnResult has fn told how each Fetch went, whoever asked (the
// debuginfod handlers, the retrace worker): "cache", "fetched", "miss",
// "loop" or "error". serve counts them in /metrics.
func (c *Client) OnResult(fn func(result string)) { c.onResult.Store(&fn) }

// result names how a fetch went, for OnResult.
func result(fromCache bool, err error) string {
	switch {
	case err == nil && fromCache:
		return "cache"
	case err == nil:
		return "fetched"
	case errors.Is(err, ErrLoop):
		return "loop"
	case errors.Is(err, ErrMiss):
		return "miss"
	}
	return "error"
}

func (c *Client) fetch(ctx context.Context, id, kind, forwardedFor, client string) (path string, fromCache bool, err error) {
	if kind != "executable" && kind != "debuginfo" {
		return "", false, fmt.Errorf("federate: kind %q", kind)
	}
	if _, err := hex.DecodeString(id); err != nil || id == "" || len(id) > 128 {
		return "", false, fmt.Errorf("federate: build-id %q", id)
	}
	if Hops(forwardedFor) >= c.cfg.MaxHops {
		return "", false, ErrLoop
	}
	key := id + "." + kind
	path = filepath.Join(c.cfg.Dir, key)
	if fi, err := os.Stat(path); err == nil && time.Since(fi.ModTime()) < c.cfg.TTL {
		return path, true, nil
	}
	c.mu.Lock()
	if t, ok := c.misses[key]; ok && time.Since(t) < time.Minute {
		c.mu.Unlock()
		return "", false, ErrMiss
	}
	// One download per file at a time, among requests that came the same
	// way: a request that came round a loop must not wait for the one it
	// came from, which waits for it.
	fkey := key + "\x00" + forwardedFor
	if f := c.flight[fkey]; f != nil {
		c.mu.Unlock()
		select {
		case <-f.done:
			return f.path, false, f.err
		case <-ctx.Done():
			return "", false, ctx.Err()
		}
	}
	f := &call{done: make(chan struct{})}
	c.flight[fkey] = f
	c.mu.Unlock()

	hops := strings.TrimSpace(forwardedFor)
	if hops != "" {
		hops += ", "
	}
	hops += client
	f.path, f.err = c.download(ctx, id, kind, key, hops)
	c.mu.Lock()
	delete(c.flight, fkey)
	if errors.Is(f.err, ErrMiss) {
		if len(c.misses) > 1<<16 {
			clear(c.misses)
		}
		c.misses[key] = time.Now()
	}
	c.mu.Unlock()
	close(f.done)
	return f.path, false, f.err
}

// FetchOrigin is Fetch for a request that starts here (the retrace
// worker's): it returns the cached file's path and the upstream it came
// from ("cache" when it was cached before this process started).
func (c *Client) FetchOrigin(ctx context.Context, id, kind string) (path, upstream string, err error) {
	path, _, err = c.Fetch(ctx, id, kind, "", "127.0.0.1")
	if err != nil {
		return "", "", err
	}
	c.mu.Lock()
	upstream = c.origin[id+"."+kind]
	c.mu.Unlock()
	if upstream == "" {
		upstream = "cache"
	}
	return path, upstream, nil
}

// download asks each upstream in turn.
func (c *Client) download(ctx context.Context, id, kind, key, hops string) (string, error) {
	var errs []error
	for _, u := range c.cfg.URLs {
		path, err := c.downloadFrom(ctx, u, id, kind, key, hops)
		if err == nil {
			c.mu.Lock()
			if len(c.origin) > 1<<16 {
				clear(c.origin)
			}
			c.origin[key] = u
			c.mu.Unlock()
			c.evict()
			return path, nil
		}
		if !errors.Is(err, ErrMiss) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return "", fmt.Errorf("%w (%w)", ErrMiss, errors.Join(errs...))
	}
	return "", ErrMiss
}

func (c *Client) downloadFrom(ctx context.Context, base, id, kind, key, hops string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/buildid/"+id+"/"+kind, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("X-Forwarded-For", hops)
	req.Header.Set("User-Agent", "retraced federation")
	resp, err := c.cfg.Client.Do(req)
	if err != nil {
		return "", fmt.Errorf("%s: %w", base, err)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		return "", ErrMiss
	case resp.StatusCode != http.StatusOK:
		return "", fmt.Errorf("%s: %s", base, resp.Status)
	case resp.ContentLength > c.cfg.MaxFile:
		return "", fmt.Errorf("%s: %d bytes, more than the %d a file may have", base, resp.ContentLength, c.cfg.MaxFile)
	}
	tmp, err := os.CreateTemp(c.cfg.Dir, ".part-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	body := &idleReader{r: resp.Body, idle: c.cfg.IdleTimeout, cancel: cancel}
	n, err := io.Copy(tmp, io.LimitReader(body, c.cfg.MaxFile+1))
	if err != nil {
		return "", fmt.Errorf("%s: %w", base, err)
	}
	if n > c.cfg.MaxFile {
		return "", fmt.Errorf("%s: more than the %d bytes a file may have", base, c.cfg.MaxFile)
	}
	got, err := elfnote.BuildID(io.NewSectionReader(tmp, 0, n))
	if err != nil {
		return "", fmt.Errorf("%s: the answer for %s is not an ELF file with a build-id: %w", base, id, err)
	}
	if want, _ := hex.DecodeString(id); !bytes.Equal(got, want) {
		return "", fmt.Errorf("%s: asked for %s, got a file carrying %x", base, id, got)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	path := filepath.Join(c.cfg.Dir, key)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}

// idleReader cancels a download whose body stops arriving.
type idleReader struct {
	r      io.Reader
	idle   time.Duration
	cancel context.CancelFunc
}

func (r *idleReader) Read(p []byte) (int, error) {
	t := time.AfterFunc(r.idle, r.cancel)
	defer t.Stop()
	return r.r.Read(p)
}

// evict removes the oldest cached files until the cache is within
// MaxBytes, and the expired ones.
func (c *Client) evict() {
	type entry struct {
		path string
		size int64
		mod  time.Time
	}
	var es []entry
	var total int64
	filepath.WalkDir(c.cfg.Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasPrefix(d.Name(), ".part-") {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		es = append(es, entry{p, fi.Size(), fi.ModTime()})
		total += fi.Size()
		return nil
	})
	sort.Slice(es, func(i, j int) bool { return es[i].mod.Before(es[j].mod) })
	for _, e := range es {
		if total <= c.cfg.MaxBytes && time.Since(e.mod) < c.cfg.TTL {
			break
		}
		if os.Remove(e.path) == nil {
			total -= e.size
		}
	}
}
