package elfnote

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

var (
	// ErrNotELF is returned for input that does not start with the ELF magic,
	// including input shorter than the magic.
	ErrNotELF = errors.New("elfnote: not an ELF file")

	// ErrNoBuildID is returned for a well-formed ELF file without a GNU
	// build-id note.
	ErrNoBuildID = errors.New("elfnote: no GNU build-id note")
)

var elfMagic = []byte(elf.ELFMAG)

// IsELF reports whether prefix starts with the 4-byte ELF magic "\x7fELF".
func IsELF(prefix []byte) bool {
	return bytes.HasPrefix(prefix, elfMagic)
}

// Open returns the GNU build-id of the named ELF file. See [BuildID].
func Open(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close() // read-only: a close error cannot lose data
	id, err := BuildID(f)
	if err != nil {
		return nil, fmt.Errorf("read build-id of %s: %w", name, err)
	}
	return id, nil
}

// BuildID returns the GNU build-id (the descriptor of the "GNU" note of
// type NT_GNU_BUILD_ID) of the ELF file in r, which starts at offset 0.
//
// Like elfutils (libdwfl, hence debuginfod and its clients), it looks in the
// SHT_NOTE sections, .note.gnu.build-id first, and in the PT_NOTE segments
// only when the file has no section headers. It returns the first build-id
// of 1 to MaxBuildIDBytes bytes it finds, so a separate debug file, whose
// other sections are SHT_NOBITS, yields the same id as its binary.
//
// It returns ErrNotELF if r does not start with the ELF magic, ErrNoBuildID
// if the file is well-formed but has no build-id, and a *FormatError
// carrying the byte offset if the headers are malformed or truncated, or if
// no build-id was found and a note blob was malformed or lay past the end
// of the file. Other errors come from r. BuildID never panics and reads a
// bounded amount of r (see MaxNoteBytes, MaxScanBytes, MaxSections).
func BuildID(r io.ReaderAt) ([]byte, error) {
	f, err := NewFile(r)
	if err != nil {
		return nil, err
	}
	return buildID(r, f)
}

// buildID is BuildID over the file f already opened on r.
func buildID(r io.ReaderAt, f *elf.File) ([]byte, error) {
	s := scanner{r: r, order: f.ByteOrder, budget: MaxScanBytes, seen: make(map[span]bool)}
	var preferred, others []*elf.Section
	for _, sec := range f.Sections {
		switch {
		case sec.Type != elf.SHT_NOTE || sec.Flags&elf.SHF_COMPRESSED != 0:
			// Notes are never compressed; a compressed one is not ours to inflate.
		case sec.Name == ".note.gnu.build-id":
			preferred = append(preferred, sec)
		default:
			others = append(others, sec)
		}
	}
	for _, sec := range append(preferred, others...) {
		if id, err := s.scan(sec.Offset, sec.FileSize, sec.Addralign); id != nil || err != nil {
			return id, err
		}
	}
	for _, p := range f.Progs {
		// As in elfutils, segments count only in a file without sections:
		// in a separate debug file they point at data that was dropped.
		if p.Type != elf.PT_NOTE || len(f.Sections) > 0 {
			continue
		}
		if id, err := s.scan(p.Off, p.Filesz, p.Align); id != nil || err != nil {
			return id, err
		}
	}
	if s.malformed != nil {
		return nil, s.malformed
	}
	return nil, ErrNoBuildID
}

// NewFile is elf.NewFile for hostile input, in the manner of cilium/ebpf's
// SafeELFFile: the ELF header is checked first (see readHeader and the
// package's Security section: section count, table sizes, tables within
// the file, no compressed section-name table), so that what debug/elf
// reads whole stays small and present, and a panic inside debug/elf is
// returned as a *FormatError. It returns ErrNotELF for input without the
// ELF magic and a *FormatError with the byte offset for a malformed or
// truncated file; other errors come from r.
//
// The *elf.File reads r; its sections' Data and Open are debug/elf's own
// and not bounded here: read what a section header names from r, within
// the file.
func NewFile(r io.ReaderAt) (*elf.File, error) {
	h, err := readHeader(r)
	if err != nil {
		return nil, err
	}
	f, err := newFile(r)
	if err != nil {
		return nil, h.explain(r, err)
	}
	return f, nil
}

