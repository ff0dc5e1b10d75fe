// Package resolver answers "which package has build-id X?" and "which
// packages does this core need?", and serves debuggers: the JSON API under
// /api/v1 (lookups, batches, coredump2packages) and the debuginfod protocol
// under /buildid (executables, debuginfo, sources and sections, served from
// the stored files, never from RPMs).
//
// Vocabulary: a lookup resolves one build-id to its matches; a batch
// resolves many; an id not in the index is unresolved; a core's objects
// are its mapped files with their build-ids (sub-package corefile reads
// them).
//
// It reads the index and the blob pool through small interfaces declared
// here and never reaches into the mirror: of retraced, it may import only
// gc/diskspace, index, index/blob, index/elfnote, internal/decompress,
// internal/httpbound and resolver/corefile. (Upstream debuginfod servers,
// asked for what the index lacks, come in through the Upstream interface;
// resolver/federate is its client.) Input is hostile: uploaded cores
// are decompressed through internal/decompress (bounded dictionary,
// window and size), spooled with zeros as holes under the data
// directory's free-space policy (gc/diskspace: 507 below it) and at most
// Config.MaxSpools at once (503 beyond), and stored ELF files are opened
// with elfnote.NewFile, never with debug/elf directly.
//
// coredump2packages' answer, a [Report], names packages as index.NEVRA
// values, which the retrace worker uses as they are; its JSON and text
// forms (report.go) are the strings SPEC fixes.
// Besides, it imports the standard library, gin and
// golang.org/x/sync/singleflight; never the mirror, retrace or web.
package resolver
