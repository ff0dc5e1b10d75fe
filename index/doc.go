// Package index owns retraced's catalogue: which packages the mirror holds,
// which files each ships, and which ELF build-ids those files carry.
//
// Vocabulary:
//   - build-id: the GNU build-id note of an ELF object (BuildID), 1 to 64
//     bytes, written as lowercase hex.
//   - NEVRA: a package's name, epoch, version, release and architecture
//     (NEVRA), ordered with rpm's own version comparison.
//   - package: one RPM the mirror ingested (Package), with the files it ships
//     that retracing needs (File).
//   - match: one file that carries a given build-id (Match); one build-id may
//     match several packages (identical rebuilds).
//   - source: a repository the mirror follows; index stores the mirror's
//     record of it as opaque bytes and which packages it has seen.
//   - blob: the content of a file, stored once by its digest in sub-package
//     blob; index records only digests.
//
// Everything persistent sits behind Store in one ordered key-value
// store, sub-package kv: Badger embedded, or PostgreSQL shared by several
// nodes; keys are built and parsed in keys.go only. Of retraced, index may
// import only index/blob, index/elfnote and index/kv: its own
// sub-packages. mirror writes into
// it; resolver, retrace, gc and web read it.
package index
