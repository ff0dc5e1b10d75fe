// Package worker retraces cores from the mirror: its [Worker] is the
// [retrace.Retracer] that serve gives the task server, and what
// `retraced retrace CORE` runs.
//
// A retrace goes in named steps (retrace.go, Worker.retrace): read the
// core (its mapped objects and their build-ids), resolve them to packages
// (resolver.CoreToPackages, dwz multifiles included), choose the package
// set (the crash package must be in the mirror; the -debugsource
// packages of the same builds join), lease a sysroot of it from the
// cache (assembled from the blob pool when no retrace built it before),
// run GDB on it in a sandbox (gdb.go), and rate what GDB printed
// ([RateBacktrace]): a backtrace with no named frame in the crashing
// thread fails the task ([retrace.ErrUnusable]).
//
// # Vocabulary
//
//   - The crash package owns the crashing executable; the package set is
//     the binary, -debuginfo and -debugsource packages a core needs
//     (packages.go).
//   - A sysroot is a directory laid out like the crashed system's root,
//     holding every file the mirror kept of one package set (sysroot.go).
//     It is planned (sysroot_plan.go), assembled of hard links into the
//     blob pool (sysroot_assemble.go) and cached under its key, the hash
//     of the package set (sysroot_cache.go); a lease holds one for a
//     retrace.
//   - The sandbox confines GDB (sandbox.go): its own process group, user,
//     network namespace and limits; a run directory holds its copy of the
//     core.
//   - The step log is a retrace's log (steplog.go): timestamped lines that
//     name the crash directory and the sysroots by role, not by path.
//   - A [Rating] says how useful a backtrace is, as ABRT rates one
//     (rating.go; satyr's normalisation in rating_normalize.go).
//
// The Worker owns its sysroot directory (a lock file says so) and is the
// gc owner of the sysroots there (gc.go): serve registers it with gc
// beside the task server; `retraced gc` without a server uses [Sysroots].
//
// # Imports
//
// Of retraced, worker may import only retrace, index, index/blob,
// resolver, resolver/corefile and gc: the Retracer contract (Result,
// ErrUnusable), the index and the blob pool (through the small
// interfaces [Index] and [BlobSource]), the core reader and
// CoreToPackages, and the Owner interface; besides, the standard library
// and golang.org/x/sys/unix. It never reaches into the
// mirror, web or cmd; nothing but cmd imports it.
package worker
