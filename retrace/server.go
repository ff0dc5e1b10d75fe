package retrace

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
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

// maxAttempts bounds the retraces of one task that a crash of the server
// cut off: a core that kills the server every time fails after that many.
const maxAttempts = 3

// abandonAfter is how long a worker waits, after a task's context ended,
// for a Retracer that does not return.
const abandonAfter = 30 * time.Second

// Server owns the tasks under one directory: it serves the task protocol
// (Register) and runs the workers (Run).
type Server struct {
	dir string
	r   Retracer
	cfg Config
	log *slog.Logger

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
			s.record(t, st) // when the last server stopped before it did
			continue
		case StatusPending:
		case statusRunning:
			if st.Attempts >= maxAttempts {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	return Stats{Pending: len(s.pending) + s.admitted, Uploading: s.uploads, Running: len(s.running), MaxRunning: s.cfg.MaxRunningTasks}
}

// Recent returns the running tasks, the pending ones in queue order, and
// the n most recently finished (at most 50), newest first. Uploads that
// have not finished are not tasks yet.
func (s *Server) Recent(n int) []TaskInfo {
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

// taskInfo is what Recent shows of task id in state st; pos is its place
// in the queue when pending (-1: unknown).
func taskInfo(id string, st state, pos int) TaskInfo {
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

// queuedLocked is what counts against MaxQueuedTasks.
func (s *Server) queuedLocked() int { return len(s.pending) + len(s.running) + s.admitted }

// startUpload lets an upload stream, or fails with ErrQueueFull when the
// queue is full already (no point reading the body) or MaxUploads are
// streaming. It returns the upload's end.
func (s *Server) startUpload() (done func(), err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queuedLocked() >= s.cfg.MaxQueuedTasks || s.uploads >= s.cfg.MaxUploads {
		return nil, ErrQueueFull
	}
	s.uploads++
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			s.uploads--
			s.mu.Unlock()
		})
	}, nil
}

// admit takes a queue slot for an upload that has arrived, or fails with
// ErrQueueFull.
func (s *Server) admit() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queuedLocked() >= s.cfg.MaxQueuedTasks {
		return ErrQueueFull
	}
	s.admitted++
	return nil
}

