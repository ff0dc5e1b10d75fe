// Package taskdb keeps retrace tasks where several retraced nodes share
// them: a [retrace.SharedStore] with the task rows in PostgreSQL and the
// task files (the crash directory, the log, the backtrace) in an object
// store. Every node answers the protocol for every task; any node's
// workers take any pending task.
//
// # Rows
//
// retraced_tasks has a row per task: its status (UPLOADING, PENDING,
// RUNNING, FINISHED_SUCCESS, FINISHED_FAILURE, DELETING), its state as
// the directory store keeps it in task.json (jsonb), the stored password,
// the hash of the client's task key (unique: X-Task-Key dedups across
// nodes), the crash files' names and size, and, while it runs, the node
// and claim that run it and the claim's heartbeat. A worker claims the
// oldest pending task with UPDATE ... WHERE id = (SELECT ... FOR UPDATE
// SKIP LOCKED), so that two workers, on one node or two, never take the
// same task and never wait for each other. New tasks are announced with
// NOTIFY retraced_tasks; workers also look every Beat.
//
// # Objects
//
// A task's files are objects named tasks/ID/crash/NAME, tasks/ID/log and
// tasks/ID/backtrace under the store's prefix. A create streams each file
// of the unpacked upload from the local spool into the store (never
// holding a core in memory); a claim streams them down into the node's
// local directory, where gdb reads them. The log is written locally while
// the task runs and uploaded every Beat and when the worker saves the
// task; the backtrace is uploaded before the row says FINISHED.
//
// # Nodes dying
//
// Each node holds a session advisory lock (pg_advisory_lock(21076, N))
// for as long as it lives, on a connection of its own, and registers N
// and its session's pid in retraced_task_nodes. A node killed with -9
// loses its session, so the lock goes at once; a node that hangs or is
// cut off stops beating its claims. Every node sweeps every Beat: a
// running task whose node holds no lock, or whose claim has not beaten
// for Stale, is pending again (failed after retrace.MaxAttempts
// attempts), and another node runs it. When PostgreSQL itself restarts,
// every lock goes and no heartbeat came while it was down: for Stale
// after its start (pg_postmaster_start_time) no node is judged by its
// lock and heartbeats count from the start, so that the live nodes take
// their locks again and beat before anything is taken from them. Each
// claim carries a random token
// that every write of its worker names: a worker whose claim was taken
// (it was thought dead) or whose task was deleted finds its write refused
// and its Claim lost, and stops its retrace.
//
// A create inserts its row (UPLOADING) before uploading the files and
// makes it PENDING after, so that a create cut off leaves a row the
// sweep finds (its node dead) and removes with its objects. A delete
// marks the row DELETING, removes the objects, then the row; a delete cut
// off is finished by the sweep.
//
// # Imports
//
// Of retraced, taskdb may import only retrace: the interfaces it
// implements. The object store comes in as [Objects], which
// index/blob/s3blob's Store implements.
package taskdb

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/retraced/retraced/retrace"
)

// Objects is the object store the task files live in, names relative
// to its prefix. index/blob/s3blob's Store is one.
type Objects interface {
	// PutObject stores size bytes of r as name; the object appears
	// only once complete.
	PutObject(ctx context.Context, name string, r io.Reader, size int64) error
	// GetObject returns a reader of name and its size, or an error
	// matching fs.ErrNotExist.
	GetObject(ctx context.Context, name string) (io.ReadCloser, int64, error)
	// RemoveObjects removes every object whose name starts with prefix.
	RemoveObjects(ctx context.Context, prefix string) error
}

// Options tune Open.
type Options struct {
	// Node names this process in the rows of the tasks it runs.
	Node string
	// Dir is the local directory claimed tasks are copied into; what is
	// there at Open is removed.
	Dir string
	// Beat is how often a claim proves it is alive, the log of a running
	// task is uploaded and each node sweeps; 0 picks 2 s.
	Beat time.Duration
	// Stale is how long a claim may go without beating before its task
	// is taken for cut off and claimed again; 0 picks 30 s (15 beats).
	Stale time.Duration
	Log   *slog.Logger
}

