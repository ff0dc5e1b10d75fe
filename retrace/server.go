package retrace

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/retraced/retraced/gc/diskspace"
)

// ErrQueueFull is returned by a create when MaxQueuedTasks tasks are
// unfinished (503).
var ErrQueueFull = errors.New("retrace server is fully loaded at the moment")

// errDeleted is the cause a running task's context ends with when the task
// is deleted.
var errDeleted = errors.New("task deleted")

// MaxAttempts bounds the retraces of one task that a crash of the server
// (or, with a [SharedStore], of the node that ran it) cut off: a core
// that kills the server every time fails after that many.
const MaxAttempts = 3

// abandonAfter is how long a worker waits, after a task's context ended,
// for a Retracer that does not return.
const abandonAfter = 30 * time.Second

// Server owns the tasks under one directory: it serves the task protocol
// (Register) and runs the workers (Run).
type Server struct {
	// dir is the task directory; with a shared store, the local spool
	// that uploads are unpacked into.
	dir string
	// shared keeps the tasks when several nodes share them (NewShared);
	// nil: they live in dir.
	shared SharedStore
	r      Retracer
	cfg    Config
	log    *slog.Logger

	// abandonAfter is a field so that tests can shorten it.
	abandonAfter time.Duration
	// space is the free-space policy uploads are checked against.
	space *diskspace.Policy

	// wake tells a waiting worker that a task was queued.
	wake chan struct{}

	mu       sync.Mutex
	pending  []string             // ids waiting for a worker, oldest first
	running  map[string]*liveTask // ids a worker has
	uploads  int                  // creates whose body streams (no queue slot yet)
	admitted int                  // creates past their upload, holding a queue slot
	deleting map[string]bool      // ids being deleted
	keys     map[string]string    // hex SHA-256 of a client's task key -> task id
	finished []TaskInfo           // the recentKept last finished tasks, newest first

	// est estimates durations from the last successful tasks.
	est estimator
}

// liveTask is a task a worker has.
type liveTask struct {
	cancel context.CancelCauseFunc // nil until the retrace starts
	done   chan struct{}           // closed when the worker lets go of it
}

// Stats is a snapshot of the queue.
type Stats struct {
	Pending    int // accepted, waiting for a worker
	Uploading  int // uploads still streaming (not in the queue yet)
	Running    int // being retraced
	MaxRunning int // MaxRunningTasks: the most that run at once
}

// StatusRunning is how [Server.Recent] reports a task a worker has; the
// protocol says PENDING.
const StatusRunning = statusRunning

// TaskInfo is what the status page may show of a task to anyone: its id,
// status and times, never its password, crash directory or error.
type TaskInfo struct {
	ID     string
	Status Status // StatusPending, StatusRunning, StatusSuccess or StatusFailure
	// Step is the current step in words, as GET /{id} says it.
	Step                       string
	Created, Started, Finished time.Time // zero until then
	// Node is the node that runs the task, when a SharedStore says.
	Node string
}

// recentKept is how many finished tasks the server remembers for Recent.
const recentKept = 50

// New opens the task directory dir (creating it), removes uploads that
// did not finish, and queues again the tasks that were pending or running
// when the last server stopped. r retraces; cfg's zero fields take their
// defaults.
func New(dir string, r Retracer, cfg Config) (*Server, error) {
	if r == nil {
		return nil, errors.New("retrace: nil Retracer")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open task directory: %w", err)
	}
	cfg = cfg.withDefaults()
	s := &Server{dir: dir, r: r, cfg: cfg, log: cfg.Logger, abandonAfter: abandonAfter, space: cfg.Space,
		wake: make(chan struct{}, 1), running: map[string]*liveTask{}, deleting: map[string]bool{}, keys: map[string]string{}}
	if s.space == nil {
		s.space = &diskspace.Policy{Dir: dir, MinBytes: cfg.MinFreeSpace * bytesPerMiB}
	}
	if err := s.recover(); err != nil {
		return nil, err
	}
	return s, nil
}

// NewShared serves the tasks of store, which other nodes share, with
// the local directory dir as the spool that uploads are unpacked into
// before the store takes them (what an earlier process left there is
// removed). r retraces; cfg's zero fields take their defaults.
// MaxQueuedTasks bounds the unfinished tasks of every node together.
func NewShared(dir string, store SharedStore, r Retracer, cfg Config) (*Server, error) {
	if r == nil || store == nil {
		return nil, errors.New("retrace: nil Retracer or SharedStore")
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("open task spool: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open task spool: %w", err)
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), uploadPrefix) {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return nil, fmt.Errorf("clean task spool: %w", err)
			}
		}
	}
	cfg = cfg.withDefaults()
	s := &Server{dir: dir, shared: store, r: r, cfg: cfg, log: cfg.Logger, abandonAfter: abandonAfter, space: cfg.Space,
		wake: make(chan struct{}, 1), running: map[string]*liveTask{}, deleting: map[string]bool{}, keys: map[string]string{}}
	if s.space == nil {
		s.space = &diskspace.Policy{Dir: dir, MinBytes: cfg.MinFreeSpace * bytesPerMiB}
	}
	return s, nil
}

