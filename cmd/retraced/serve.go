package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
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
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/web"
)

func serveCmd(g *globals) *cobra.Command {
	var listen string
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
			return Run(cmd.Context(), cfg)
		},
	}
	c.Flags().StringVar(&listen, "listen", "127.0.0.1:8080", "HTTP listen address")
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
	rs, rw, err := startTasks(s, cfg, log)
	if err != nil {
		return err
	}
	defer rw.Close()
	owners := []gc.Owner{rs, rw} // expired tasks, idle sysroots
	sched := web.NewScheduler(web.SystemClock, log)
	h := newHandler(s, cfg, rs, sched, owners)
	if err := scheduleUpkeep(sched, s, cfg, h.ops, rs, owners, log); err != nil {
		return err
	}
	ln, err := listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	info := serverInfo{URL: "http://" + ln.Addr().String(), PID: os.Getpid()}
	if err := writeJSONFile(filepath.Join(s.dir, serverFile), info); err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(filepath.Join(s.dir, serverFile))
	srv := &http.Server{Handler: h.engine, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: cfg.IdleTimeout.Duration}
	conns := cfg.MaxConnections
	if conns == 0 {
		conns = httpbound.MaxConns(httpbound.NoFile())
	}
	ln = httpbound.LimitListener(ln, conns)

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

// handler is the whole HTTP surface of serve.
type handler struct {
	engine *gin.Engine
	ops    *web.Ops
}

// newHandler builds serve's routes; owners are what POST /api/v1/gc
// collects beside the store.
func newHandler(s *store, cfg Config, rs *retrace.Server, sched *web.Scheduler, owners []gc.Owner) *handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	metrics := web.NewMetrics(s.idx)
	metrics.SourceBytes(s.mirror.Sources)
	r.Use(metrics.Middleware())
	// Password and token guesses: 20 failures a minute, then 429 for the
	// rest of the minute.
	r.Use(throttle.New(20, time.Minute, nil).Middleware())
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
	resolver.NewDebuginfod(s.idx, s.pool).Register(r)
	ops := web.NewOps(s.mirror, sched, web.Config{AdminToken: cfg.AdminToken, Space: s.space})
	ops.Register(r)
	registerGC(r, s, ops, ops.Admin(), owners...)
	rs.Register(r)
	web.NewStatus(ops, s.idx, web.StatusSources{
		GC:       func() *web.GCSummary { return lastGC(s.dir) },
		Tasks:    taskSummary(rs),
		DiskFree: ops.DiskFree,
	}).Register(r)
	r.GET("/metrics", metrics.Handler())
	return &handler{engine: r, ops: ops}
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