// Store is the shared task store.
type Store struct {
	pool *pgxpool.Pool
	obj  Objects
	o    Options
	// id names this process in retraced_task_nodes and its claims.
	id string

	mu  sync.Mutex
	gen chan struct{} // closed and replaced when a task may be pending

	stop context.CancelFunc
	wg   sync.WaitGroup
}

var _ retrace.SharedStore = (*Store)(nil)

// Statuses of rows besides retrace's.
const (
	statusUploading = "UPLOADING"
	statusDeleting  = "DELETING"
	statusRunning   = string(retrace.StatusRunning)
	statusPending   = string(retrace.StatusPending)
	statusSuccess   = string(retrace.StatusSuccess)
	statusFailure   = string(retrace.StatusFailure)
)

const (
	notifyChannel = "retraced_tasks"
	// lockClass is the first key of the nodes' advisory locks ("RT").
	lockClass = 0x5254
	// uploadStale is how long an UPLOADING row of a live node may stay:
	// far longer than any upload (the upload timeout is minutes).
	uploadStale = 6 * time.Hour
)

// deleteBeats is how many Beats a DELETING row may stay before a sweep
// finishes the delete (removing objects twice is harmless).
const deleteBeats = 5

const schema = `
CREATE TABLE IF NOT EXISTS retraced_tasks (
	id        text PRIMARY KEY,
	status    text NOT NULL,
	created   timestamptz NOT NULL,
	finished  timestamptz,
	state     jsonb NOT NULL,
	password  bytea NOT NULL,
	key_hash  text UNIQUE,
	files     text[] NOT NULL DEFAULT '{}',
	bytes     bigint NOT NULL DEFAULT 0,
	node      text NOT NULL DEFAULT '',
	node_id   text,
	claim     bigint,
	heartbeat timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS retraced_tasks_queue ON retraced_tasks (created, id) WHERE status = 'PENDING';
CREATE INDEX IF NOT EXISTS retraced_tasks_status ON retraced_tasks (status);
CREATE TABLE IF NOT EXISTS retraced_task_nodes (
	id        text PRIMARY KEY,
	name      text NOT NULL,
	pid       integer NOT NULL,
	lock_obj  bigint NOT NULL,
	heartbeat timestamptz NOT NULL DEFAULT now()
);`