// uploadPrefix names an upload's directory in a shared server's spool.
const uploadPrefix = ".upload-"

// storeTimeout bounds one call of the shared store made for a request.
const storeTimeout = time.Minute

func storeCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), storeTimeout)
}

func (s *Server) task(id string) task { return task{id: id, dir: filepath.Join(s.dir, id)} }

// recover scans the directory at start-up.
func (s *Server) recover() error {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("open task directory: %w", err)
	}
	type queued struct {
		id      string
		created time.Time
	}
	var q []queued
	var backlog []finishedTask
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".deleted-") {
			if err := os.RemoveAll(filepath.Join(s.dir, name)); err != nil {
				s.log.Warn("retrace: remove deleted task", "dir", name, "err", err)
			}
			continue
		}
		if !e.IsDir() || !validID(name) {
			continue
		}
		t := s.task(name)
		st, err := t.readState()
		if err == nil {
			if h, kerr := os.ReadFile(t.path(keyFile)); kerr == nil {
				s.keys[string(h)] = name
			}
		}
		if errors.Is(err, ErrNotFound) {
			// An upload the last server did not finish.
			if err := os.RemoveAll(t.dir); err != nil {
				s.log.Warn("retrace: remove unfinished upload", "task", name, "err", err)
			}
			continue
		}
		if err != nil {
			s.log.Warn("retrace: skip unreadable task", "task", name, "err", err)
			continue
		}
		switch st.Status {
		case StatusSuccess, StatusFailure:
			s.finished = append(s.finished, taskInfo(name, st, -1))
			s.sample(st)
			backlog = append(backlog, finishedTask{t, st}) // when the last server stopped before it recorded them
			continue
		case StatusPending:
		case statusRunning:
			if st.Attempts >= MaxAttempts {
				st.Status, st.Finished = StatusFailure, s.cfg.Now()
				st.Error = fmt.Sprintf("the server stopped during this task's retrace %d times", st.Attempts)
				s.appendLog(t, "retrace failed: "+st.Error+"; giving up")
				if err := t.writeState(st); err != nil {
					return err
				}
				s.finished = append(s.finished, taskInfo(name, st, -1))
				continue
			}
			st.Status = StatusPending
			s.appendLog(t, "the server stopped during the retrace; it starts again")
			if err := t.writeState(st); err != nil {
				return err
			}
		default:
			continue
		}
		q = append(q, queued{id: name, created: st.Created})
	}
	s.recordAll(backlog)
	sort.Slice(q, func(i, j int) bool { return q[i].created.Before(q[j].created) })
	for _, e := range q {
		s.pending = append(s.pending, e.id)
	}
	sort.SliceStable(s.finished, func(i, j int) bool { return s.finished[i].Finished.After(s.finished[j].Finished) })
	if len(s.finished) > recentKept {
		s.finished = s.finished[:recentKept]
	}
	return nil
}

// Stats returns the number of pending and running tasks.
func (s *Server) Stats() Stats {
	if s.shared != nil {
		pending, _ := s.sharedUnfinished()
		pending = max(pending, 0)
		s.mu.Lock()
		defer s.mu.Unlock()
		return Stats{Pending: pending + s.admitted, Uploading: s.uploads, Running: len(s.running), MaxRunning: s.cfg.MaxRunningTasks}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Pending: len(s.pending) + s.admitted, Uploading: s.uploads, Running: len(s.running), MaxRunning: s.cfg.MaxRunningTasks}
}

// Recent returns the running tasks, the pending ones in queue order, and
// the n most recently finished (at most 50), newest first. Uploads that
// have not finished are not tasks yet.
func (s *Server) Recent(n int) []TaskInfo {
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		out, err := s.shared.Recent(ctx, min(max(n, 0), recentKept))
		if err != nil {
			s.log.Error("retrace: list tasks", "err", err)
		}
		return out
	}
	s.mu.Lock()
	var running []string
	for id := range s.running {
		running = append(running, id)
	}
	pending := slices.Clone(s.pending)
	finished := slices.Clone(s.finished[:min(max(n, 0), len(s.finished))])
	s.mu.Unlock()
	sort.Strings(running)

	var out []TaskInfo
	seen := map[string]bool{}
	for i, id := range slices.Concat(running, pending) {
		st, err := s.task(id).readState()
		if err != nil {
			continue // deleted meanwhile
		}
		pos := -1
		if i >= len(running) {
			pos = i - len(running)
		}
		seen[id] = true
		out = append(out, taskInfo(id, st, pos))
	}
	for _, ti := range finished {
		if !seen[ti.ID] {
			out = append(out, ti)
		}
	}
	return out
}

