package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"
	"golang.org/x/sync/errgroup"

	"github.com/retraced/retraced/fixtures/bundled"
	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/internal/httpbound"
	"github.com/retraced/retraced/internal/throttle"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/resolver/federate"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/web"
)

func serveCmd(g *globals) *cobra.Command {
	var listen string
	var openAdmin bool
	c := &cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP server and sync sources (the bundled fixture repository when none is configured)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("listen") {
				cfg.Listen = listen
			}
			cfg.InsecureOpenAdmin = openAdmin
			return Run(cmd.Context(), cfg)
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "HTTP listen address")
	c.Flags().BoolVar(&openAdmin, "insecure-open-admin", false, "listen on a non-loopback address with no admin_token: anyone who reaches the port may add, remove and sync sources")
	return c
}

// serverFile, in the data directory, tells other retraced commands where
// the server that holds the directory listens, so they can ask it instead
// of failing on the lock.
const serverFile = "server.json"

type serverInfo struct {
	URL string `json:"url"`
	PID int    `json:"pid"`
}

// Run is `retraced serve`: it opens the data directory and runs, under
// one errgroup, the HTTP server, the scheduler (each source's syncs, gc,
// the expiry of retrace tasks), the sync queue (which compacts after each
// sync), the retrace workers and a first sync of every source. When one
// of them fails (the listener breaks), the others stop and Run returns
// its error; when ctx ends (SIGINT, SIGTERM), they all stop and Run
// returns nil.
func Run(ctx context.Context, cfg Config) error {
	return runServe(ctx, cfg, net.Listen)
}

// runServe is Run with the listener made by listen, which tests replace.
func runServe(ctx context.Context, cfg Config, listen func(network, addr string) (net.Listener, error)) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if os.Getenv("GOMEMLIMIT") == "" && cfg.MemoryLimitMB > 0 {
		// A soft limit: the collector works harder near it instead of
		// letting the heap double past it.
		debug.SetMemoryLimit(cfg.MemoryLimitMB << 20)
	}
	s, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := addEmbeddedDefault(ctx, s, log); err != nil {
		return err
	}
	cs, err := openCrashes(s.dir, cfg)
	if err != nil {
		return err
	}
	defer cs.Close()
	rs, rw, closeTasks, err := startTasks(s, cfg, log, cs)
	if err != nil {
		return err
	}
	defer closeTasks()
	cs.SetTaskExists(rs.Exists)
	owners := []gc.Owner{rs, rw, cs} // expired tasks, idle sysroots, old crash signatures
	sched := web.NewScheduler(web.SystemClock, log)
	h := newHandler(s, cfg, rs, sched, owners, log)
	cs.Register(h.engine)
	handlerBuilt(h)
	if err := scheduleUpkeep(sched, s, cfg, h.ops, rs, owners, log); err != nil {
		return err
	}
	ln, err := listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	if err := checkOpenAdmin(ln.Addr(), cfg); err != nil {
		ln.Close()
		return err
	}
	conns := cfg.MaxConnections
	if conns == 0 {
		conns = httpbound.MaxConns(httpbound.NoFile())
	}
	ln = httpbound.LimitListener(ln, conns)
	scheme := "http://"
	reload := func() { log.Info("SIGHUP: nothing to reload (no tls_cert)") }
	if cfg.TLSCert != "" {
		certs, err := newCertReloader(cfg.TLSCert, cfg.TLSKey, log)
		if err != nil {
			ln.Close()
			return err
		}
		reload = certs.reload
		// Outermost, so that net/http sees *tls.Conn: the handshake is
		// bounded by ReadHeaderTimeout and requests carry their TLS state.
		ln = tls.NewListener(ln, &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12})
		scheme = "https://"
	}
	defer onSIGHUP(reload)()
	info := serverInfo{URL: scheme + ln.Addr().String(), PID: os.Getpid()}
	if err := writeJSONFile(filepath.Join(s.dir, serverFile), info); err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(filepath.Join(s.dir, serverFile))
	// ReadTimeout bounds a whole request read (bodies slower than
	// min_body_rate are cut long before; /create moves its own deadline
	// along with its upload).
	srv := &http.Server{Handler: h.engine, ReadHeaderTimeout: cfg.ReadHeaderTimeout.Duration, ReadTimeout: time.Hour,
		IdleTimeout: cfg.IdleTimeout.Duration, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}

	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		log.Info("listening", "url", info.URL, "data", cfg.Data)
		return serveHTTP(ctx, srv, ln, log)
	})
	g.Go(func() error { sched.Run(ctx); return nil })
	g.Go(func() error { h.ops.Run(ctx); return nil })
	g.Go(func() error { rs.Run(ctx); return nil })
	g.Go(func() error { syncAll(ctx, s.mirror, h.ops, log); return nil })
	return g.Wait()
}