// Open connects to the PostgreSQL database dsn, creates the tables when
// missing, takes this node's lock and starts sweeping.
func Open(ctx context.Context, dsn string, obj Objects, o Options) (*Store, error) {
	if o.Dir == "" {
		return nil, errors.New("taskdb: no local directory")
	}
	if o.Beat <= 0 {
		o.Beat = 2 * time.Second
	}
	if o.Stale <= 0 {
		o.Stale = 30 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Node == "" {
		host, _ := os.Hostname()
		o.Node = fmt.Sprintf("%s:%d", host, os.Getpid())
	}
	if err := os.RemoveAll(o.Dir); err != nil {
		return nil, fmt.Errorf("taskdb: clean %s: %w", o.Dir, err)
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("taskdb: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("taskdb: %w", err)
	}
	// Each running task holds a connection while it beats (and uploads
	// its log); idle workers poll, the sweep and requests take others.
	if cfg.MaxConns < 16 {
		cfg.MaxConns = 16
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = 10 * time.Second
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("taskdb: %w", err)
	}
	// Two nodes starting at once must not both create the tables.
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, 0)`, lockClass); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, schema)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("taskdb: create tables: %w", err)
	}
	var b [8]byte
	rand.Read(b[:])
	s := &Store{pool: pool, obj: obj, o: o, id: hex.EncodeToString(b[:]), gen: make(chan struct{})}
	conn, err := s.register(ctx)
	if err != nil {
		pool.Close()
		return nil, err
	}
	lctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.wg.Add(2)
	go s.listen(lctx, conn)
	go s.sweeper(lctx)
	return s, nil
}

// Close stops the node's work and gives up its lock: the tasks it still
// runs (its workers must have stopped) go to other nodes.
func (s *Store) Close() error {
	s.stop()
	s.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s.pool.Exec(ctx, `DELETE FROM retraced_task_nodes WHERE id = $1`, s.id)
	s.pool.Close()
	return nil
}

// register takes this node's lock on a connection of its own, records
// it in retraced_task_nodes and listens for new tasks on it.
func (s *Store) register(ctx context.Context) (*pgx.Conn, error) {
	pc, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("taskdb: %w", err)
	}
	conn := pc.Hijack()
	fail := func(err error) (*pgx.Conn, error) {
		conn.Close(context.Background())
		return nil, fmt.Errorf("taskdb: node lock: %w", err)
	}
	var obj int64
	for range 20 {
		var b [4]byte
		rand.Read(b[:])
		obj = int64(binary.BigEndian.Uint32(b[:]) >> 1)
		var got bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1, $2::int)`, lockClass, obj).Scan(&got); err != nil {
			return fail(err)
		}
		if got {
			break
		}
		obj = -1
	}
	if obj < 0 {
		return fail(errors.New("no free lock"))
	}
	if _, err := conn.Exec(ctx, `INSERT INTO retraced_task_nodes (id, name, pid, lock_obj) VALUES ($1, $2, pg_backend_pid(), $3)
		ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, pid = EXCLUDED.pid, lock_obj = EXCLUDED.lock_obj, heartbeat = now()`,
		s.id, s.o.Node, obj); err != nil {
		return fail(err)
	}
	if _, err := conn.Exec(ctx, `LISTEN `+notifyChannel); err != nil {
		return fail(err)
	}
	return conn, nil
}

// listen keeps the node's lock session and wakes the claims waiting for
// a task when one is announced; when the session fails it takes a new
// one.
func (s *Store) listen(ctx context.Context, conn *pgx.Conn) {
	defer s.wg.Done()
	backoff := 100 * time.Millisecond
	for {
		s.kick() // anything announced before LISTEN
		for {
			if _, err := conn.WaitForNotification(ctx); err != nil {
				break
			}
			s.kick()
		}
		conn.Close(context.Background())
		if ctx.Err() != nil {
			return
		}
		s.o.Log.Warn("taskdb: the node's session with PostgreSQL failed; taking a new one")
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			c, err := s.register(rctx)
			cancel()
			if err == nil {
				conn, backoff = c, 100*time.Millisecond
				break
			}
			if ctx.Err() != nil {
				return
			}
			s.o.Log.Warn("taskdb: retake the node's lock", "err", err)
		}
	}
}

func (s *Store) kick() {
	s.mu.Lock()
	close(s.gen)
	s.gen = make(chan struct{})
	s.mu.Unlock()
}

func (s *Store) waitCh() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gen
}

// sweeper sweeps every Beat.
func (s *Store) sweeper(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.o.Beat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := s.sweep(ctx); err != nil && ctx.Err() == nil {
			s.o.Log.Warn("taskdb: sweep", "err", err)
		}
	}
}

// liveNodes is the SQL of the nodes whose lock session is alive.
const liveNodes = `SELECT n.id FROM retraced_task_nodes n WHERE EXISTS (SELECT 1 FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.pid = n.pid
	AND l.classid::bigint = ` + "21076" + ` AND l.objid::bigint = n.lock_obj AND l.objsubid = 2)`

