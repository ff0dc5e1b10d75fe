// Package mirror follows package sources (yum repositories, and later
// Koji-style trees) and ingests every version of every RPM they list into
// the index, keeping only what retracing needs of each.
//
// Vocabulary:
//   - source: a repository the mirror follows (Source), with its sync
//     state; persisted in the index as JSON.
//   - sync: one pass over a source (Sync): fetch its metadata, find the
//     packages not yet seen, ingest them in parallel, record the result.
//   - ingest: stream one RPM once — header, then the payload members the
//     keep policy wants — into the blob pool and one index transaction.
//   - policy: which files of a package are kept (Policy).
//   - gpgcheck: a source's rule that only packages signed by one of its
//     OpenPGP keys, with a payload matching the signed header's digest,
//     are indexed (Source.GPGCheck; repodata/repomd.xml.asc with
//     RepoGPGCheck). A refused package is a PackageError like any other.
//   - metalink, mirror list: where a yum source's mirrors are listed
//     (Source.Metalink, Source.Mirrorlist) instead of its one URL. A sync
//     reads the list, takes the metadata from the first mirror that serves
//     it (for a metalink: by preference, and a repomd.xml matching one of
//     the metalink's hashes and sizes), and fails over to the next mirrors
//     for what fails; Result.Mirror and Result.MirrorsFailed say which.
//   - public-only: a source whose downloads may dial public addresses
//     only (Source.PublicOnly; serve sets it on sources added over its API).
//
// Data flows one way: mirror writes the index (index, index/blob), reads
// build-ids with index/elfnote and parses formats with its sub-packages
// yum and rpmfile; nothing in retraced reaches into mirror's internals.
// Of retraced, it may import only index, index/blob, index/elfnote,
// mirror/rpmfile and mirror/yum.
//
// A package is committed to the index only after its blobs are on disk and
// its checksum has been verified, so an interrupted sync leaves at most
// unreferenced blobs, which the next sync reuses and gc collects. A version
// once ingested is never removed by a sync, whatever upstream drops.
package mirror
