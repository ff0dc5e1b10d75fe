// Package yum parses yum (rpm-md) repository metadata: repomd.xml and the
// primary.xml it points to, compressed with gzip, xz, zstd or bzip2; and
// the documents that say where a repository's mirrors are: MirrorManager's
// metalinks (ParseMetalink: the mirrors of repomd.xml by preference, and the
// hashes of the repomd.xml versions they may serve) and plain mirror lists
// (ParseMirrorlist).
//
// It only parses; fetching and verifying bytes is the mirror's job. Of
// retraced, it may import only internal/decompress.
//
// # Security
//
// Metadata comes from the network. Parsing is streaming (a primary.xml of
// any size is decoded one <package> at a time), every element is bounded by
// the caller's reader limits, and malformed XML is an error naming the
// byte offset where decoding stopped. Decompression goes through
// internal/decompress: the output is bounded by the caller, and a stream
// asking for a larger xz dictionary or zstd window than its defaults is
// refused before the decoder allocates it.
package yum