// newFile is elf.NewFile turning a panic into a *FormatError.
func newFile(r io.ReaderAt) (f *elf.File, err error) {
	defer func() {
		if p := recover(); p != nil {
			f, err = nil, formatErr(0, "debug/elf panicked: %v", p)
		}
	}()
	return elf.NewFile(r)
}

type span struct{ off, size, align uint64 }

// scanner looks for a build-id in note blobs, within a budget of bytes.
type scanner struct {
	r         io.ReaderAt
	order     binary.ByteOrder
	budget    int64
	seen      map[span]bool // blobs already parsed, against repeated section headers
	malformed *FormatError  // first malformed blob, reported if no build-id is found
}

// scan parses the note blob of size bytes at off. It returns the build-id if
// the blob has one, or an error if reading r failed for a reason other than
// the blob lying past its end. Malformed blobs are remembered in s.malformed.
func (s *scanner) scan(off, size, align uint64) ([]byte, error) {
	if size == 0 || s.seen[span{off, size, align}] {
		return nil, nil
	}
	s.seen[span{off, size, align}] = true
	n := min(size, MaxNoteBytes, uint64(s.budget))
	if n == 0 {
		s.fail(formatErr(clampOff(off), "note data exceeds the %d-byte scan limit", MaxScanBytes))
		return nil, nil
	}
	if off > math.MaxInt64-n {
		s.fail(formatErr(clampOff(off), "note data [%#x, +%#x) lies past any file", off, size))
		return nil, nil
	}
	// Check that the file holds the blob before allocating for it, so a
	// size field claiming a megabyte costs nothing when the file is short.
	if err := inFile(s.r, region{"note data", off, n}); err != nil {
		var fe *FormatError
		if !errors.As(err, &fe) {
			return nil, err
		}
		s.fail(fe)
		return nil, nil
	}
	buf := make([]byte, n)
	s.budget -= int64(n)
	if m, err := s.r.ReadAt(buf, int64(off)); m < len(buf) {
		if !isEOF(err) {
			return nil, fmt.Errorf("read notes at %#x: %w", off, err)
		}
		s.fail(&FormatError{Off: int64(off) + int64(m), Msg: "note data ends early", Err: err})
		return nil, nil
	}
	id, bad := blobBuildID(buf, s.order, align, int64(off), n < size)
	if id != nil {
		return id, nil
	}
	if bad != nil {
		s.fail(bad)
	}
	return nil, nil
}

