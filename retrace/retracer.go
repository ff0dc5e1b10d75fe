package retrace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// A Retracer turns a crash directory into a backtrace. The server calls
// it; retraced's is the worker of package retrace/worker.
//
// crashDir holds coredump and whichever of the other [AllowedFiles] the
// client sent; the Retracer must treat them as hostile and must not write
// there. It writes progress lines, each with a timestamp, to log, which is
// served as the task's log while it runs. It returns the backtrace as GDB
// prints it with its rating and what was missing, or an error saying why
// there is no usable backtrace.
//
// Retrace must return soon after ctx ends: ctx carries the task's timeout
// and the server's shutdown. A Retracer that does not is abandoned a short
// while later and its task fails, but its goroutine leaks.
type Retracer interface {
	Retrace(ctx context.Context, crashDir string, log io.Writer) (Result, error)
}

// Result is what a retrace produced. With an error, Backtrace may still
// hold what GDB printed (a backtrace too poor to use): it is kept with
// the task.
type Result struct {
	Backtrace string
	// Rating says how useful Backtrace is, in words, as the task's
	// status shows it after "Backtrace rating: "; nil when the Retracer
	// does not rate.
	Rating fmt.Stringer
	// Missing lists what the mirror lacks for this core, one
	// "PATH BUILDID" each: mapped objects whose build-id no package
	// ships, and dwz multifiles that debug files point at.
	Missing []string
	// Package is the crash package's NEVRA ("" when unknown) and Signal
	// the number of the signal that killed the process (0: none, a live
	// process's core): with the backtrace they make the crash's
	// signature (see Recorder).
	Package string
	Signal  int
	// Stats are what the retrace's duration depends on, for the
	// server's estimate of later tasks' durations.
	Stats RetraceStats
}

// RetraceStats describe one retrace's work: the packages of its sysroot, the
// bytes assembled for it, and whether a cached sysroot was reused.
type RetraceStats struct {
	Packages      int   `json:"packages,omitempty"`
	SysrootBytes  int64 `json:"sysroot_bytes,omitempty"`
	SysrootReused bool  `json:"sysroot_reused,omitempty"`
}

// A Recorder is told of each task that finished FINISHED_SUCCESS with
// the crash package known: the crash reports (package retrace/crashes)
// group them by signature. The server records a task once it is
// finished on disk and marks it recorded after; a task finished and not
// yet marked when the server stopped is recorded again at start, so
// RecordCrashes must be idempotent per TaskID. The server passes one
// crash as a task finishes, and at start all those a stop cut off at
// once, so that a backlog is grouped in one write.
type Recorder interface {
	RecordCrashes(ctx context.Context, cs []FinishedCrash) error
}

// FinishedCrash is what a Recorder is told of a finished task.
type FinishedCrash struct {
	TaskID    string // "" for a retrace that is not a task
	Finished  time.Time
	Package   string // the crash package's NEVRA
	Signal    int
	Backtrace string
}

// ErrUnusable reports a backtrace that says nothing about the crash (no
// frame of the crashing thread has a function name). A Retracer returns
// it, wrapped, with the Result that carries the backtrace: the task
// fails and keeps it.
var ErrUnusable = errors.New("unusable backtrace")

// A PackageChecker answers GET /checkpackage: does the mirror hold the
// package a crash came from?
type PackageChecker interface {
	// HasNVRArch reports whether the package nvr ("name-version-release",
	// possibly with "epoch:" before the version, as ABRT's package file
	// holds it) is known for arch. The handler asks again with "noarch"
	// when arch is not found. An error is a failure of the store, not a
	// miss.
	HasNVRArch(nvr, arch string) (bool, error)
}
