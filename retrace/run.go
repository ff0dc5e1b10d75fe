package retrace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// Run runs MaxRunningTasks workers until ctx ends. A retrace that ctx's
// end interrupts leaves its task pending (on disk, or in the shared
// store): the next server, or another node, runs it again. Run must be
// called at most once. Old finished tasks go when the caller calls
// Expire (serve's scheduler does, hourly) or gc runs.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.cfg.MaxRunningTasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				j, lt, ok := s.next(ctx)
				if !ok {
					return
				}
				s.work(ctx, j, lt)
			}
		}()
	}
	wg.Wait()
}

// A job is a task a worker has: in its directory (dirJob) or claimed
// from a shared store (sharedJob).
type job interface {
	id() string
	// state is the task's state as the worker found it.
	state() (State, error)
	crashDir() string
	logPath() string
	// save records st, and the backtrace when not nil.
	save(st State, backtrace *string) error
	// lost is closed when the task is taken away (nil: never).
	lost() <-chan struct{}
	close()
}

type dirJob struct{ t task }

func (j dirJob) id() string            { return j.t.id }
func (j dirJob) state() (State, error) { return j.t.readState() }
func (j dirJob) crashDir() string      { return j.t.crashDir() }
func (j dirJob) logPath() string       { return j.t.path(logFile) }
func (j dirJob) lost() <-chan struct{} { return nil }
func (j dirJob) close()                {}

func (j dirJob) save(st State, bt *string) error {
	if bt != nil {
		if err := writeFileAtomic(j.t.path(backtraceFile), []byte(*bt)); err != nil {
			return fmt.Errorf("save the backtrace: %w", err)
		}
	}
	return j.t.writeState(st)
}

type sharedJob struct {
	c   Claim
	log *slog.Logger
}

func (j sharedJob) id() string            { return j.c.ID() }
func (j sharedJob) state() (State, error) { return j.c.State(), nil }
func (j sharedJob) crashDir() string      { return j.c.CrashDir() }
func (j sharedJob) logPath() string       { return j.c.LogPath() }
func (j sharedJob) lost() <-chan struct{} { return j.c.Lost() }

func (j sharedJob) close() {
	if err := j.c.Close(); err != nil {
		j.log.Error("retrace: release task", "task", j.c.ID(), "err", err)
	}
}

func (j sharedJob) save(st State, bt *string) error {
	// Saved whatever the worker's context: a shutdown requeues with it.
	ctx, cancel := storeCtx()
	defer cancel()
	return j.c.Save(ctx, st, bt)
}

// next waits for a pending task and hands it to the calling worker.
func (s *Server) next(ctx context.Context) (job, *liveTask, bool) {
	if s.shared != nil {
		return s.nextShared(ctx)
	}
	for {
		s.mu.Lock()
		if len(s.pending) > 0 {
			id := s.pending[0]
			s.pending = s.pending[1:]
			lt := &liveTask{done: make(chan struct{})}
			s.running[id] = lt
			more := len(s.pending) > 0
			s.mu.Unlock()
			if more {
				s.signal() // another worker may be waiting
			}
			return dirJob{s.task(id)}, lt, true
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil, false
		case <-s.wake:
		}
		if ctx.Err() != nil {
			return nil, nil, false
		}
	}
}

// nextShared claims a task of the shared store, retrying (every few
// seconds) while the store fails, and claiming none while the spool's
// disk has less free than the space policy wants.
func (s *Server) nextShared(ctx context.Context) (job, *liveTask, bool) {
	warned := false
	for {
		// A node whose disk is too full to copy a task to leaves the
		// tasks to the others.
		if err := s.checkSpace(0); err != nil {
			if !warned {
				s.log.Warn("retrace: this node claims no task while its disk is low", "err", err)
				warned = true
			}
			select {
			case <-ctx.Done():
				return nil, nil, false
			case <-time.After(10 * time.Second):
			}
			continue
		}
		warned = false
		c, err := s.shared.Claim(ctx)
		if ctx.Err() != nil {
			if err == nil {
				// Claimed as the server stops: another node or the next
				// start runs it.
				st := c.State()
				if serr := (sharedJob{c, s.log}).save(st, nil); serr != nil {
					s.log.Error("retrace: give a task back", "task", c.ID(), "err", serr)
				}
				c.Close()
			}
			return nil, nil, false
		}
		if err != nil {
			s.log.Error("retrace: claim a task", "err", err)
			select {
			case <-ctx.Done():
				return nil, nil, false
			case <-time.After(3 * time.Second):
			}
			continue
		}
		lt := &liveTask{done: make(chan struct{})}
		s.mu.Lock()
		s.running[c.ID()] = lt
		s.mu.Unlock()
		return sharedJob{c, s.log}, lt, true
	}
}