// sweep gives the tasks of dead nodes to others and finishes what dead
// creates and deletes left.
func (s *Store) sweep(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, `UPDATE retraced_task_nodes SET heartbeat = now() WHERE id = $1`, s.id); err != nil {
		return err
	}
	type row struct {
		id, status string
		state      []byte
	}
	var gone []string   // rows whose objects and row go
	var failed []string // tasks failed for their nodes' deaths, and why
	requeued := false
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		gone, failed, requeued = nil, nil, false
		// After PostgreSQL (re)started, every node's session lock went
		// and no heartbeat came while it was down: for Stale after its
		// start, no node is judged by its lock, and heartbeats count
		// from the start, so that live nodes can take their locks again
		// and beat before their tasks are taken for cut off.
		const settled = `(now() - pg_postmaster_start_time() > $1::float8 * interval '1 second')`
		const dead = `(` + settled + ` AND (node_id IS NULL OR node_id NOT IN (` + liveNodes + `)))`
		const beat = `greatest(heartbeat, pg_postmaster_start_time())`
		rows, err := tx.Query(ctx, `SELECT id, status, state FROM retraced_tasks
			WHERE (status = 'RUNNING' AND (`+dead+` OR `+beat+` < now() - $1::float8 * interval '1 second'))
			   OR (status = 'UPLOADING' AND (`+dead+` OR `+beat+` < now() - $2::float8 * interval '1 second'))
			   OR (status = 'DELETING' AND heartbeat < now() - $3::float8 * interval '1 second')
			FOR UPDATE SKIP LOCKED`, s.o.Stale.Seconds(), uploadStale.Seconds(), (deleteBeats * s.o.Beat).Seconds())
		if err != nil {
			return err
		}
		var rs []row
		for rows.Next() {
			var r row
			if err := rows.Scan(&r.id, &r.status, &r.state); err != nil {
				rows.Close()
				return err
			}
			rs = append(rs, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		for _, r := range rs {
			if r.status != statusRunning {
				if _, err := tx.Exec(ctx, `UPDATE retraced_tasks SET status = 'DELETING', heartbeat = now() WHERE id = $1`, r.id); err != nil {
					return err
				}
				gone = append(gone, r.id)
				continue
			}
			var st retrace.State
			if err := json.Unmarshal(r.state, &st); err != nil {
				return fmt.Errorf("task %s: %w", r.id, err)
			}
			if st.Attempts >= retrace.MaxAttempts {
				st.Status, st.Finished = retrace.StatusFailure, time.Now()
				st.Error = fmt.Sprintf("the nodes running it stopped during this task's retrace %d times", st.Attempts)
				s.o.Log.Warn("taskdb: task failed: its nodes died", "task", r.id, "attempts", st.Attempts)
				failed = append(failed, r.id, st.Error)
			} else {
				st.Status, st.Started = retrace.StatusPending, time.Time{}
				requeued = true
				s.o.Log.Info("taskdb: task's node stopped; it is pending again", "task", r.id)
			}
			if err := saveState(ctx, tx, r.id, st, false); err != nil {
				return err
			}
		}
		if requeued {
			_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
		}
		return err
	})
	if err != nil {
		return err
	}
	for i := 0; i < len(failed); i += 2 {
		if err := s.appendLog(ctx, failed[i], "retrace failed: "+failed[i+1]+"; giving up"); err != nil {
			s.o.Log.Warn("taskdb: task log", "task", failed[i], "err", err)
		}
	}
	for _, id := range gone {
		if err := s.purge(ctx, id); err != nil {
			return err
		}
	}
	_, err = s.pool.Exec(ctx, `DELETE FROM retraced_task_nodes WHERE heartbeat < now() - interval '1 hour' AND id NOT IN (`+liveNodes+`)`)
	return err
}

// appendLog adds a line to a task's log object: the object streamed
// back with the line after it.
func (s *Store) appendLog(ctx context.Context, id, msg string) error {
	line := time.Now().UTC().Format("2006-01-02 15:04:05") + " " + msg + "\n"
	var old io.Reader = strings.NewReader("")
	var size int64
	r, n, err := s.obj.GetObject(ctx, fileObject(id, retrace.LogFile))
	switch {
	case err == nil:
		defer r.Close()
		old, size = io.LimitReader(r, n), n
	case !errors.Is(err, fs.ErrNotExist):
		return err
	}
	return s.obj.PutObject(ctx, fileObject(id, retrace.LogFile), io.MultiReader(old, strings.NewReader(line)), size+int64(len(line)))
}