// release gives back an admitted upload's slot, queuing id if it is not
// "".
func (s *Server) release(id string) {
	s.mu.Lock()
	s.admitted--
	if id != "" {
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
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, p := range s.pending {
		if p == id {
			return i
		}
	}
	return -1
}

// keyed returns the task a client created with key, if it still exists.
func (s *Server) keyed(h string) (string, bool) {
	s.mu.Lock()
	id, ok := s.keys[h]
	s.mu.Unlock()
	if !ok {
		return "", false
	}
	if _, err := s.task(id).readState(); err != nil {
		s.mu.Lock()
		delete(s.keys, h)
		s.mu.Unlock()
		return "", false
	}
	return id, true
}

func keyHash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

// create makes a task of the archive body in format, which the caller has
// checked. It returns the task's id and password. A client that names
// the task with a key (X-Task-Key, see [ValidTaskKey]) gets the key as the
// password, and the same task again, without its body being read, when
// it repeats a create it cannot tell arrived (it was killed, or the
// answer was lost): existing is then true.
func (s *Server) create(body io.Reader, format string, contentLength int64, key string) (id, password string, existing bool, err error) {
	var kh string
	if key != "" {
		kh = keyHash(key)
		if id, ok := s.keyed(kh); ok {
			return id, key, true, nil
		}
	}
	id, password, err = s.createNew(body, format, contentLength, key, kh)
	var dup *duplicateError
	if errors.As(err, &dup) {
		return dup.id, key, true, nil
	}
	return id, password, false, err
}

// duplicateError is a keyed create that lost the race to another with
// the same key, which made task id.
type duplicateError struct{ id string }

func (e *duplicateError) Error() string { return "task " + e.id + " has this key" }

func (s *Server) createNew(body io.Reader, format string, contentLength int64, key, kh string) (id, password string, err error) {
	if err := s.checkSpace(contentLength); err != nil {
		return "", "", err
	}
	uploaded, err := s.startUpload()
	if err != nil {
		return "", "", err
	}
	defer uploaded()

	t, err := s.newTaskDir()
	if err != nil {
		return "", "", err
	}
	defer func() {
		if err != nil {
			if rerr := os.RemoveAll(t.dir); rerr != nil {
				s.log.Error("retrace: remove failed upload", "task", t.id, "err", rerr)
			}
		}
	}()
	if err := os.Mkdir(t.crashDir(), 0o750); err != nil {
		return "", "", diskErr(err)
	}
	lim := unpackLimits{packed: s.cfg.MaxPackedSize * bytesPerMiB, unpacked: s.cfg.MaxUnpackedSize * bytesPerMiB, files: s.cfg.MaxFiles, space: s.space}
	if _, err := unpack(body, format, t.crashDir(), lim); err != nil {
		return "", "", err
	}
	uploaded()
	if err := s.admit(); err != nil {
		return "", "", err
	}
	queued := ""
	defer func() { s.release(queued) }()
	if err := s.checkSpace(0); err != nil {
		return "", "", err
	}
	password = key
	if key == "" {
		if password, err = newPassword(); err != nil {
			return "", "", err
		}
	} else {
		s.mu.Lock()
		other, taken := s.keys[kh]
		if !taken {
			s.keys[kh] = t.id
		}
		s.mu.Unlock()
		if taken {
			return "", "", &duplicateError{other}
		}
		defer func() {
			if err != nil {
				s.mu.Lock()
				delete(s.keys, kh)
				s.mu.Unlock()
			}
		}()
		if err := writeFileAtomic(t.path(keyFile), []byte(kh)); err != nil {
			return "", "", diskErr(err)
		}
	}
	hash, err := hashPassword(password)
	if err != nil {
		return "", "", err
	}
	if err := writeFileAtomic(t.path(passwordFile), hash); err != nil {
		return "", "", diskErr(err)
	}
	// task.json last: from here on the task exists.
	if err := t.writeState(state{Status: StatusPending, Created: s.cfg.Now()}); err != nil {
		return "", "", diskErr(err)
	}
	if err := syncDir(t.dir); err != nil {
		return "", "", err
	}
	if err := syncDir(s.dir); err != nil {
		return "", "", err
	}
	queued = t.id
	return t.id, password, nil
}

// newTaskDir creates the directory of a task with a fresh random id.
func (s *Server) newTaskDir() (task, error) {
	for range 50 {
		id, err := newID()
		if err != nil {
			return task{}, err
		}
		t := s.task(id)
		err = os.Mkdir(t.dir, 0o750)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			return task{}, diskErr(err)
		}
		return t, nil
	}
	return task{}, errors.New("no free task id after 50 tries")
}

// checkSpace fails with ErrNoSpace when writing n more bytes would leave
// less free than the space policy wants.
func (s *Server) checkSpace(n int64) error {
	err := s.space.Check(n)
	if errors.Is(err, diskspace.ErrLow) {
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	if err != nil {
		return fmt.Errorf("free space of %s: %w", s.dir, err)
	}
	return nil
}

// open returns the task id after checking its password.
func (s *Server) open(id, password string) (task, state, error) {
	if !validID(id) {
		return task{}, state{}, ErrNotFound
	}
	s.mu.Lock()
	deleting := s.deleting[id]
	s.mu.Unlock()
	if deleting {
		return task{}, state{}, ErrNotFound
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

// Run runs MaxRunningTasks workers until ctx ends. A retrace that ctx's
// end interrupts leaves its task pending on disk: the next server runs it
// again. Run must be called at most once. Old finished tasks go when the
// caller calls Expire (serve's scheduler does, hourly) or gc runs.
func (s *Server) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range s.cfg.MaxRunningTasks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				id, lt, ok := s.next(ctx)
				if !ok {
					return
				}
				s.work(ctx, id, lt)
			}
		}()
	}
	wg.Wait()
}

// next waits for a pending task and hands it to the calling worker.
func (s *Server) next(ctx context.Context) (string, *liveTask, bool) {
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
			return id, lt, true
		}
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return "", nil, false
		case <-s.wake:
		}
		if ctx.Err() != nil {
			return "", nil, false
		}
	}
}

