package retrace

import (
	"context"
	"os"
)

// finishedTask is a task and its state, to record.
type finishedTask struct {
	t  task
	st State
}

// record tells the Recorder of a task that finished with a backtrace and
// a known crash package, then marks it recorded.
func (s *Server) record(t task, st State) { s.recordAll([]finishedTask{{t, st}}) }

// recordAll tells the Recorder of finished tasks in one call (one write
// of the crash store for a backlog at start), then marks them recorded.
// Tasks without a usable backtrace are passed over. A failure is logged:
// the tasks are recorded again at the next start.
func (s *Server) recordAll(fts []finishedTask) {
	if s.cfg.Recorder == nil {
		return
	}
	var todo []finishedTask
	var cs []FinishedCrash
	for _, ft := range fts {
		t, st := ft.t, ft.st
		if st.Status != StatusSuccess || st.Recorded || st.Package == "" {
			continue
		}
		bt, err := os.ReadFile(t.path(backtraceFile))
		if err != nil {
			s.log.Error("retrace: record crash", "task", t.id, "err", err)
			continue
		}
		todo = append(todo, ft)
		cs = append(cs, FinishedCrash{TaskID: t.id, Finished: st.Finished, Package: st.Package, Signal: st.Signal, Backtrace: string(bt)})
	}
	if len(cs) == 0 {
		return
	}
	if err := s.cfg.Recorder.RecordCrashes(context.Background(), cs); err != nil {
		s.log.Error("retrace: record crashes", "tasks", len(cs), "err", err)
		return
	}
	for _, ft := range todo {
		ft.st.Recorded = true
		if err := ft.t.writeState(ft.st); err != nil {
			s.log.Error("retrace: mark task recorded", "task", ft.t.id, "err", err)
		}
	}
}

// recordShared tells the Recorder of a shared task that this node
// finished, as record does. The Recorder is this node's: the task is not
// marked recorded in the store (its claim has ended), so a failure is
// only logged.
func (s *Server) recordShared(id string, st State, bt string) {
	if s.cfg.Recorder == nil || st.Status != StatusSuccess || st.Package == "" {
		return
	}
	c := FinishedCrash{TaskID: id, Finished: st.Finished, Package: st.Package, Signal: st.Signal, Backtrace: bt}
	if err := s.cfg.Recorder.RecordCrashes(context.Background(), []FinishedCrash{c}); err != nil {
		s.log.Error("retrace: record crash", "task", id, "err", err)
	}
}

// sample adds a successful task's retrace to the duration estimate.
func (s *Server) sample(st State) {
	if st.Status != StatusSuccess || st.Stats == nil || st.Started.IsZero() {
		return
	}
	s.est.add(sample{finished: st.Finished, took: st.Finished.Sub(st.Started), stats: *st.Stats})
}

// Estimate estimates the duration of a task with ahead tasks pending
// before it (-1: a running task), from the last successful tasks; false
// when there are none yet.
func (s *Server) Estimate(ahead int) (Estimate, bool) {
	if ahead < 0 {
		return s.est.estimate(0, 0, 1)
	}
	st := s.Stats()
	return s.est.estimate(ahead, st.Running, st.MaxRunning)
}