// saveState writes st as task id's state and status; keep says whether
// the claim stays (a running task).
func saveState(ctx context.Context, tx pgx.Tx, id string, st retrace.State, keep bool) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	var fin *time.Time
	if st.Status.Finished() {
		fin = &st.Finished
	}
	q := `UPDATE retraced_tasks SET status = $2, state = $3, finished = $4, heartbeat = now()`
	if !keep {
		q += `, claim = NULL, node_id = NULL`
	}
	_, err = tx.Exec(ctx, q+` WHERE id = $1`, id, string(st.Status), b, fin)
	return err
}

// purge removes a DELETING task's objects, then its row.
func (s *Store) purge(ctx context.Context, id string) error {
	if err := s.obj.RemoveObjects(ctx, taskPrefix(id)); err != nil {
		return err
	}
	_, err := s.pool.Exec(ctx, `DELETE FROM retraced_tasks WHERE id = $1 AND status = 'DELETING'`, id)
	return err
}

func taskPrefix(id string) string        { return "tasks/" + id + "/" }
func crashObject(id, name string) string { return taskPrefix(id) + "crash/" + name }
func fileObject(id, name string) string  { return taskPrefix(id) + name }
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// Create implements retrace.SharedStore.
func (s *Store) Create(ctx context.Context, crashDir string, pw []byte, kh string, created time.Time) (string, error) {
	ents, err := os.ReadDir(crashDir)
	if err != nil {
		return "", err
	}
	var names []string
	var bytes int64
	for _, e := range ents {
		fi, err := e.Info()
		if err != nil {
			return "", err
		}
		if !fi.Mode().IsRegular() {
			return "", fmt.Errorf("%s: not a regular file", e.Name())
		}
		names = append(names, e.Name())
		bytes += fi.Size()
	}
	sort.Strings(names)
	st, err := json.Marshal(retrace.State{Status: retrace.StatusPending, Created: created})
	if err != nil {
		return "", err
	}
	id := ""
	for range 50 {
		cand, err := retrace.NewTaskID()
		if err != nil {
			return "", err
		}
		tag, err := s.pool.Exec(ctx, `INSERT INTO retraced_tasks (id, status, created, state, password, files, bytes, node, node_id)
			VALUES ($1, 'UPLOADING', $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING`,
			cand, created, st, pw, names, bytes, s.o.Node, s.id)
		if err != nil {
			return "", fmt.Errorf("create task: %w", err)
		}
		if tag.RowsAffected() == 1 {
			id = cand
			break
		}
	}
	if id == "" {
		return "", errors.New("no free task id after 50 tries")
	}
	ok := false
	defer func() {
		if !ok {
			s.abandon(id)
		}
	}()
	for _, name := range names {
		if err := s.putFile(ctx, crashObject(id, name), filepath.Join(crashDir, name)); err != nil {
			return "", err
		}
	}
	var khArg any
	if kh != "" {
		khArg = kh
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE retraced_tasks SET status = 'PENDING', key_hash = $2, heartbeat = now()
			WHERE id = $1 AND status = 'UPLOADING'`, id, khArg)
		if err != nil {
			return err
		}
		if tag.RowsAffected() != 1 {
			return errors.New("the upload was taken for abandoned")
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
		return err
	})
	if isUniqueViolation(err) {
		other, kerr := s.Keyed(ctx, kh)
		if kerr != nil {
			return "", kerr
		}
		if other == "" {
			return "", errors.New("the task with this key went while this create ran")
		}
		return "", &retrace.DuplicateError{ID: other}
	}
	if err != nil {
		return "", fmt.Errorf("create task: %w", err)
	}
	ok = true
	return id, nil
}

// abandon removes a create that failed; what it cannot, a sweep does.
func (s *Store) abandon(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.pool.Exec(ctx, `UPDATE retraced_tasks SET status = 'DELETING', heartbeat = now() WHERE id = $1`, id); err != nil {
		s.o.Log.Warn("taskdb: abandon an upload", "task", id, "err", err)
		return
	}
	if err := s.purge(ctx, id); err != nil {
		s.o.Log.Warn("taskdb: abandon an upload", "task", id, "err", err)
	}
}

// putFile streams the local file path to object name.
func (s *Store) putFile(ctx context.Context, name, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close() // read-only
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	return s.obj.PutObject(ctx, name, io.LimitReader(f, fi.Size()), fi.Size())
}

// getFile streams object name into a new local file path.
func (s *Store) getFile(ctx context.Context, name, path string) error {
	r, size, err := s.obj.GetObject(ctx, name)
	if err != nil {
		return err
	}
	defer r.Close()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o640)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("%s: %d bytes of %d", name, n, size)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// Keyed implements retrace.SharedStore.
func (s *Store) Keyed(ctx context.Context, kh string) (string, error) {
	var id string
	err := s.pool.QueryRow(ctx, `SELECT id FROM retraced_tasks WHERE key_hash = $1 AND status NOT IN ('UPLOADING', 'DELETING')`, kh).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	return id, err
}

// Get implements retrace.SharedStore.
func (s *Store) Get(ctx context.Context, id string) (retrace.State, []byte, error) {
	var st retrace.State
	var status string
	var b, pw []byte
	err := s.pool.QueryRow(ctx, `SELECT status, state, password FROM retraced_tasks
		WHERE id = $1 AND status NOT IN ('UPLOADING', 'DELETING')`, id).Scan(&status, &b, &pw)
	if errors.Is(err, pgx.ErrNoRows) {
		return st, nil, retrace.ErrNotFound
	}
	if err != nil {
		return st, nil, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, nil, fmt.Errorf("task %s: %w", id, err)
	}
	st.Status = retrace.Status(status)
	return st, pw, nil
}

// Position implements retrace.SharedStore.
func (s *Store) Position(ctx context.Context, id string) (int, error) {
	var n int
	err := s.pool.QueryRow(ctx, `SELECT count(*) FROM retraced_tasks p, retraced_tasks t
		WHERE t.id = $1 AND p.status = 'PENDING' AND (p.created, p.id) < (t.created, t.id)`, id).Scan(&n)
	return n, err
}

// Unfinished implements retrace.SharedStore.
func (s *Store) Unfinished(ctx context.Context) (pending, running int, err error) {
	err = s.pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE status = 'PENDING'), count(*) FILTER (WHERE status = 'RUNNING')
		FROM retraced_tasks WHERE status IN ('PENDING', 'RUNNING')`).Scan(&pending, &running)
	return pending, running, err
}

