package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/web"
)

// backend is what the CLI commands need of a data directory. Two
// implementations: local opens the directory; remote asks the `retraced
// serve` that holds it over its HTTP API, so that the commands keep
// working while serve runs (SPEC: Data directory). openBackend chooses
// once per command; the commands do not know which they have.
type backend interface {
	// Lookup returns the files that carry build-id id, newest package
	// first; an error matching index.ErrNotFound when none does.
	Lookup(ctx context.Context, id index.BuildID) ([]resolver.MatchView, error)
	// CoreToPackages reads the core file at path and names the packages
	// needed to retrace it.
	CoreToPackages(ctx context.Context, path string) (*resolver.Report, error)
	// Mirrors lists the sources.
	Mirrors(ctx context.Context) ([]web.SourceView, error)
	// Add registers a source, detecting its kind when src.Kind is "".
	Add(ctx context.Context, src mirror.Source) (web.SourceView, error)
	// Remove stops mirroring a source; its packages stay until gc.
	Remove(ctx context.Context, name string) error
	// Sync syncs one source now and waits for it. progress, if not nil,
	// is called as it goes (the local backend only). The error is for a
	// sync that could not run; how one that ran went is in the report.
	Sync(ctx context.Context, name string, progress func(mirror.Progress)) (*syncReport, error)
	// Compact recompresses newly stored files at the strongest level; nil
	// and no error when serve does that on its own.
	Compact(ctx context.Context) (*mirror.CompactResult, error)
	// GC runs one collection, or with dryRun plans it. A collection that
	// ran with errors returns its report and the error.
	GC(ctx context.Context, dryRun bool) (*gcReport, error)
	// Retrace retraces the core file at path (executable, if not "",
	// names the crashing program) and writes the retrace's log to log (the
	// remote backend writes it when the task is done). A failed retrace
	// may still return the backtrace it got.
	Retrace(ctx context.Context, path, executable string, log io.Writer) (retrace.Result, error)
	// Close lets go of the data directory.
	Close() error
}

var (
	_ backend = (*local)(nil)
	_ backend = (*remote)(nil)
)

// syncReport is how a sync went, as `mirror sync` prints it and as the
// API answers POST /api/v1/mirrors/NAME/sync?wait=true.
type syncReport struct {
	OK      bool     `json:"ok"`
	Summary string   `json:"summary"`
	Failed  []string `json:"failed"` // one line per package that failed
	// Mirror and MirrorsFailed: for a metalink or mirror list source, the
	// mirror whose metadata the sync used, and those it gave up on.
	Mirror        string                 `json:"mirror"`
	MirrorsFailed []mirror.MirrorFailure `json:"mirrors_failed"`
}

// openBackend opens the data directory, or, when a running server holds
// it, returns a client for that server.
func (g *globals) openBackend(cmd *cobra.Command) (backend, error) {
	s, cfg, err := g.open(cmd)
	if err == nil {
		return &local{s: s, cfg: cfg}, nil
	}
	if !errors.Is(err, ErrInUse) {
		return nil, err
	}
	b, rerr := os.ReadFile(filepath.Join(cfg.Data, serverFile))
	if rerr != nil {
		return nil, err // held by a process that is not a server
	}
	var info serverInfo
	if json.Unmarshal(b, &info) != nil || info.URL == "" {
		return nil, err
	}
	hc := &http.Client{Timeout: 3 * time.Second}
	resp, herr := hc.Get(info.URL + "/healthz")
	if herr != nil {
		return nil, fmt.Errorf("%w (its server at %s does not answer: %v)", err, info.URL, herr)
	}
	resp.Body.Close()
	return &remote{base: info.URL, token: cfg.AdminToken, hc: &http.Client{}, warn: cmd.ErrOrStderr()}, nil
}
