// Package worker retraces cores from the mirror: its [Worker] is the
// [retrace.Retracer] that serve gives the task server, and what
// `retraced retrace CORE` runs. A retrace reads the core (its mapped
// objects and their build-ids), resolves them to packages
// (resolver.CoreToPackages, dwz multifiles included, plus the
// -debugsource packages of the same builds), leases a sysroot of those
// packages from the cache (assembling it from the blob pool when no
// retrace built it before), runs GDB on it in a sandbox, and rates what
// GDB printed ([RateBacktrace]): a backtrace with no named frame in the
// crashing thread fails the task ([retrace.ErrUnusable]).
//
// # Vocabulary
//
//   - The crash package owns the crashing executable; the package set is
//     the binary, -debuginfo and -debugsource packages a core needs.
//   - A sysroot is a directory laid out like the crashed system's root,
//     holding every file the mirror kept of one package set; it is
//     planned, assembled of hard links into the blob pool and cached by
//     its key, the hash of the package set. A lease holds one for a
//     retrace.
//   - The sandbox confines GDB: its own process group,
//     user, network namespace and limits; a run directory holds its copy
//     of the core.
//   - A [Rating] says how useful a backtrace is, as ABRT rates one.
//
// The Worker owns its sysroot directory (a lock file says so) and is a
// gc owner of the sysroots there: serve registers it with gc
// beside the task server; `retraced gc` without a server uses [Sysroots].
//
// # Imports
//
// worker may import the standard library, golang.org/x/sys/unix, retrace
// (the Retracer contract: Result, ErrUnusable), index and index/blob (the
// index and the blob pool, through the small interfaces [Index] and
// [BlobSource]), resolver and resolver/corefile (the core reader and
// CoreToPackages) and gc (the Owner interface). It never reaches into the
// mirror, web or cmd; nothing but cmd imports it.
package worker