// Recent implements retrace.SharedStore.
func (s *Store) Recent(ctx context.Context, n int) ([]retrace.TaskInfo, error) {
	rows, err := s.pool.Query(ctx, `(SELECT id, status, state, node, 0 AS o FROM retraced_tasks WHERE status = 'RUNNING' ORDER BY id LIMIT 100)
		UNION ALL (SELECT id, status, state, '', 1 FROM retraced_tasks WHERE status = 'PENDING' ORDER BY created, id LIMIT 100)
		UNION ALL (SELECT id, status, state, '', 2 FROM retraced_tasks WHERE status IN ('FINISHED_SUCCESS', 'FINISHED_FAILURE') ORDER BY finished DESC LIMIT $1)`, n)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []retrace.TaskInfo
	pos := 0
	for rows.Next() {
		var id, status, node string
		var b []byte
		var o int
		if err := rows.Scan(&id, &status, &b, &node, &o); err != nil {
			return nil, err
		}
		var st retrace.State
		if err := json.Unmarshal(b, &st); err != nil {
			return nil, fmt.Errorf("task %s: %w", id, err)
		}
		st.Status = retrace.Status(status)
		p := -1
		if o == 1 {
			p, pos = pos, pos+1
		}
		ti := retrace.NewTaskInfo(id, st, p)
		ti.Node = node
		out = append(out, ti)
	}
	return out, rows.Err()
}

