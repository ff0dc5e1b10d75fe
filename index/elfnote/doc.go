// Package elfnote reads ELF notes and, from them, GNU build-ids.
//
// It owns one job: given the bytes of an ELF file that came from the
// network — an executable, a shared library, a separate debug file made by
// find-debuginfo, eu-strip -f or objcopy --only-keep-debug, or a core file —
// say which build-id, if any, the file carries, and open it for
// debug/elf only once its headers are checked. It imports only the
// standard library: of retraced, it may import nothing. The mirror (for
// the index), the resolver and its core reader call it.
//
// # Vocabulary
//
// A note is one record of an ELF note blob: a 12-byte header (namesz,
// descsz, type, each a 4-byte word in the file's byte order), the owner
// name (namesz bytes, NUL-terminated) and the descriptor (descsz bytes),
// each padded to the blob's alignment (4, or 8 for some 64-bit
// segments). Note blobs live in SHT_NOTE sections and in PT_NOTE program
// segments; in a separate debug file most sections are SHT_NOBITS but the
// note sections are kept.
//
// A build-id is the descriptor of the note whose owner is "GNU" (namesz 4,
// "GNU\0", exactly as libdwfl wants it) and whose type is NT_GNU_BUILD_ID
// (3): 1 to [MaxBuildIDBytes] bytes, usually 20 (sha1), written by the
// linker's --build-id option. The same id is in the binary and in its
// separate debug file, which is how the two are paired. Core files carry
// notes too (owner "CORE", "LINUX"), but not a build-id of their own.
//
// [BuildID] and [Open] look in the .note.gnu.build-id section first, then
// in the other SHT_NOTE sections, and in the PT_NOTE segments only when the
// file has no section headers, as elfutils does; they return the first
// well-formed build-id they find, so the ids agree with what debuginfod
// clients compute. [ParseNotes] parses one note blob already in memory,
// with the rules binutils and elfutils apply, and [BlobBuildID] finds the
// build-id in one under the same rule as BuildID (the resolver's core
// reader applies it to objects in a core's memory).
//
// [NewFile] is the one way retraced hands a file from the network to
// debug/elf: the checks below, then elf.NewFile with its panics turned
// into errors. [ParseIdent] checks the identification alone, for readers
// that parse ELF structures themselves.
//
// # Errors
//
// [ErrNotELF] means the input does not start with the ELF magic;
// [ErrNoBuildID] means it is a readable ELF file without a build-id. A
// malformed file yields a [*FormatError] whose Off is the byte offset, in
// the file (or the blob's base), of the field that is wrong. Any other
// error is a failure of the underlying reader.
//
// # Security
//
// The input is hostile. Every size read from the file is checked against
// the file before anything is allocated for it, so a short file claiming
// large tables costs nothing. No more than [MaxNoteBytes] of one note
// section or segment and no more than [MaxScanBytes] of notes in all are
// read. Before debug/elf sees the file, its header is checked so that what
// debug/elf reads whole stays small and present: a section count above
// [MaxSections], program or section header tables over 8 MiB, a
// section-name table over 4 MiB, tables past the end of the file, a
// compressed section-name table (a decompression bomb inside debug/elf)
// and, under extended numbering, a section-name table index past the
// sections (which makes debug/elf in Go 1.26 index out of range) are
// refused. What debug/elf then allocates is a small multiple of the
// section header table.
//
// No function of this package panics on any input: a panic inside
// debug/elf is recovered and reported as a [*FormatError], and the parsers
// are fuzzed (FuzzBuildID, FuzzNewFile, FuzzParseNotes) from the seeds in
// testdata.
// Descriptors returned by [ParseNotes] alias its input; the build-id
// returned by [BuildID] is a fresh copy.
package elfnote
