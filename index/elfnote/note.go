package elfnote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits on what is read from one input. They bound memory and time for
// hostile files and are far above what real toolchains produce.
const (
	// MaxNoteBytes is the most read from one note section or segment. A
	// larger one (a core file's PT_NOTE can be) is read only this far, and
	// a note cut by the limit ends the blob without an error.
	MaxNoteBytes = 1 << 20

	// MaxScanBytes is the most note data one BuildID call reads in all.
	MaxScanBytes = 4 << 20

	// MaxBuildIDBytes is the longest build-id accepted. The GNU linker
	// writes 16 (md5, uuid) or 20 (sha1) bytes; --build-id=0xHEX can write
	// any length, and longer ones are refused as malformed.
	MaxBuildIDBytes = 64

	// MaxSections is the most section headers a file may declare through
	// ELF extended section numbering (e_shnum 0, count in section 0).
	MaxSections = 1 << 17
)

const (
	noteHeaderSize = 12 // namesz, descsz, type

	ntGNUBuildID = 3         // NT_GNU_BUILD_ID, owner "GNU"
	ownerGNU     = "GNU\x00" // the owner name with its NUL: namesz 4
)

// A Note is one ELF note.
type Note struct {
	Name string // owner, up to its first NUL: "GNU", "CORE", "LINUX", "Go", ...
	Type uint32 // meaning depends on Name: NT_GNU_BUILD_ID is 3 for "GNU"
	Desc []byte // descriptor; aliases the blob given to ParseNotes
	Off  int64  // offset of the note's header: base plus its place in the blob
}

// A FormatError reports malformed ELF or note data and where it is.
type FormatError struct {
	Off int64  // byte offset of the offending field in the file (or blob base)
	Msg string // what is wrong
	Err error  // underlying error, if any (an *elf.FormatError, io.ErrUnexpectedEOF)
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("elfnote: %s at byte %#x", e.Msg, e.Off)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off int64, format string, args ...any) *FormatError {
	return &FormatError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

// ParseNotes parses a note blob: the contents of an SHT_NOTE section or a
// PT_NOTE segment. order is the file's byte order; align is the section's
// sh_addralign or the segment's p_align (0, 1, 2 and 4 mean 4-byte padding,
// 8 means 8-byte padding, anything else is an error, as in binutils);
// base is the blob's offset in the file and is added to every offset
// reported.
//
// Each note must fit with its padding, as binutils and elfutils require;
// trailing bytes too short for a note header are accepted when they are
// zero. On malformed data ParseNotes returns the notes before the
// bad one together with a *FormatError. The Desc of each note aliases data.
func ParseNotes(data []byte, order binary.ByteOrder, align uint64, base int64) ([]Note, error) {
	var notes []Note
	err := walkNotes(data, order, align, base, false, func(n noteRec) bool {
		notes = append(notes, Note{Name: cString(n.name), Type: n.typ, Desc: n.desc, Off: n.off})
		return true
	})
	return notes, err
}

// BlobBuildID returns a copy of the first GNU build-id in a note blob
// (order, align and base as for ParseNotes), under the rule BuildID
// applies to files, as libdwfl applies it: the descriptor of a note of
// type NT_GNU_BUILD_ID whose owner is exactly "GNU\0" (namesz 4), of 1 to
// MaxBuildIDBytes bytes; a build-id note of another length is passed
// over. A malformed note ends the search, as in libdwfl. It returns
// ErrNoBuildID when the blob has no build-id, or a *FormatError when it
// has none and a note was malformed or a build-id of the wrong length.
func BlobBuildID(data []byte, order binary.ByteOrder, align uint64, base int64) ([]byte, error) {
	id, bad := blobBuildID(data, order, align, base, false)
	switch {
	case id != nil:
		return id, nil
	case bad != nil:
		return nil, bad
	}
	return nil, ErrNoBuildID
}

// blobBuildID is BlobBuildID for a blob that is a prefix of a longer one
// when cut (see walkNotes). bad is the first fault met: a build-id note of
// the wrong length, or the malformed note that ended the walk.
func blobBuildID(data []byte, order binary.ByteOrder, align uint64, base int64, cut bool) (id []byte, bad *FormatError) {
	err := walkNotes(data, order, align, base, cut, func(nt noteRec) bool {
		// As libdwfl, which debuginfod indexes with, the name must be
		// exactly "GNU\0" (namesz 4); readelf also shows namesz 3.
		if nt.typ != ntGNUBuildID || string(nt.name) != ownerGNU {
			return true
		}
		if len(nt.desc) == 0 || len(nt.desc) > MaxBuildIDBytes {
			if bad == nil {
				bad = formatErr(nt.off+4, "build-id of %d bytes is not 1 to %d bytes", len(nt.desc), MaxBuildIDBytes)
			}
			return true
		}
		id = bytes.Clone(nt.desc)
		return false
	})
	var fe *FormatError
	if id == nil && bad == nil && errors.As(err, &fe) {
		bad = fe
	}
	return id, bad
}

// A noteRec is a note as walkNotes finds it, its name still bytes.
type noteRec struct {
	name []byte // namesz bytes, NUL included
	typ  uint32
	desc []byte
	off  int64
}

// walkNotes calls yield for each note of the blob until yield returns
// false, and returns the *FormatError that ended the walk, if any. cut says
// data is a prefix of a longer blob, so a note running past its end ends the
// walk instead of being an error. Names and descriptors alias data.
func walkNotes(data []byte, order binary.ByteOrder, align uint64, base int64, cut bool, yield func(noteRec) bool) error {
	var pad uint64
	switch align {
	case 0, 1, 2, 4:
		pad = 4
	case 8:
		pad = 8
	default:
		return formatErr(base, "note alignment %d is not 4 or 8", align)
	}
	if order == nil {
		return formatErr(base, "no byte order")
	}

	size := uint64(len(data))
	for off := uint64(0); off < size; {
		if size-off < noteHeaderSize {
			if cut || allZero(data[off:]) {
				break
			}
			return formatErr(base+int64(off), "%d bytes left, too few for a note header", size-off)
		}
		namesz := uint64(order.Uint32(data[off:]))
		descsz := uint64(order.Uint32(data[off+4:]))
		typ := order.Uint32(data[off+8:])

		// Like binutils and elfutils, require the name and the descriptor
		// to fit with their padding, even at the end of the blob. All this
		// arithmetic is on uint64 with operands below 2^34: no overflow.
		nameOff := off + noteHeaderSize
		descOff := alignUp(nameOff+namesz, pad)
		if descOff > size {
			if cut {
				break
			}
			return formatErr(base+int64(off), "note name size %d (%d padded) exceeds the %d bytes left", namesz, descOff-nameOff, size-nameOff)
		}
		descEnd := descOff + descsz
		next := alignUp(descEnd, pad)
		if next > size {
			if cut {
				break
			}
			return formatErr(base+int64(off)+4, "note descriptor size %d (%d padded) exceeds the %d bytes left", descsz, next-descOff, size-descOff)
		}
		n := noteRec{
			name: data[nameOff : nameOff+namesz : nameOff+namesz],
			typ:  typ,
			desc: data[descOff:descEnd:descEnd],
			off:  base + int64(off),
		}
		if !yield(n) {
			break
		}
		off = next
	}
	return nil
}

func alignUp(n, a uint64) uint64 { return (n + a - 1) &^ (a - 1) }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// cString returns b up to its first NUL, the owner name as readelf shows
// it.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}