// Remove implements retrace.SharedStore.
func (s *Store) Remove(ctx context.Context, id string) error {
	tag, err := s.pool.Exec(ctx, `UPDATE retraced_tasks SET status = 'DELETING', heartbeat = now()
		WHERE id = $1 AND status NOT IN ('UPLOADING', 'DELETING')`, id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() == 0 {
		return retrace.ErrNotFound
	}
	return s.purge(ctx, id)
}

// Open implements retrace.SharedStore.
func (s *Store) Open(ctx context.Context, id, name string) (io.ReadCloser, int64, error) {
	if name != retrace.LogFile && name != retrace.BacktraceFile {
		return nil, 0, fs.ErrNotExist
	}
	return s.obj.GetObject(ctx, fileObject(id, name))
}

// Expired implements retrace.SharedStore.
func (s *Store) Expired(ctx context.Context, cutoff, failedCutoff time.Time) ([]retrace.ExpiredTask, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, bytes FROM retraced_tasks
		WHERE (status = 'FINISHED_SUCCESS' AND finished < $1) OR (status = 'FINISHED_FAILURE' AND finished < $2)
		ORDER BY finished`, cutoff, failedCutoff)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []retrace.ExpiredTask
	for rows.Next() {
		var t retrace.ExpiredTask
		if err := rows.Scan(&t.ID, &t.Bytes); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// Claim implements retrace.SharedStore.
func (s *Store) Claim(ctx context.Context) (retrace.Claim, error) {
	for {
		wake := s.waitCh()
		c, err := s.claim(ctx)
		if err != nil || c != nil {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wake:
		case <-time.After(s.o.Beat):
		}
	}
}

// claim takes the oldest pending task, or returns nil.
func (s *Store) claim(ctx context.Context) (*claim, error) {
	var b [8]byte
	rand.Read(b[:])
	c := &claim{s: s, token: int64(binary.BigEndian.Uint64(b[:]) >> 1), lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	var st []byte
	err := s.pool.QueryRow(ctx, `UPDATE retraced_tasks SET status = 'RUNNING', node = $1, node_id = $2, claim = $3, heartbeat = now()
		WHERE id = (SELECT id FROM retraced_tasks WHERE status = 'PENDING' ORDER BY created, id LIMIT 1 FOR UPDATE SKIP LOCKED)
		RETURNING id, state, files`, s.o.Node, s.id, c.token).Scan(&c.id, &st, &c.files)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("claim a task: %w", err)
	}
	if err := json.Unmarshal(st, &c.st); err != nil {
		close(c.done)
		c.closed.Do(func() {})
		c.giveBack(fmt.Errorf("its state: %w", err))
		return nil, fmt.Errorf("task %s: %w", c.id, err)
	}
	c.dir = filepath.Join(s.o.Dir, c.id)
	// Beating while the files come down: a large core may take longer
	// than Stale.
	go c.beat()
	if err := c.fetch(ctx); err != nil {
		c.Close()
		if errors.Is(err, fs.ErrNotExist) {
			// A file the store lost: the task cannot run anywhere.
			c.giveBack(fmt.Errorf("its crash directory is not in the object store: %w", err))
		} else {
			c.giveBack(nil)
		}
		return nil, fmt.Errorf("task %s: %w", c.id, err)
	}
	return c, nil
}

// claim is a task this node runs.
type claim struct {
	s     *Store
	id    string
	token int64
	st    retrace.State
	files []string
	dir   string

	mu       sync.Mutex // one write at a time
	logSent  int64      // the log's size when last uploaded
	lost     chan struct{}
	lostOnce sync.Once
	stop     chan struct{}
	done     chan struct{}
	closed   sync.Once
}

// fetch copies the task's files into its local directory.
func (c *claim) fetch(ctx context.Context) error {
	if err := os.RemoveAll(c.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.dir, "crash"), 0o750); err != nil {
		return err
	}
	for _, name := range c.files {
		if err := c.s.getFile(ctx, crashObject(c.id, name), filepath.Join(c.dir, "crash", name)); err != nil {
			return err
		}
	}
	err := c.s.getFile(ctx, fileObject(c.id, retrace.LogFile), c.LogPath())
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // no attempt wrote a log yet
	}
	if fi, serr := os.Stat(c.LogPath()); serr == nil {
		c.logSent = fi.Size()
	}
	return err
}

// giveBack returns a task that could not start: pending again, or
// failed with why.
func (c *claim) giveBack(why error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := c.st
	if why != nil {
		st.Status, st.Finished, st.Error = retrace.StatusFailure, time.Now(), why.Error()
	} else {
		st.Status = retrace.StatusPending
	}
	err := pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		if ok, err := c.own(ctx, tx); err != nil || !ok {
			return err
		}
		return saveState(ctx, tx, c.id, st, false)
	})
	if err != nil {
		c.s.o.Log.Error("taskdb: give a task back", "task", c.id, "err", err)
	}
}

// own locks the claim's row in tx and reports whether it is still the
// claim's.
func (c *claim) own(ctx context.Context, tx pgx.Tx) (bool, error) {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM retraced_tasks WHERE id = $1 AND claim = $2 AND status = 'RUNNING' FOR UPDATE`, c.id, c.token).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

func (c *claim) ID() string            { return c.id }
func (c *claim) State() retrace.State  { return c.st }
func (c *claim) CrashDir() string      { return filepath.Join(c.dir, "crash") }
func (c *claim) LogPath() string       { return filepath.Join(c.dir, "log") }
func (c *claim) Lost() <-chan struct{} { return c.lost }

func (c *claim) setLost() { c.lostOnce.Do(func() { close(c.lost) }) }

// beat proves the claim alive every Beat and uploads the log when it
// grew, until Close; a claim whose row is no longer its is lost.
func (c *claim) beat() {
	defer close(c.done)
	t := time.NewTicker(c.s.o.Beat)
	defer t.Stop()
	for {
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.s.o.Stale)
		ok, err := c.write(ctx, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, `UPDATE retraced_tasks SET heartbeat = now() WHERE id = $1`, c.id)
			return err
		})
		cancel()
		switch {
		case err != nil:
			c.s.o.Log.Warn("taskdb: a running task's heartbeat failed", "task", c.id, "err", err)
		case !ok:
			c.setLost()
			return
		}
	}
}

