// Package retrace serves the Retrace Server task protocol that ABRT's
// abrt-retrace-client speaks: a crash reporter uploads a crash directory,
// gets a task id and password back, polls the task's status and fetches
// its backtrace or log. It owns the tasks on disk, the queue and the pool
// of workers that run them; the retracing itself (assembling a sysroot
// from the mirror and running GDB) is a [Retracer] that the caller passes
// in: serve passes the Worker of package retrace/worker.
//
// # Vocabulary
//
//   - A crash directory is ABRT's layout of a crash, flat, one file per
//     item: coredump (required), executable, package, os_release, and the
//     few other names Retrace Server allows ([AllowedFiles]).
//   - A task is one uploaded crash directory and what became of it: its
//     id (decimal digits), its password, its status (PENDING,
//     FINISHED_SUCCESS, FINISHED_FAILURE), its log and, on success, its
//     backtrace.
//   - The password is 32 characters of [0-9A-Za-z] drawn from crypto/rand,
//     shown to the client once in X-Task-Password; the server keeps only a
//     salted SHA-256 of it and compares in constant time.
//   - A worker is one of the MaxRunningTasks goroutines of [Server.Run]; it
//     takes the oldest pending task and calls the Retracer with the task's
//     wall-clock timeout. (retrace/worker's Worker is the Retracer they
//     share.)
//   - A result ([Result]) is what a Retracer returns: the backtrace, its
//     rating in words and what the mirror lacked, the crash package and
//     the signal, and the retrace's statistics ([RetraceStats]); with
//     [ErrUnusable] the task fails and keeps the backtrace.
//   - A recorder ([Recorder], Config.Recorder) is told of each task that
//     succeeded, once, also across restarts (task.json says "recorded"):
//     serve's is the crash store of retrace/crashes.
//   - The estimate ([Estimate]) of an unfinished task's duration comes
//     from the statistics of the last successful tasks (estimate.go) and
//     is said in its status body.
//
// # On disk
//
// [New] is given a directory that it owns; each task lives in DIR/ID/:
//
//	crash/      the unpacked crash directory (only AllowedFiles names)
//	password    "sha256 SALT HASH", hex
//	task.json   status and timestamps; when finished, the rating, what
//	            was missing, the crash package, the signal, the retrace's
//	            statistics and whether the recorder has it
//	log         what the worker wrote, appended as it runs
//	backtrace   written once, on success
//
// password, task.json and backtrace are written atomically (temporary file
// in the same directory, fsync, rename). A task exists once its task.json
// does: a directory without one is an upload that did not finish, and [New]
// removes it. Tasks found pending or running are queued again, so a task
// accepted before a restart finishes after it.
//
// # Shared by several nodes
//
// [NewShared] serves tasks that a [SharedStore] keeps where every node
// sees them (retrace/taskdb: rows in PostgreSQL, files in an object
// store; serve uses it when [storage] puts the index in PostgreSQL and
// the blobs in S3). The protocol, the limits, the unpacking and the
// passwords are the same code as for a directory; the store keeps the
// queue: a worker claims a task (taskdb: FOR UPDATE SKIP LOCKED) and gets
// a [Claim], a local copy of the crash directory and log, whose Save
// records each state with the log and, at the end, the backtrace. The
// upload is unpacked into a local spool directory, checked, then handed
// to the store's Create, which copies it; a key (X-Task-Key) is unique
// in the store, so a repeated create finds its task on any node. A Claim
// that the store takes away (the task was deleted on another node, or
// this node was taken for dead and the task claimed again) is lost: its
// retrace stops and its writes are refused. MaxQueuedTasks bounds the
// unfinished tasks of every node together; Stats' Running counts this
// node's workers.
//
// # Security
//
// Uploads are hostile. The body is streamed, never held in memory, through
// retraced's one bounded decompressor (internal/decompress) into
// archive/tar; the packed size, the unpacked size, the number of members
// and each file's size are bounded while streaming, so a decompression
// bomb fails at the limit, not after it is written. Only regular files
// with allowed names are written, with O_EXCL, into the task's own
// directory: links, directories other than ".", device files, absolute
// names, "..", duplicates and unknown names are refused. An xz stream any
// of whose blocks would need a dictionary of more than [MaxXZDict] bytes
// is refused (413) before the decoder allocates it.
//
// # Imports
//
// Of retraced, retrace may import only internal/decompress,
// internal/httpbound, gc/plan and gc/diskspace: the bounded decompressor,
// an upload's minimum rate, the Owner interface that [Server] and [Tasks]
// implement for expired tasks, and the free-space policy an upload is
// checked against ([Config].Space); besides, the standard library and
// gin. Those four import no other retraced package, so nothing of the
// index (nor Badger, nor pgx), the blob pool, the resolver, the mirror or
// retrace/worker is built into it, not even indirectly
// (internal/depcheck's TestTaskProtocolReachesNoStorage). Package checks go through [PackageChecker] and
// retracing through [Retracer], both declared here. Old tasks go when the
// caller calls [Server.Expire] (serve's scheduler does, hourly) or gc
// plans them; [Server.Run] runs only the workers. What a Retracer keeps
// (retrace/worker's sysroots) it gives to gc itself, as an owner of its
// own.
package retrace