// ErrOpenAdmin refuses a serve that would let anyone who reaches it
// change its sources.
var ErrOpenAdmin = errors.New("refusing to serve the world with no admin_token")

// checkOpenAdmin refuses a listener on a non-loopback address when no
// admin token guards the API calls that change something, unless told
// --insecure-open-admin; and a loopback one behind the reverse proxies of
// trusted_proxies, which relay whoever reaches them.
func checkOpenAdmin(addr net.Addr, cfg Config) error {
	if cfg.AdminToken != "" || cfg.InsecureOpenAdmin {
		return nil
	}
	if len(cfg.TrustedProxies) > 0 {
		return fmt.Errorf("%w (%s behind the reverse proxies of trusted_proxies, which relay whoever reaches them): set admin_token in the config, or pass --insecure-open-admin to let anyone who reaches the proxy add, remove and sync sources", ErrOpenAdmin, addr)
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w (%s): set admin_token in the config, or pass --insecure-open-admin to let anyone who reaches the port add, remove and sync sources", ErrOpenAdmin, addr)
}

// certReloader holds serve's TLS certificate and reads it again from its
// files on SIGHUP; a pair that does not load leaves the old one serving.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger
	cert              atomic.Pointer[tls.Certificate]
}

func newCertReloader(certFile, keyFile string, log *slog.Logger) (*certReloader, error) {
	c := &certReloader{certFile: certFile, keyFile: keyFile, log: log}
	if err := c.load(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *certReloader) load() error {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("tls_cert %s, tls_key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cert.Store(&cert)
	return nil
}

func (c *certReloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }

// reload reads the pair again; a pair that does not load leaves the old
// one serving.
func (c *certReloader) reload() {
	if err := c.load(); err != nil {
		c.log.Error("SIGHUP: TLS certificate not reloaded; the old one serves on", "err", err)
		return
	}
	c.log.Info("SIGHUP: TLS certificate reloaded", "cert", c.certFile)
}

// onSIGHUP calls reload on each SIGHUP until stop is called. serve always
// catches SIGHUP (the systemd unit's ExecReload sends it): without TLS
// there is nothing to reload, and it must not end the process.
func onSIGHUP(reload func()) (stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-sig:
				reload()
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(sig)
		close(done)
	}
}

// serveHTTP serves on ln until ctx ends, then shuts srv down, giving the
// requests under way 10 seconds. A listener that fails ends it with the
// error.
func serveHTTP(ctx context.Context, srv *http.Server, ln net.Listener, log *slog.Logger) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		srv.Close()
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc // http.ErrServerClosed
	return err
}

// Names of serve's own jobs in the scheduler (beside web.Ops' "sync
// NAME" ones).
const (
	gcJob     = "gc"
	expireJob = "expire tasks"
)