// write runs fn in a transaction that holds the claim's row, after
// uploading the log if it grew; it reports false when the claim was lost.
func (c *claim) write(ctx context.Context, fn func(pgx.Tx) error) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	owned := false
	err := pgx.BeginFunc(ctx, c.s.pool, func(tx pgx.Tx) error {
		ok, err := c.own(ctx, tx)
		if err != nil || !ok {
			return err
		}
		owned = true
		if fi, err := os.Stat(c.LogPath()); err == nil && fi.Size() != c.logSent {
			// A log that cannot be uploaded now is next time: the claim
			// beats (and the task's outcome is recorded) all the same.
			if err := c.s.putFile(ctx, fileObject(c.id, retrace.LogFile), c.LogPath()); err != nil {
				c.s.o.Log.Warn("taskdb: upload a running task's log", "task", c.id, "err", err)
			} else {
				c.logSent = fi.Size()
			}
		}
		return fn(tx)
	})
	return owned, err
}

// Save implements retrace.Claim.
func (c *claim) Save(ctx context.Context, st retrace.State, backtrace *string) error {
	running := st.Status == retrace.StatusRunning
	ok, err := c.write(ctx, func(tx pgx.Tx) error {
		if backtrace != nil {
			if err := c.s.obj.PutObject(ctx, fileObject(c.id, retrace.BacktraceFile), strings.NewReader(*backtrace), int64(len(*backtrace))); err != nil {
				return fmt.Errorf("save the backtrace: %w", err)
			}
		}
		if err := saveState(ctx, tx, c.id, st, running); err != nil {
			return err
		}
		if st.Status == retrace.StatusPending {
			_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, notifyChannel)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	if !ok {
		c.setLost()
		return retrace.ErrNotFound
	}
	return nil
}

// Close implements retrace.Claim.
func (c *claim) Close() error {
	c.closed.Do(func() {
		close(c.stop)
		<-c.done
	})
	return os.RemoveAll(c.dir)
}