func (s *scanner) fail(e *FormatError) {
	if s.malformed == nil {
		s.malformed = e
	}
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// ParseIdent checks the ELF identification at the start of ident (the
// magic, then EI_CLASS and EI_DATA) and returns the class, 32 or 64 bits,
// and the byte order. It returns ErrNotELF without the magic and a
// *FormatError at the offending byte for a short identification or an
// unknown class or data encoding.
func ParseIdent(ident []byte) (elf.Class, binary.ByteOrder, error) {
	if !IsELF(ident) {
		return 0, nil, ErrNotELF
	}
	if len(ident) < elf.EI_NIDENT {
		return 0, nil, formatErr(int64(len(ident)), "ELF identification truncated after %d bytes", len(ident))
	}
	class := elf.Class(ident[elf.EI_CLASS])
	if class != elf.ELFCLASS32 && class != elf.ELFCLASS64 {
		return 0, nil, formatErr(elf.EI_CLASS, "unknown ELF class %d", ident[elf.EI_CLASS])
	}
	switch elf.Data(ident[elf.EI_DATA]) {
	case elf.ELFDATA2LSB:
		return class, binary.LittleEndian, nil
	case elf.ELFDATA2MSB:
		return class, binary.BigEndian, nil
	}
	return 0, nil, formatErr(elf.EI_DATA, "unknown ELF data encoding %d", ident[elf.EI_DATA])
}

// header holds what readHeader learns from the ELF header: enough to check
// the file before debug/elf reads it and to place truncation errors.
type header struct {
	order       binary.ByteOrder
	is64        bool
	ehsize      uint64
	phoff       uint64
	phsize      uint64 // e_phnum * e_phentsize
	shoff       uint64
	shentsize   uint64
	wantShentsz uint64
	shsize      uint64 // section count * e_shentsize
	strtab      region // section-name table, if any
}

// A region is a byte range of the file, named for error messages.
type region struct {
	what      string
	off, size uint64
}

// Limits on the tables debug/elf reads whole into memory; real files stay
// far below them (65530 mappings in a core file need 3.6 MiB of program
// headers).
const (
	maxTableBytes     = 8 << 20 // program or section header table
	maxNameTableBytes = 4 << 20 // section-name table
)

// ELF header field offsets, indexed by 0 for ELF32 and 1 for ELF64.
var (
	offPhoff     = [2]int{28, 32}
	offShoff     = [2]int{32, 40}
	offPhentsize = [2]int{42, 54}
	offPhnum     = [2]int{44, 56}
	offShentsize = [2]int{46, 58}
	offShnum     = [2]int{48, 60}
	offShstrndx  = [2]int{50, 62}
)

// readHeader reads and checks the ELF identification and header, and the
// section headers whose values debug/elf would act on without a bound:
// section 0 under extended numbering, and the section-name table's.
func readHeader(r io.ReaderAt) (*header, error) {
	var buf [64]byte
	n, err := r.ReadAt(buf[:], 0)
	if err != nil && !isEOF(err) && n < len(buf) {
		return nil, fmt.Errorf("read ELF header: %w", err)
	}
	class, order, err := ParseIdent(buf[:n])
	if err != nil {
		return nil, err
	}
	h := &header{order: order}
	c := 0
	if class == elf.ELFCLASS64 {
		h.ehsize, h.wantShentsz, h.is64, c = 64, 64, true, 1
	} else {
		h.ehsize, h.wantShentsz = 52, 40
	}
	if uint64(n) < h.ehsize {
		return nil, formatErr(int64(n), "ELF header truncated after %d of %d bytes", n, h.ehsize)
	}

	word := func(off int) uint64 {
		if h.is64 {
			return h.order.Uint64(buf[off:])
		}
		return uint64(h.order.Uint32(buf[off:]))
	}
	half := func(off int) uint64 { return uint64(h.order.Uint16(buf[off:])) }
	h.phoff = word(offPhoff[c])
	h.phsize = half(offPhnum[c]) * half(offPhentsize[c])
	if h.phsize > maxTableBytes {
		return nil, formatErr(int64(offPhentsize[c]), "program header table of %d bytes exceeds %d", h.phsize, maxTableBytes)
	}
	// debug/elf allocates each table whole before reading it: check first
	// that the file holds it, so a short file cannot cost megabytes.
	if err := inFile(r, region{"program header table", h.phoff, h.phsize}); err != nil {
		return nil, err
	}
	h.shoff = word(offShoff[c])
	h.shentsize = half(offShentsize[c])
	shnum := half(offShnum[c])
	shstrndx := half(offShstrndx[c])
	if h.shoff == 0 || h.shoff > math.MaxInt64 {
		return h, nil // no sections, or an offset debug/elf refuses
	}

	// Reading a section header can fail only at the end of the file; then
	// debug/elf fails too, and explain places the error.
	if shnum == 0 { // extended numbering: the count is in section 0's sh_size
		h.shsize = h.wantShentsz
		sh, err := h.section(r, 0)
		if err != nil || sh == nil {
			return h, err
		}
		if sh.size > MaxSections {
			return nil, formatErr(int64(sh.at)+sh.sizeField, "section count %d exceeds %d", sh.size, MaxSections)
		}
		shnum = sh.size
		if shstrndx == uint64(elf.SHN_XINDEX) {
			// debug/elf (Go 1.26) indexes its sections with this
			// without checking it.
			shstrndx = sh.link
			if shstrndx >= shnum {
				return nil, formatErr(int64(sh.at)+sh.linkField, "section-name table index %d is not below the section count %d", shstrndx, shnum)
			}
		}
	}
	if h.shentsize < h.wantShentsz {
		return h, nil // debug/elf refuses it, with an offset
	}
	h.shsize = shnum * h.shentsize
	if h.shsize > maxTableBytes {
		return nil, formatErr(int64(offShentsize[c]), "section header table of %d bytes exceeds %d", h.shsize, maxTableBytes)
	}
	if err := inFile(r, region{"section header table", h.shoff, h.shsize}); err != nil {
		return nil, err
	}
	if shstrndx == 0 || shstrndx >= shnum {
		return h, nil
	}
	sh, err := h.section(r, shstrndx)
	if err != nil || sh == nil {
		return h, err
	}
	if sh.flags&uint64(elf.SHF_COMPRESSED) != 0 {
		return nil, formatErr(int64(sh.at)+sh.flagsField, "section-name table is compressed")
	}
	if sh.size > maxNameTableBytes {
		return nil, formatErr(int64(sh.at)+sh.sizeField, "section-name table of %d bytes exceeds %d", sh.size, maxNameTableBytes)
	}
	h.strtab = region{"section-name table", sh.offset, sh.size}
	if err := inFile(r, h.strtab); err != nil {
		return nil, err
	}
	return h, nil
}

type sectionHeader struct {
	at                  uint64 // offset of the header in the file
	flags, offset, size uint64
	link                uint64
	// Offsets of sh_flags, sh_size and sh_link in the header.
	flagsField, sizeField, linkField int64
}

// section reads section header i, or returns nil if it lies past the end
// of the file. shoff is at most MaxInt64 and i and shentsize are below
// 2^32, so the offset arithmetic cannot overflow uint64.
func (h *header) section(r io.ReaderAt, i uint64) (*sectionHeader, error) {
	at := h.shoff + i*h.shentsize
	if at > math.MaxInt64-h.wantShentsz {
		return nil, nil
	}
	buf := make([]byte, h.wantShentsz)
	n, err := r.ReadAt(buf, int64(at))
	if n < len(buf) {
		if err != nil && !isEOF(err) {
			return nil, fmt.Errorf("read section header %d: %w", i, err)
		}
		return nil, nil
	}
	sh := &sectionHeader{at: at}
	if h.is64 {
		sh.flags = h.order.Uint64(buf[8:])
		sh.offset = h.order.Uint64(buf[24:])
		sh.size = h.order.Uint64(buf[32:])
		sh.link = uint64(h.order.Uint32(buf[40:]))
		sh.flagsField, sh.sizeField, sh.linkField = 8, 32, 40
	} else {
		sh.flags = uint64(h.order.Uint32(buf[8:]))
		sh.offset = uint64(h.order.Uint32(buf[16:]))
		sh.size = uint64(h.order.Uint32(buf[20:]))
		sh.link = uint64(h.order.Uint32(buf[24:]))
		sh.flagsField, sh.sizeField, sh.linkField = 8, 20, 24
	}
	return sh, nil
}

// explain turns an error from elf.NewFile into a *FormatError with an
// offset. debug/elf's own FormatError keeps its offset unexported but
// prints it; a truncated file surfaces as io.EOF, placed here by probing
// the tables debug/elf reads.
func (h *header) explain(r io.ReaderAt, err error) error {
	var fe *FormatError
	if errors.As(err, &fe) {
		return err
	}
	var ee *elf.FormatError
	if errors.As(err, &ee) {
		msg := ee.Error()
		const at = "in record at byte "
		if i := strings.LastIndex(msg, at); i >= 0 {
			if off, perr := strconv.ParseInt(msg[i+len(at):], 0, 64); perr == nil {
				return &FormatError{Off: off, Msg: strings.TrimSpace(msg[:i]), Err: err}
			}
		}
		return &FormatError{Off: 0, Msg: msg, Err: err}
	}
	if !isEOF(err) {
		return fmt.Errorf("parse ELF headers: %w", err)
	}
	for _, g := range []region{
		{"program header table", h.phoff, h.phsize},
		{"section header table", h.shoff, h.shsize},
		h.strtab,
	} {
		if ferr := inFile(r, g); ferr != nil {
			return ferr
		}
	}
	return &FormatError{Off: 0, Msg: "ELF file is truncated", Err: err}
}

// inFile returns a *FormatError if the last byte of g cannot be read.
func inFile(r io.ReaderAt, g region) error {
	if g.size == 0 {
		return nil
	}
	past, err := pastEnd(r, g.off, g.size)
	if err != nil {
		return err
	}
	if past {
		return &FormatError{Off: clampOff(g.off), Msg: fmt.Sprintf("%s [%#x, +%#x) extends past the end of the file", g.what, g.off, g.size), Err: io.ErrUnexpectedEOF}
	}
	return nil
}

// pastEnd reports whether the last byte of [off, off+size) lies past the
// end of r; a read error other than EOF is returned.
func pastEnd(r io.ReaderAt, off, size uint64) (bool, error) {
	last := off + size - 1
	if last < off || last > math.MaxInt64 {
		return true, nil
	}
	var b [1]byte
	n, err := r.ReadAt(b[:], int64(last))
	if n == 1 {
		return false, nil
	}
	if err != nil && !isEOF(err) {
		return false, fmt.Errorf("read ELF file at %#x: %w", last, err)
	}
	return true, nil
}

func clampOff(off uint64) int64 {
	if off > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(off)
}
