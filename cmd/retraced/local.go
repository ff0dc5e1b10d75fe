package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/worker"
	"github.com/retraced/retraced/web"
)

// local is the backend of a data directory this process holds.
type local struct {
	s   *store
	cfg Config
}

func (l *local) Close() error { return l.s.Close() }

func (l *local) Lookup(_ context.Context, id index.BuildID) ([]resolver.MatchView, error) {
	return resolver.Resolve(l.s.idx, id)
}

func (l *local) CoreToPackages(_ context.Context, path string) (*resolver.Report, error) {
	return resolver.CoreFileToPackages(l.s.idx, path)
}

func (l *local) Mirrors(context.Context) ([]web.SourceView, error) {
	srcs, err := l.s.mirror.Sources()
	if err != nil {
		return nil, err
	}
	views := make([]web.SourceView, 0, len(srcs))
	for _, src := range srcs {
		views = append(views, web.ViewSource(src))
	}
	return views, nil
}

func (l *local) Add(ctx context.Context, src mirror.Source) (web.SourceView, error) {
	added, err := l.s.mirror.Add(ctx, src)
	if err != nil {
		return web.SourceView{}, err
	}
	return web.ViewSource(added), nil
}

func (l *local) Remove(_ context.Context, name string) error { return l.s.mirror.Remove(name) }

func (l *local) Sync(ctx context.Context, name string, progress func(mirror.Progress)) (*syncReport, error) {
	res, err := l.s.mirror.Sync(ctx, name, progress)
	if err != nil {
		return nil, err
	}
	rep := &syncReport{OK: res.OK(), Summary: res.Summary(), Failed: []string{}, Mirror: res.Mirror, MirrorsFailed: res.MirrorsFailed}
	if rep.MirrorsFailed == nil {
		rep.MirrorsFailed = []mirror.MirrorFailure{}
	}
	for _, f := range res.Failed {
		rep.Failed = append(rep.Failed, f.Error())
	}
	return rep, nil
}

func (l *local) Compact(ctx context.Context) (*mirror.CompactResult, error) {
	return l.s.mirror.Compact(ctx)
}

// GC collects now. This process holds the data directory: no sync runs,
// so nothing new is protected, and no task server has the tasks or the
// sysroots open.
func (l *local) GC(ctx context.Context, dryRun bool) (*gcReport, error) {
	tasks := &retrace.Tasks{Dir: filepath.Join(l.s.dir, "tasks"),
		Config: retrace.Config{DeleteAfter: l.cfg.TaskTTL.Duration, DeleteFailedAfter: l.cfg.FailedTaskTTL.Duration}}
	sysroots := &worker.Sysroots{Dir: filepath.Join(l.s.dir, "sysroots"), Budget: l.cfg.Retrace.SysrootBudgetMB << 20}
	cs, err := openCrashes(l.s.dir, l.cfg)
	if err != nil {
		return nil, err
	}
	defer cs.Close()
	return collect(ctx, l.s, time.Now(), dryRun, tasks, sysroots, cs)
}

// Retrace runs the retrace worker here, on the mirror in the directory.
func (l *local) Retrace(ctx context.Context, path, executable string, log io.Writer) (retrace.Result, error) {
	w, err := openWorker(l.s, l.cfg)
	if err != nil {
		return retrace.Result{}, err
	}
	defer w.Close()
	res, err := w.RetraceCore(ctx, path, executable, log)
	if err == nil {
		if rerr := recordLocal(ctx, l.s.dir, l.cfg, res); rerr != nil {
			return res, fmt.Errorf("record the crash: %w", rerr)
		}
	}
	return res, err
}
