// Package crashes turns the stream of retraced crashes into crash
// reports: it computes each finished task's crash signature, keeps per
// signature when it was first and last seen, how often per day (and per
// hour for the last two days), in which package versions, its last task
// ids and one example backtrace, and serves the reports (/crashes,
// /crashes/{signature}, /api/v1/crashes, /api/v1/crashes/{signature}).
//
// # Vocabulary
//
//   - A signature ([Signature], signature.go) names one crash: the crash
//     package's name (not its version), the signal, and the first
//     [FramesInSignature] named frames of the crashing thread after the
//     abort and signal frames of [SkipFrames], normalised ([Normalize]).
//     Its ID, 32 hex digits, names it in URLs.
//   - A crash ([Crash]) is one finished retrace: a task id (none for
//     `retraced retrace` without a server), when, the crash package's
//     NEVRA, the signal and the backtrace.
//   - An entry ([Entry]) is what the store keeps of a signature.
//   - A window is the span a report covers: 24h, 7d or 30d.
//
// # Store
//
// [Store] keeps every entry in memory (reports read only memory) and
// writes each change through a [Backend] before it answers: [OpenBadger]
// is a Badger database of its own (DATA/crashes beside DATA/index); a
// PostgreSQL backend is left for later. Recording is idempotent per task
// id, so the task server can record a task again after a restart that
// cut it off. The store is a gc owner of its entries: those last seen
// before the retention go, and per-day counts older than it.
//
// # Security
//
// Backtraces are hostile text: GDB prints what the core holds. Function
// names are cleaned and bounded ([MaxFunctionLen]), the example
// backtrace is bounded ([MaxExample]), the number of signatures is
// bounded (Options.MaxSignatures: the least recently seen goes), versions
// and task ids per entry are bounded; pages escape everything with
// html/template and the charts are drawn from numbers only.
//
// # Imports
//
// Of retraced, crashes may import only index, retrace and gc: NEVRA
// (rpm's version order for "gone"), the task server's Recorder contract
// that [Store] implements, and the gc Owner interface; besides, the
// standard library, Badger and gin.
package crashes
