package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/robfig/cron/v3"
	"github.com/spf13/cobra"

	"github.com/retraced/retraced/fixtures"
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

// Run is `retraced serve`: it opens the data directory, starts the HTTP
// server and a first sync of every source, and stops them all when ctx ends.
func Run(ctx context.Context, cfg Config) error {
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
	rs, worker, err := startTasks(s, cfg, log)
	if err != nil {
		return err
	}
	defer worker.Close()
	h := newHandler(s, cfg, rs)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	info := serverInfo{URL: "http://" + ln.Addr().String(), PID: os.Getpid()}
	if err := writeJSONFile(filepath.Join(s.dir, serverFile), info); err != nil {
		ln.Close()
		return err
	}
	defer os.Remove(filepath.Join(s.dir, serverFile))
	srv := &http.Server{Handler: h.engine, ReadHeaderTimeout: 10 * time.Second}

	sched := cron.New()
	if _, err := sched.AddFunc(cfg.GCSchedule, func() {
		rep, err := collect(ctx, s, h.ops.OldestSyncStart(), false, rs)
		if err != nil {
			log.Error("gc", "err", err)
			return
		}
		log.Info("gc", "summary", rep.Summary, "freed", rep.Bytes)
	}); err != nil {
		ln.Close()
		return fmt.Errorf("gc_schedule %q: %w", cfg.GCSchedule, err)
	}
	sched.Start()
	defer sched.Stop()

	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		rs.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		h.ops.Run(ctx)
	}()
	go func() {
		defer wg.Done()
		syncAll(ctx, s.mirror, h.ops, log)
	}()
	errc := make(chan error, 1)
	go func() {
		log.Info("listening", "url", info.URL, "data", cfg.Data)
		errc <- srv.Serve(ln)
	}()
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = srv.Shutdown(sctx)
		cancel()
	}
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// handler is the whole HTTP surface of serve.
type handler struct {
	engine *gin.Engine
	ops    *web.Ops
}

func newHandler(s *store, cfg Config, rs *retrace.Server) *handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	metrics := web.NewMetrics(s.idx)
	r.Use(metrics.Middleware())
	api := resolver.NewAPI(s.idx, resolver.Config{SpoolDir: filepath.Join(s.pool.Dir(), "tmp")})
	api.OnLookup = func(hit bool) {
		result := "miss"
		if hit {
			result = "hit"
		}
		metrics.Lookups.WithLabelValues("api", result).Inc()
	}
	api.Register(r)
	resolver.NewDebuginfod(s.idx, s.pool).Register(r)
	ops := web.NewOps(s.mirror, web.Config{AdminToken: cfg.AdminToken, Space: s.space})
	ops.Register(r)
	registerGC(r, s, ops, ops.Admin(), rs)
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
	if err := unpackFS(fixtures.Repo(), dir); err != nil {
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
