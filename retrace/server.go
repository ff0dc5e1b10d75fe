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

// startUpload lets an upload stream, or fails with ErrQueueFull when the
// queue is full already (no point reading the body) or MaxUploads are
// streaming. It returns the upload's end.
func (s *Server) startUpload() (done func(), err error) {
	shared := s.sharedQueued()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queuedLocked(shared) >= s.cfg.MaxQueuedTasks || s.uploads >= s.cfg.MaxUploads {
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
	shared := s.sharedQueued()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.queuedLocked(shared) >= s.cfg.MaxQueuedTasks {
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

// keyed returns the task a client created with key, if it still exists.
func (s *Server) keyed(h string) (string, bool) {
	if s.shared != nil {
		ctx, cancel := storeCtx()
		defer cancel()
		id, err := s.shared.Keyed(ctx, h)
		if err != nil {
			s.log.Error("retrace: look the task key up", "err", err)
		}
		return id, id != ""
	}
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
	var dup *DuplicateError
	if errors.As(err, &dup) {
		return dup.ID, key, true, nil
	}
	return id, password, false, err
}

// DuplicateError is a keyed create that lost the race to another with
// the same key, which made task ID. A [SharedStore] returns it from
// Create.
type DuplicateError struct{ ID string }

func (e *DuplicateError) Error() string { return "task " + e.ID + " has this key" }

func (s *Server) createNew(body io.Reader, format string, contentLength int64, key, kh string) (id, password string, err error) {
	if err := s.checkSpace(contentLength); err != nil {
		return "", "", err
	}
	uploaded, err := s.startUpload()
	if err != nil {
		return "", "", err
	}
	defer uploaded()
	if s.shared != nil {
		return s.createShared(body, format, key, kh, uploaded)
	}

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
			return "", "", &DuplicateError{other}
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
	if err := t.writeState(State{Status: StatusPending, Created: s.cfg.Now()}); err != nil {
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

// createShared is createNew for a shared store: the upload is unpacked
// into a directory of the local spool, which the store copies from and
// which goes when the create returns.
func (s *Server) createShared(body io.Reader, format, key, kh string, uploaded func()) (id, password string, err error) {
	tmp, err := os.MkdirTemp(s.dir, uploadPrefix)
	if err != nil {
		return "", "", diskErr(err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil {
			s.log.Error("retrace: remove upload", "dir", tmp, "err", rerr)
		}
	}()
	crash := filepath.Join(tmp, crashDirName)
	if err := os.Mkdir(crash, 0o750); err != nil {
		return "", "", diskErr(err)
	}
	lim := unpackLimits{packed: s.cfg.MaxPackedSize * bytesPerMiB, unpacked: s.cfg.MaxUnpackedSize * bytesPerMiB, files: s.cfg.MaxFiles, space: s.space}
	if _, err := unpack(body, format, crash, lim); err != nil {
		return "", "", err
	}
	uploaded()
	if err := s.admit(); err != nil {
		return "", "", err
	}
	defer s.release("")
	password = key
	if key == "" {
		if password, err = newPassword(); err != nil {
			return "", "", err
		}
	}
	hash, err := hashPassword(password)
	if err != nil {
		return "", "", err
	}
	// The create streams the files to the store: bounded by the upload
	// timeout, as the upload was.
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.UploadTimeout)
	defer cancel()
	id, err = s.shared.Create(ctx, crash, hash, kh, s.cfg.Now())
	if err != nil {
		return "", "", err
	}
	s.signal()
	return id, password, nil
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