// work retraces task id and records the outcome.
func (s *Server) work(ctx context.Context, id string, lt *liveTask) {
	defer func() {
		s.mu.Lock()
		delete(s.running, id)
		s.mu.Unlock()
		close(lt.done)
	}()
	t := s.task(id)
	st, err := t.readState()
	if err != nil {
		if !errors.Is(err, ErrNotFound) {
			s.log.Error("retrace: read task", "task", id, "err", err)
		}
		return
	}
	if st.Status.Finished() {
		return
	}
	st.Status, st.Started = statusRunning, s.cfg.Now()
	st.Attempts++
	if err := t.writeState(st); err != nil {
		s.log.Error("retrace: start task", "task", id, "err", err)
		return
	}
	lw, err := s.openLog(t)
	if err != nil {
		s.log.Error("retrace: open task log", "task", id, "err", err)
		s.finish(t, st, Result{}, fmt.Errorf("open the log: %w", err), nil)
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

	lw.line(fmt.Sprintf("retrace started (attempt %d)", st.Attempts))
	res, err := s.retrace(tctx, t.crashDir(), lw)
	switch {
	case errors.Is(context.Cause(tctx), errDeleted):
		return
	case ctx.Err() != nil && err != nil:
		// The server is stopping: the task runs again next time.
		lw.line("retrace interrupted: the server is stopping; the task stays pending")
		st.Status, st.Started = StatusPending, time.Time{}
		st.Attempts--
		if err := t.writeState(st); err != nil {
			s.log.Error("retrace: requeue task", "task", id, "err", err)
		}
		return
	case err == nil && strings.TrimSpace(res.Backtrace) == "":
		err = errors.New("the retracer produced an empty backtrace")
	case err != nil && errors.Is(tctx.Err(), context.DeadlineExceeded):
		err = fmt.Errorf("killed after the task timeout of %s: %w", s.cfg.TaskTimeout, err)
	}
	s.finish(t, st, res, err, lw)
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
// missing, or the failure.
func (s *Server) finish(t task, st state, res Result, err error, lw *taskLog) {
	if err == nil || strings.TrimSpace(res.Backtrace) != "" {
		if werr := writeFileAtomic(t.path(backtraceFile), []byte(res.Backtrace)); werr != nil && err == nil {
			err = fmt.Errorf("save the backtrace: %w", werr)
		}
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
	if werr := t.writeState(st); werr != nil {
		s.log.Error("retrace: finish task", "task", t.id, "err", werr)
		return
	}
	s.sample(st)
	s.record(t, st)
	s.mu.Lock()
	if !s.deleting[t.id] {
		s.finished = slices.Insert(s.finished, 0, taskInfo(t.id, st, -1))
		s.finished = s.finished[:min(len(s.finished), recentKept)]
	}
	s.mu.Unlock()
}

// record tells the Recorder of a task that finished with a backtrace and
// a known crash package, then marks it recorded. A failure is logged:
// the task is recorded again at the next start.
func (s *Server) record(t task, st state) {
	if s.cfg.Recorder == nil || st.Status != StatusSuccess || st.Recorded || st.Package == "" {
		return
	}
	bt, err := os.ReadFile(t.path(backtraceFile))
	if err != nil {
		s.log.Error("retrace: record crash", "task", t.id, "err", err)
		return
	}
	c := FinishedCrash{TaskID: t.id, Finished: st.Finished, Package: st.Package, Signal: st.Signal, Backtrace: string(bt)}
	if err := s.cfg.Recorder.RecordCrash(context.Background(), c); err != nil {
		s.log.Error("retrace: record crash", "task", t.id, "err", err)
		return
	}
	st.Recorded = true
	if err := t.writeState(st); err != nil {
		s.log.Error("retrace: mark task recorded", "task", t.id, "err", err)
	}
}

// sample adds a successful task's retrace to the duration estimate.
func (s *Server) sample(st state) {
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

// Exists reports whether task id exists (finished or not): the crash
// reports link only tasks that do.
func (s *Server) Exists(id string) bool {
	if !validID(id) {
		return false
	}
	_, err := s.task(id).readState()
	return err == nil
}
