package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/taskdb"
	"github.com/retraced/retraced/retrace/worker"
	"github.com/retraced/retraced/web"
)

// packageChecker answers /checkpackage from the index.
type packageChecker struct{ idx *index.Store }

var _ retrace.PackageChecker = packageChecker{}

// HasNVRArch takes name-[epoch:]version-release as ABRT writes it.
func (p packageChecker) HasNVRArch(nvr, arch string) (bool, error) {
	n, err := index.ParseNEVRA(nvr + "." + arch)
	if err != nil {
		return false, err
	}
	if strings.Contains(nvr, ":") {
		return p.idx.HasPackage(n)
	}
	return p.idx.HasNVRA(n.Name, n.Version, n.Release, n.Arch)
}

// startTasks builds the retrace service: the worker (sysroots under
// DATA/sysroots) and the task server, whose Retracer it is. The tasks
// live in DATA/tasks, or, when [storage] puts the index in PostgreSQL and
// the blobs in an object store, in both, shared by every node
// (retrace/taskdb; DATA/spool holds this node's uploads and the tasks it
// runs). Both are gc owners: the server of expired tasks, the worker of
// idle sysroots. The server tells rec (the crash store) of each task that
// finishes with a backtrace. The returned close stops what they hold.
func startTasks(s *store, cfg Config, log *slog.Logger, rec retrace.Recorder) (*retrace.Server, *worker.Worker, func(), error) {
	w, err := openWorker(s, cfg)
	if err != nil {
		return nil, nil, nil, err
	}
	if why := w.NetworkWarning(); why != "" {
		log.Warn("retrace: gdb runs with the host's network; set [retrace] network = \"host\" to say that is meant, or allow unprivileged user namespaces", "why", why)
	}
	rc := serverConfig(cfg)
	rc.Packages, rc.Logger, rc.Space, rc.Recorder = packageChecker{s.idx}, log, s.space, rec
	if !sharedTasks(cfg.Storage) {
		rs, err := retrace.New(filepath.Join(s.dir, "tasks"), w, rc)
		if err != nil {
			w.Close()
			return nil, nil, nil, err
		}
		return rs, w, func() { w.Close() }, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, err := taskdb.Open(ctx, cfg.Storage.Index, s.objects, taskdb.Options{
		Node: s.node, Dir: filepath.Join(s.dir, "spool", "tasks"), Log: log})
	if err != nil {
		w.Close()
		return nil, nil, nil, err
	}
	rs, err := retrace.NewShared(filepath.Join(s.dir, "spool", "uploads"), db, w, rc)
	if err != nil {
		db.Close()
		w.Close()
		return nil, nil, nil, err
	}
	return rs, w, func() { db.Close(); w.Close() }, nil
}

// sharedTasks reports whether the retrace tasks live in the shared
// storage: the index in PostgreSQL and the blobs in an object store.
// With either on local disk they stay in the data directory.
func sharedTasks(sc StorageConfig) bool {
	return sc.Blobs != "" && (strings.HasPrefix(sc.Index, "postgres://") || strings.HasPrefix(sc.Index, "postgresql://"))
}

// serverConfig is the task server's part of cfg: [retrace] and the task
// retention.
func serverConfig(cfg Config) retrace.Config {
	r := cfg.Retrace
	rc := retrace.Config{
		MaxRunningTasks:   r.MaxRunningTasks,
		MaxQueuedTasks:    r.MaxQueuedTasks,
		MaxPackedSize:     r.MaxPackedSize,
		MaxUnpackedSize:   r.MaxUnpackedSize,
		SupportedReleases: r.SupportedReleases,
	}
	rc.TaskTimeout, rc.UploadTimeout = r.TaskTimeout.Duration, r.UploadTimeout.Duration
	rc.MinUploadRate, rc.MaxUploads = r.MinUploadRate, r.MaxUploads
	rc.UploadRateWindow = r.UploadRateWindow.Duration
	rc.DeleteAfter, rc.DeleteFailedAfter = cfg.TaskTTL.Duration, cfg.FailedTaskTTL.Duration
	return rc
}

// workerConfig is the worker's part of cfg's [retrace], sysroots under
// DATA/sysroots.
func workerConfig(dir string, r RetraceConfig) worker.Config {
	wc := worker.Config{
		SysrootDir:    filepath.Join(dir, "sysroots"),
		SysrootBudget: r.SysrootBudgetMB << 20,
		MemoryLimit:   r.GDBMemoryMB << 20,
		Network:       r.Network,
	}
	if r.GDBMemoryMB == 0 {
		wc.MemoryLimit = -1 // none
	}
	wc.Timeout = r.GDBTimeout.Duration
	return wc
}

// openWorker makes the retrace worker over the store, as cfg's [retrace]
// says.
func openWorker(s *store, cfg Config) (*worker.Worker, error) {
	wc := workerConfig(s.dir, cfg.Retrace)
	if cfg.Retrace.Federate {
		if up := upstreams(s, cfg); up != nil {
			wc.Federation = up
		}
	}
	w, err := worker.New(s.idx, s.pool, wc)
	if err != nil {
		return nil, fmt.Errorf("retrace worker: %w", err)
	}
	return w, nil
}

// recentTasks is how many finished tasks the status page lists.
const recentTasks = 10

// taskSummary is the status page's view of the task queue: the running,
// pending and last finished tasks, their ids, states and times.
func taskSummary(rs *retrace.Server) func() *web.TaskSummary {
	return func() *web.TaskSummary {
		st := rs.Stats()
		sum := &web.TaskSummary{Running: st.Running, Pending: st.Pending, MaxRunning: st.MaxRunning}
		for _, ti := range rs.Recent(recentTasks) {
			step := ti.Step
			if ti.Node != "" { // shared tasks: which node runs it
				step += " (on " + ti.Node + ")"
			}
			sum.Recent = append(sum.Recent, web.TaskLine{ID: ti.ID, State: taskState(ti.Status),
				Created: pageTime(ti.Created), Started: pageTime(ti.Started), Finished: pageTime(ti.Finished), Step: step})
		}
		return sum
	}
}

func taskState(s retrace.Status) string {
	switch s {
	case retrace.StatusRunning:
		return "running"
	case retrace.StatusSuccess:
		return "finished"
	case retrace.StatusFailure:
		return "failed"
	}
	return "pending"
}

// pageTime formats t as the status page shows times; "" when zero.
func pageTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
