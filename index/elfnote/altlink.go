package elfnote

import (
	"bytes"
	"debug/elf"
	"io"
)

// MaxAltLinkBytes bounds the .gnu_debugaltlink section read: a file name
// (a path, at most PATH_MAX in practice) and a build-id.
const MaxAltLinkBytes = 4096 + MaxBuildIDBytes

// An AltLink is what a debug file processed by dwz says, in its
// .gnu_debugaltlink section, about the supplementary file ("multifile")
// holding the debug information it shares with the other files of its
// build: the multifile's name (relative to the debug file's directory or
// absolute; Fedora's find-debuginfo writes
// "../../.dwz/NAME-VERSION-RELEASE.ARCH"-like paths) and its build-id.
// A debugger that cannot find the multifile drops every symbol of the
// file that points at it.
type AltLink struct {
	Name    string
	BuildID []byte
}

// DebugAltLink returns the .gnu_debugaltlink reference of the ELF file in
// r, or nil when the file has no such section. The section's layout, as
// dwz writes it and GDB and elfutils read it, is the file name, a NUL,
// then the build-id to the end of the section (1 to MaxBuildIDBytes
// bytes). A section that does not fit that, is compressed, or lies past
// the end of the file is a *FormatError at the section's offset; the rest
// is as for [BuildID]: ErrNotELF, a *FormatError for malformed headers, and
// a bounded read (MaxAltLinkBytes of the section).
func DebugAltLink(r io.ReaderAt) (*AltLink, error) {
	f, err := NewFile(r)
	if err != nil {
		return nil, err
	}
	return debugAltLink(r, f)
}

// DebugFile returns the build-id and the .gnu_debugaltlink reference of a
// separate debug file in one parse of its headers: BuildID and
// DebugAltLink together, for the mirror's ingest, which reads both of
// every .debug file. A file without a build-id is ErrNoBuildID and its
// altlink is not read.
func DebugFile(r io.ReaderAt) (id []byte, alt *AltLink, err error) {
	f, err := NewFile(r)
	if err != nil {
		return nil, nil, err
	}
	if id, err = buildID(r, f); err != nil {
		return nil, nil, err
	}
	if alt, err = debugAltLink(r, f); err != nil {
		return nil, nil, err
	}
	return id, alt, nil
}

func debugAltLink(r io.ReaderAt, f *elf.File) (*AltLink, error) {
	sec := f.Section(".gnu_debugaltlink")
	if sec == nil || sec.Type == elf.SHT_NOBITS {
		return nil, nil
	}
	off := int64(sec.Offset)
	switch {
	case sec.Flags&elf.SHF_COMPRESSED != 0:
		return nil, formatErr(off, ".gnu_debugaltlink is compressed")
	case sec.Size < 2 || sec.Size > MaxAltLinkBytes:
		return nil, formatErr(off, ".gnu_debugaltlink of %d bytes, want 2 to %d", sec.Size, MaxAltLinkBytes)
	}
	b := make([]byte, sec.Size)
	if n, err := r.ReadAt(b, off); n < len(b) {
		if err == nil || isEOF(err) {
			return nil, formatErr(off, ".gnu_debugaltlink of %d bytes runs past the end of the file", sec.Size)
		}
		return nil, err
	}
	name, id, ok := bytes.Cut(b, []byte{0})
	switch {
	case !ok:
		return nil, formatErr(off, ".gnu_debugaltlink has no NUL after its file name")
	case len(name) == 0:
		return nil, formatErr(off, ".gnu_debugaltlink names no file")
	case len(id) == 0 || len(id) > MaxBuildIDBytes:
		return nil, formatErr(off+int64(len(name))+1, ".gnu_debugaltlink build-id of %d bytes, want 1 to %d", len(id), MaxBuildIDBytes)
	case allZero(id):
		return nil, formatErr(off+int64(len(name))+1, ".gnu_debugaltlink build-id is all zeros")
	}
	return &AltLink{Name: string(name), BuildID: bytes.Clone(id)}, nil
}
