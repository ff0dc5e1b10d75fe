package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/resolver"
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

// Run is `retraced serve`: it opens the data directory, starts the HTTP
// server and a first sync of every source, and stops them all when ctx ends.
func Run(ctx context.Context, cfg Config) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := openStore(cfg)
	if err != nil {
		return err
	}
	defer s.Close()
	if err := addEmbeddedDefault(ctx, s, log); err != nil {
		return err
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.Use(gin.Recovery())
	resolver.NewAPI(s.idx).Register(r)
	r.GET("/api/v1/mirrors", func(c *gin.Context) {
		srcs, err := s.mirror.Sources()
		if err != nil {
			c.AbortWithStatusJSON(http.StatusInternalServerError, gin.H{"error": err.Error()})
			return
		}
		views := make([]mirror.SourceView, 0, len(srcs))
		for _, src := range srcs {
			views = append(views, src.View())
		}
		c.JSON(http.StatusOK, views)
	})
	r.GET("/healthz", func(c *gin.Context) { c.String(http.StatusOK, "ok\n") })
	srv := &http.Server{Addr: cfg.Listen, Handler: r, ReadHeaderTimeout: 10 * time.Second}

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		syncAll(ctx, s.mirror, log)
	}()
	errc := make(chan error, 1)
	go func() {
		log.Info("listening", "addr", cfg.Listen, "data", cfg.Data)
		errc <- srv.ListenAndServe()
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

func syncAll(ctx context.Context, m *mirror.Mirror, log *slog.Logger) {
	srcs, err := m.Sources()
	if err != nil {
		log.Error("list sources", "err", err)
		return
	}
	for _, src := range srcs {
		res, err := m.Sync(ctx, src.Name, nil)
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
	// Recompress what the syncs stored, off their path.
	res, err := m.Compact(ctx)
	switch {
	case err != nil && ctx.Err() == nil:
		log.Error("compact", "err", err)
	case err == nil && res.Blobs > 0:
		log.Info("compact", "files", res.Blobs, "before", res.Before, "after", res.After)
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