// NewTaskInfo is what Recent shows of task id in state st; pos is its
// place in the queue when pending (-1: unknown). A [SharedStore] lists
// its tasks with it.
func NewTaskInfo(id string, st State, pos int) TaskInfo { return taskInfo(id, st, pos) }

// taskInfo is what Recent shows of task id in state st; pos is its place
// in the queue when pending (-1: unknown).
func taskInfo(id string, st State, pos int) TaskInfo {
	ti := TaskInfo{ID: id, Status: st.Status, Created: st.Created, Started: st.Started, Finished: st.Finished}
	switch st.Status {
	case StatusSuccess:
		ti.Step = stepSuccess
	case StatusFailure:
		ti.Step = stepFailure
	case statusRunning:
		ti.Step = stepRetracing
	default:
		ti.Status, ti.Step = StatusPending, stepQueued
		if pos > 0 {
			ti.Step = fmt.Sprintf("Waiting in the queue, %d task(s) ahead", pos)
		}
	}
	return ti
}

// queuedLocked is what counts against MaxQueuedTasks; shared is the
// shared store's count of unfinished tasks (sharedQueued).
func (s *Server) queuedLocked(shared int) int {
	if s.shared != nil {
		return shared + s.admitted
	}
	return len(s.pending) + len(s.running) + s.admitted
}

// sharedQueued counts the unfinished tasks of a shared store: every
// node's. A store that cannot count counts as full.
func (s *Server) sharedQueued() int {
	if s.shared == nil {
		return 0
	}
	p, r := s.sharedUnfinished()
	if p < 0 {
		return s.cfg.MaxQueuedTasks
	}
	return p + r
}

// sharedUnfinished is the shared store's count of pending and running
// tasks, or -1, -1 when it fails.
func (s *Server) sharedUnfinished() (pending, running int) {
	ctx, cancel := storeCtx()
	defer cancel()
	p, r, err := s.shared.Unfinished(ctx)
	if err != nil {
		s.log.Error("retrace: count tasks", "err", err)
		return -1, -1
	}
	return p, r
}

// release gives back an admitted upload's slot, queuing id if it is not
// "".
func (s *Server) release(id string) {
	s.mu.Lock()
	s.admitted--
	if id != "" && s.shared == nil {
		s.pending = append(s.pending, id)
	}
	s.mu.Unlock()
	if id != "" {
		s.signal()
	}
}

func (s *Server) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// position returns how many tasks are ahead of pending task id, or -1.
func (s *Server) position(id string) int {
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		n, err := s.shared.Position(ctx, id)
		if err != nil {
			s.log.Error("retrace: queue position", "task", id, "err", err)
			return -1
		}
		return n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p == id {
			return i
		}
	}
	return -1
}

// open returns the task id after checking its password.
func (s *Server) open(id, password string) (task, State, error) {
	if !validID(id) {
		return task{}, State{}, ErrNotFound
	}
	s.mu.Lock()
	deleting := s.deleting[id]
	s.mu.Unlock()
	if deleting {
		return task{}, State{}, ErrNotFound
	}
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		st, stored, err := s.shared.Get(ctx, id)
		if err != nil {
			return task{id: id}, st, err
		}
		if password == "" || !checkPassword(stored, password) {
			return task{id: id}, st, ErrBadPassword
		}
		return task{id: id}, st, nil
	}
	t := s.task(id)
	st, err := t.readState()
	if err != nil {
		return t, st, err
	}
	if err := t.verify(password); err != nil {
		return t, st, err
	}
	return t, st, nil
}

// remove deletes a task, stopping its retrace if one runs.
func (s *Server) remove(id string) error {
	s.mu.Lock()
	if s.deleting[id] {
		s.mu.Unlock()
		return ErrNotFound
	}
	s.deleting[id] = true
	for i, p := range s.pending {
		if p == id {
			s.pending = append(s.pending[:i], s.pending[i+1:]...)
			break
		}
	}
	s.finished = slices.DeleteFunc(s.finished, func(ti TaskInfo) bool { return ti.ID == id })
	lt := s.running[id]
	if lt != nil && lt.cancel != nil {
		lt.cancel(errDeleted)
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.deleting, id)
		s.mu.Unlock()
	}()
	if lt != nil {
		<-lt.done
	}
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		return s.shared.Remove(ctx, id)
	}
	t := s.task(id)
	// Rename first, so that the task is gone at once even if removing
	// its files takes long or fails half-way.
	gone := filepath.Join(s.dir, ".deleted-"+id)
	if err := os.Rename(t.dir, gone); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return ErrNotFound
		}
		return err
	}
	return os.RemoveAll(gone)
}

// Exists reports whether task id exists (finished or not): the crash
// reports link only tasks that do.
func (s *Server) Exists(id string) bool {
	if !validID(id) {
		return false
	}
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		_, _, err := s.shared.Get(ctx, id)
		return err == nil
	}
	_, err := s.task(id).readState()
	return err == nil
}
