// Package rpmfile reads RPM packages as a stream: the header (identity and
// file list) and then the payload, decompressed and walked once as cpio,
// member by member, stopping as soon as the caller has what it wants.
//
// Vocabulary: a package's header lists its files (Entry) in payload order
// with sizes, modes, link targets and libmagic classes (FILECLASS); the
// payload is a cpio archive (Member) compressed with gzip, xz, zstd, bzip2
// or lzma. A signed package carries, in its signature header, OpenPGP
// signatures of its main header (Header.VerifySignature checks them
// against a Keyring); the header's payload digest then binds the payload
// to them.
//
// Of retraced, it may import only internal/decompress. That package
// detects and decodes the payload's compression (the xz decoder may be
// liblzma or an xz process, see Options).
//
// # Security
//
// RPMs come from the network. Header tag arrays are cross-checked for
// length before use; cpio member names are normalised and a member whose
// path is absolute after the leading "./", or climbs out with "..", is a
// *FormatError; member sizes are bounded by MaxMemberSize; decompressor
// dictionaries and windows are bounded by MaxWindow, every xz block's
// before whichever decoder reads it allocates it. Callers should still
// recover from panics per package.
package rpmfile
