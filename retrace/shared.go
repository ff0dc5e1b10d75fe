package retrace

import (
	"context"
	"io"
	"time"
)

// A SharedStore keeps the tasks where several servers (nodes) see them
// all: every node answers the protocol for every task and any node's
// workers run any task. retrace/taskdb is the one retraced has
// (PostgreSQL rows, the files in an object store); [NewShared] serves
// from one. The server does what does not depend on where the tasks
// live: the protocol, the upload's limits and unpacking (into a local
// spool directory), the passwords, the workers and the Retracer calls.
//
// Errors other than those named are failures of the store: the protocol
// answers them with 500.
type SharedStore interface {
	// Create makes a pending task of the crash directory crashDir
	// (unpacked and checked by the server, local; the store copies it
	// and the server removes it afterwards) with the stored password
	// pw (what the server verifies passwords against) and the key's
	// hash kh ("" for none). A task another create made with kh first
	// is a *DuplicateError naming it, and no new task is made. A task
	// exists once Create returns: a create cut off before leaves no
	// task (its leftovers are the store's to remove).
	Create(ctx context.Context, crashDir string, pw []byte, kh string, created time.Time) (id string, err error)
	// Keyed returns the task made with key hash kh, or "".
	Keyed(ctx context.Context, kh string) (string, error)
	// Get returns a task's state and stored password, or ErrNotFound.
	Get(ctx context.Context, id string) (State, []byte, error)
	// Position returns how many pending tasks are ahead of task id.
	Position(ctx context.Context, id string) (int, error)
	// Unfinished counts the pending and the running tasks of every node.
	Unfinished(ctx context.Context) (pending, running int, err error)
	// Recent lists the running tasks, the pending ones in queue order and
	// the n most recently finished, as [Server.Recent].
	Recent(ctx context.Context, n int) ([]TaskInfo, error)
	// Claim waits for a pending task, takes it for this node and returns
	// it, its files copied to a local directory; it returns ctx's error
	// when ctx ends first.
	Claim(ctx context.Context) (Claim, error)
	// Remove deletes a task and its files, or returns ErrNotFound. A
	// node that runs it sees its Claim lost.
	Remove(ctx context.Context, id string) error
	// Open returns a reader of a task's file (LogFile or BacktraceFile)
	// and its size, or an error matching fs.ErrNotExist.
	Open(ctx context.Context, id, name string) (io.ReadCloser, int64, error)
	// Expired lists the finished tasks that finished before cutoff, and
	// the failed ones that finished before failedCutoff.
	Expired(ctx context.Context, cutoff, failedCutoff time.Time) ([]ExpiredTask, error)
}

// ExpiredTask is a task past its retention, with what its files take.
type ExpiredTask struct {
	ID    string
	Bytes int64
}

// The names of a task's files as [SharedStore.Open] takes them.
const (
	LogFile       = logFile
	BacktraceFile = backtraceFile
)

// A Claim is a task one node's worker has taken from a [SharedStore].
type Claim interface {
	ID() string
	// State is the task's state when it was claimed: pending, with the
	// attempts of the retraces that nodes which died had started.
	State() State
	// CrashDir is the local copy of the task's crash directory.
	CrashDir() string
	// LogPath is the task's log as a local file, holding what earlier
	// attempts wrote; the server appends to it, and the store makes it
	// the task's log (every so often while it runs, and at Save).
	LogPath() string
	// Save records st (and the backtrace, when not nil) as the task's
	// state, with the log as it is now. A st that is not running gives
	// the task up: finished, or pending for another worker. It fails
	// with ErrNotFound when the claim was lost.
	Save(ctx context.Context, st State, backtrace *string) error
	// Lost is closed when the task is no longer this claim's: deleted,
	// or claimed again after this node was taken for dead.
	Lost() <-chan struct{}
	// Close removes the local copies and stops proving the claim alive.
	Close() error
}