// scheduleUpkeep adds serve's own jobs to sched: a collection on
// gc_schedule (with the owners' items), and the expiry of retrace tasks
// past their retention every hour and at start.
func scheduleUpkeep(sched *web.Scheduler, s *store, cfg Config, ops *web.Ops, rs *retrace.Server, owners []gc.Owner, log *slog.Logger) error {
	if err := sched.Set(gcJob, cfg.GCSchedule, func(ctx context.Context) {
		rep, err := collect(ctx, s, ops.OldestSyncStart(), false, owners...)
		if err != nil {
			log.Error("gc", "err", err)
			return
		}
		log.Info("gc", "summary", rep.Summary, "freed", rep.Bytes)
	}); err != nil {
		return fmt.Errorf("gc_schedule %q: %w", cfg.GCSchedule, err)
	}
	if err := sched.Set(expireJob, "@every 1h", func(context.Context) {
		if n, err := rs.Expire(); err != nil {
			log.Error("retrace: expire tasks", "err", err)
		} else if n > 0 {
			log.Info("retrace: expired tasks", "removed", n)
		}
	}); err != nil {
		return err
	}
	sched.Trigger(expireJob)
	return nil
}

// handlerBuilt sees serve's handler once every route is registered
// (TestOpenAPIListsEveryRoute reads the routes).
var handlerBuilt = func(*handler) {}

// handler is the whole HTTP surface of serve.
type handler struct {
	engine *gin.Engine
	ops    *web.Ops
}

// newHandler builds serve's routes; owners are what POST /api/v1/gc
// collects beside the store.
func newHandler(s *store, cfg Config, rs *retrace.Server, sched *web.Scheduler, owners []gc.Owner, log *slog.Logger) *handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	// c.ClientIP() is the connection's address, or, from a trusted
	// proxy, the client X-Forwarded-For names (loadConfig checked the
	// list; nil trusts no proxy, where gin's default trusts all).
	r.ForwardedByClientIP = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	if err := r.SetTrustedProxies(cfg.TrustedProxies); err != nil {
		panic(err) // loadConfig checked each entry
	}
	r.Use(gin.Recovery())
	metrics := web.NewMetrics(s.idx)
	metrics.SourceBytes(s.mirror.Sources)
	r.Use(metrics.Middleware())
	// Password and token guesses: 20 failures a minute, then 429 for the
	// rest of the minute.
	guesses := throttle.New(20, time.Minute, nil)
	r.Use(refusedLog(log))
	r.Use(guesses.Middleware())
	// Request bodies arrive at a minimum rate or are cut; /create bounds
	// its own uploads ([retrace] min_upload_rate).
	r.Use(httpbound.BodyRate(cfg.MinBodyRate<<10, cfg.BodyRateWindow.Duration, time.Hour, "/create"))
	api := resolver.NewAPI(s.idx, resolver.Config{SpoolDir: filepath.Join(s.pool.Dir(), "tmp"), Space: s.space})
	api.OnLookup = func(hit bool) {
		result := "miss"
		if hit {
			result = "hit"
		}
		metrics.Lookups.WithLabelValues("api", result).Inc()
	}
	api.Register(r)
	dbg := resolver.NewDebuginfod(s.idx, s.pool)
	if up := upstreams(s, cfg); up != nil {
		dbg.Upstream = up // the worker's too: its fetches count alike
		up.OnResult(func(result string) { metrics.Federation.WithLabelValues(result).Inc() })
	}
	dbg.OnMetadata = func(key string, complete bool) {
		metrics.Metadata.WithLabelValues(key, strconv.FormatBool(complete)).Inc()
	}
	dbg.Register(r)
	ops := web.NewOps(s.mirror, sched, web.Config{AdminToken: cfg.AdminToken, Space: s.space, APISources: cfg.APISources})
	ops.Register(r)
	registerGC(r, s, ops, ops.Admin(), owners...)
	rs.Register(r)
	maxCore := cfg.Retrace.MaxPackedSize
	if maxCore <= 0 {
		maxCore = retrace.DefaultMaxPackedSize
	}
	// The upload form hands its cores to the task protocol through r
	// itself: the same middleware, limits and throttle as abrt's client.
	web.NewUploads(web.UploadConfig{Tasks: r, SpoolDir: filepath.Join(s.pool.Dir(), "tmp"),
		MaxCore: maxCore << 20, Space: s.space, MaxSpools: cfg.Retrace.MaxUploads}).Register(r)
	web.NewStatus(ops, s.idx, web.StatusSources{
		GC:       func() *web.GCSummary { return lastGC(s.dir) },
		Tasks:    taskSummary(rs),
		DiskFree: ops.DiskFree,
		Nodes:    nodeSummary(s),
		Blocked:  guesses.BlockedKeys,
	}).Register(r)
	r.GET("/metrics", metrics.Handler())
	web.RegisterOpenAPI(r)
	return &handler{engine: r, ops: ops}
}