// work retraces the task of j and records the outcome.
func (s *Server) work(ctx context.Context, j job, lt *liveTask) {
	id := j.id()
	defer func() {
		j.close()
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		close(lt.done)
	}()
	st, err := j.state()
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.Error("retrace: read task", "task", id, "err", err)
		}
		return
	}
	if st.Status.Finished() {
		return
	}
	// A shared task claimed again after its node died: the attempt that
	// node started counts (MaxAttempts).
	cutOff := s.shared != nil && st.Attempts > 0
	st.Status, st.Started = statusRunning, s.cfg.Now()
	st.Attempts++
	if err := j.save(st, nil); err != nil {
		s.log.Error("retrace: start task", "task", id, "err", err)
		return
	}
	lw, err := s.openLog(j.logPath())
	if err != nil {
		s.log.Error("retrace: open task log", "task", id, "err", err)
		s.finish(j, st, Result{}, fmt.Errorf("open the log: %w", err), nil)
		return
	}
	defer func() {
		if err := lw.Close(); err != nil {
			s.log.Error("retrace: task log", "task", id, "err", err)
		}
	}()

	tctx, cancelTimeout := context.WithTimeout(ctx, s.cfg.TaskTimeout)
	defer cancelTimeout()
	tctx, cancel := context.WithCancelCause(tctx)
	defer cancel(nil)
	s.mu.Lock()
	lt.cancel = cancel
	deleted := s.deleting[id]
	s.mu.Unlock()
	if deleted {
		return
	}
	if lost := j.lost(); lost != nil {
		// Deleted on another node, or claimed again by one.
		go func() {
			select {
			case <-lost:
				cancel(errDeleted)
			case <-tctx.Done():
			}
		}()
	}

	if cutOff {
		lw.line(fmt.Sprintf("the node that ran attempt %d stopped during the retrace; it starts again", st.Attempts-1))
	}
	lw.line(fmt.Sprintf("retrace started (attempt %d)", st.Attempts))
	res, err := s.retrace(tctx, j.crashDir(), lw)
	switch {
	case errors.Is(context.Cause(tctx), errDeleted):
		return
	case ctx.Err() != nil && err != nil:
		// The server is stopping: the task runs again next time.
		lw.line("retrace interrupted: the server is stopping; the task stays pending")
		if err := lw.Close(); err != nil {
			s.log.Error("retrace: task log", "task", id, "err", err)
		}
		st.Status, st.Started = StatusPending, time.Time{}
		st.Attempts--
		if err := j.save(st, nil); err != nil {
			s.log.Error("retrace: requeue task", "task", id, "err", err)
		}
		return
	case err == nil && strings.TrimSpace(res.Backtrace) == "":
		err = errors.New("the retracer produced an empty backtrace")
	case err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("killed after the task timeout of %s: %w", s.cfg.TaskTimeout, err)
	}
	s.finish(j, st, res, err, lw)
}

// retrace calls the Retracer, turning a panic into an error and giving up
// on one that does not return after ctx ended.
func (s *Server) retrace(ctx context.Context, crashDir string, lw *taskLog) (Result, error) {
	type result struct {
		res Result
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{err: fmt.Errorf("retracer panicked: %v", p)}
			}
		}()
		res, err := s.r.Retrace(ctx, crashDir, lw)
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		return r.res, r.err
	case <-ctx.Done():
	}
	select {
	case r := <-done:
		return r.res, r.err
	case <-time.After(s.abandonAfter):
		return Result{}, fmt.Errorf("the retracer did not stop within %s of %w", s.abandonAfter, context.Cause(ctx))
	}
}

// finish records a task's outcome: the backtrace (kept also when the
// retrace failed with one, too poor to use), its rating and what was
// missing, or the failure. The log is closed first: a shared store
// takes it with the outcome.
func (s *Server) finish(j job, st State, res Result, err error, lw *taskLog) {
	var bt *string
	if err == nil || strings.TrimSpace(res.Backtrace) != "" {
		bt = &res.Backtrace
	}
	if res.Rating != nil {
		st.Rating = res.Rating.String()
	}
	st.Missing = res.Missing
	st.Package, st.Signal = res.Package, res.Signal
	if res.Stats != (RetraceStats{}) {
		stats := res.Stats
		st.Stats = &stats
	}
	st.Finished = s.cfg.Now()
	if err != nil {
		st.Status, st.Error = StatusFailure, err.Error()
		if lw != nil {
			lw.line("retrace failed: " + err.Error())
		}
	} else {
		st.Status = StatusSuccess
		if lw != nil {
			lw.line("retrace finished successfully")
		}
	}
	if lw != nil {
		if cerr := lw.Close(); cerr != nil {
			s.log.Error("retrace: task log", "task", j.id(), "err", cerr)
		}
	}
	werr := j.save(st, bt)
	if s.shared != nil && errors.Is(werr, ErrNotFound) {
		s.log.Info("retrace: task taken away before it finished (deleted, or claimed again after this node was taken for dead); its outcome here is dropped", "task", j.id())
		return
	}
	if werr != nil && bt != nil && err == nil {
		// The backtrace could not be kept: the task fails, saying why.
		st.Status, st.Error = StatusFailure, werr.Error()
		bt = nil
		if werr = j.save(st, nil); werr != nil {
			s.log.Error("retrace: finish task", "task", j.id(), "err", werr)
			return
		}
	} else if werr != nil {
		s.log.Error("retrace: finish task", "task", j.id(), "err", werr)
		return
	}
	s.sample(st)
	if s.shared != nil {
		if bt != nil {
			s.recordShared(j.id(), st, *bt)
		}
		return
	}
	s.record(j.(dirJob).t, st)
	s.mu.Lock()
	if !s.deleting[j.id()] {
		s.finished = slices.Insert(s.finished, 0, taskInfo(j.id(), st, -1))
		s.finished = s.finished[:min(len(s.finished), recentKept)]
	}
	s.mu.Unlock()
}
