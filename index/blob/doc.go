// Package blob is retraced's content-addressed file pool: each distinct file
// the mirror keeps is stored once, named by the SHA-256 of its uncompressed
// content, compressed: S2 when a sync writes it fast, zstd once compacted,
// or, once compacted, as a delta on an older version of the same file (a
// whole blob: never a delta on a delta; see README.md).
//
// Layout under the pool directory (see README.md beside this file):
//
//	sha256/ab/abcdef...   the file's content as one zstd frame, S2 stream or delta
//	plain/ab/abcdef...    an uncompressed copy (a cache; see Plain)
//	tmp/                  files being written; never referenced
//
// A blob is written to tmp/, fsynced and renamed into place, so a blob that
// exists is whole. The pool does not know who references a blob: the index
// does, and gc asks the pool to delete what the index no longer names. The
// pool plans the cleanup of its own plain/ and tmp/ (PlanPlain,
// StaleTemps), so that gc need not know this layout. Of retraced, it may
// import nothing.
//
// # Security
//
// Digests are parsed and validated before they become paths; a corrupt blob
// (truncated frame, wrong content, a delta whose base is damaged) is
// reported as ErrCorrupt when read: every read checks the content's digest.
package blob