// refusedLog logs each request refused for its credentials (401, 403)
// with the client's address: the connection's, or behind a trusted proxy
// the one X-Forwarded-For names. (The 429s that follow twenty of them are
// not logged: a guesser would fill the log.)
func refusedLog(log *slog.Logger) gin.HandlerFunc {
	return func(c *gin.Context) {
		c.Next()
		switch st := c.Writer.Status(); st {
		case http.StatusUnauthorized, http.StatusForbidden:
			log.Warn("refused", "client", c.ClientIP(), "method", c.Request.Method, "path", c.Request.URL.Path, "status", st)
		}
	}
}

func syncAll(ctx context.Context, m *mirror.Mirror, ops *web.Ops, log *slog.Logger) {
	srcs, err := m.Sources()
	if err != nil {
		log.Error("list sources", "err", err)
		return
	}
	for _, src := range srcs {
		done := make(chan web.SyncOutcome, 1)
		if !ops.Enqueue(src.Name, done) {
			continue // already syncing
		}
		var out web.SyncOutcome
		select {
		case out = <-done:
		case <-ctx.Done():
			return
		}
		res, err := out.Result()
		switch {
		case err != nil:
			log.Error("sync", "source", src.Name, "err", err)
		case !res.OK():
			log.Warn("sync", "result", res.Summary(), "failed", len(res.Failed))
		default:
			log.Info("sync", "result", res.Summary())
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// addEmbeddedDefault gives a data directory with no sources the fixture
// repository built into the binary, unpacked under DATA/fixtures-repo, so a
// first run shows real data.
func addEmbeddedDefault(ctx context.Context, s *store, log *slog.Logger) error {
	srcs, err := s.mirror.Sources()
	if err != nil || len(srcs) > 0 {
		return err
	}
	dir := filepath.Join(s.dir, "fixtures-repo")
	if err := unpackFS(bundled.Repo(), dir); err != nil {
		return fmt.Errorf("unpack the bundled fixture repository: %w", err)
	}
	src, err := s.mirror.Add(ctx, mirror.Source{Name: "fixtures", Kind: mirror.KindYum, URL: dir})
	if err != nil {
		return err
	}
	log.Info("no sources configured: mirroring the bundled fixture repository", "source", src.Name, "url", src.URL)
	return nil
}

func unpackFS(fsys fs.FS, dir string) error {
	return fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(dir, filepath.FromSlash(p))
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		in, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		tmp := dst + ".tmp"
		out, err := os.Create(tmp)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		if err := out.Close(); err != nil {
			return err
		}
		return os.Rename(tmp, dst)
	})
}

func writeJSONFile(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// upstreams is the federation of upstream_debuginfod (or DEBUGINFOD_URLS),
// nil when there is none; a malformed URL was refused by checkUpstreams.
func upstreams(s *store, cfg Config) *federate.Client {
	s.fedOnce.Do(func() {
		urls := upstreamURLs(cfg)
		if len(urls) == 0 {
			return
		}
		c, err := federate.New(federate.Config{URLs: urls, Dir: filepath.Join(s.dir, "federation"),
			MaxBytes: cfg.UpstreamCacheMB << 20, TTL: cfg.UpstreamCacheTTL.Duration})
		if err != nil {
			slog.Error("federation off", "err", err)
			return
		}
		s.fed = c
	})
	return s.fed
}

// upstreamURLs are upstream_debuginfod, or DEBUGINFOD_URLS when that is
// unset.
func upstreamURLs(cfg Config) []string {
	if len(cfg.UpstreamDebuginfod) > 0 {
		return slices.Clone(cfg.UpstreamDebuginfod)
	}
	return strings.Fields(os.Getenv("DEBUGINFOD_URLS"))
}
