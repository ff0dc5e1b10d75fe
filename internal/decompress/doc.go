// Package decompress is retraced's one door for compressed bytes from the
// network: RPM payloads, repository metadata, uploaded cores and crash
// archives. It detects the format by magic bytes (gzip, xz, zstd, bzip2;
// lzma, which has none, only when the caller names it), decodes it, and
// bounds what the decoder may allocate and produce.
//
// It owns no data and no vocabulary of retraced's: it is a library that
// mirror/rpmfile, mirror/yum, resolver and retrace share, which is why it
// lives under internal/ rather than inside one of them (none of those
// may reach into another's internals). It imports the standard library and
// the decoders (klauspost/compress, ulikunitz/xz) only: of retraced, it may
// import nothing.
//
// # Errors
//
// Malformed data is a [*FormatError] (matching [ErrFormat]) naming the
// format and, where known, the byte offset in the compressed stream. A
// stream over a limit is a [*LimitError] (matching [ErrTooLarge]) that
// says which limit, what the stream asked for and where, so that an HTTP
// handler can answer 413 with "xz block at byte 24 needs a 4095 MiB
// dictionary, more than the 64 MiB allowed" rather than "malformed".
// Errors of the underlying reader are passed on (wrapped in a
// *FormatError when a decoder passed them on).
//
// # Security
//
// Every stream is hostile. The xz and lzma decoders allocate the
// dictionary a header asks for (up to 4 GiB) before they decode a byte,
// and zstd its window. The Go LZMA2 decoder does not check that a
// chunk's data ends where its header says, so hostile data can make it
// read bytes inside a chunk as the next block header: xz read by Go is
// therefore framed here (streams, blocks, index, padding, checks, all
// verified), each block's decoder reads only that block's LZMA2 chunks,
// with the dictionary of a header checked against [Config.MaxDict], and
// must end exactly where they do. An [Config.XZDecoder] (liblzma, an xz
// process, both strict about chunk sizes) reads through a guard that
// follows the same structure between the source and the decoder and
// refuses a dictionary over the limit before the decoder sees the block.
// The lzma header is checked the same way, and zstd frames against
// [Config.MaxWindow].
// The first header is checked when the stream is opened. The output is
// bounded by [Config.MaxOutput]. Nothing is held in memory beyond the
// decoder's window and a 64 KiB buffer. NewReader is fuzzed
// (FuzzNewReader) from the seeds in testdata.
package decompress
