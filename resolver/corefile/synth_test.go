package corefile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
)

// This file builds synthetic core files: the cases no kernel at hand
// writes (32-bit, big-endian, no NT_FILE, PN_XNUM, holes, crafted damage)
// and the small fuzz seeds. A synthCore is laid out as ELF header, program
// headers, one note segment, the PT_LOAD data in order, and section header
// 0 when it uses PN_XNUM.

type synthNote struct {
	name string
	typ  uint32
	desc []byte
}

type synthLoad struct {
	vaddr, memsz uint64
	data         []byte // the dumped bytes: p_filesz is len(data)
}

type synthCore struct {
	class     elf.Class
	order     binary.ByteOrder
	machine   elf.Machine
	typ       elf.Type // ET_CORE when 0
	noteAlign uint64   // p_align of the note segment
	notes     []synthNote
	loads     []synthLoad
	xnum      bool // e_phnum = PN_XNUM, the count in section 0's sh_info
}

func (s *synthCore) layout() layout { return layout{order: s.order, is64: s.class == elf.ELFCLASS64} }

// enc appends words in a class and byte order.
type enc struct {
	l   layout
	buf []byte
}

func (e *enc) u8(v uint8)   { e.buf = append(e.buf, v) }
func (e *enc) u16(v uint16) { e.buf = e.l.order.(binary.AppendByteOrder).AppendUint16(e.buf, v) }
func (e *enc) u32(v uint32) { e.buf = e.l.order.(binary.AppendByteOrder).AppendUint32(e.buf, v) }
func (e *enc) u64(v uint64) { e.buf = e.l.order.(binary.AppendByteOrder).AppendUint64(e.buf, v) }
func (e *enc) word(v uint64) {
	if e.l.is64 {
		e.u64(v)
	} else {
		e.u32(uint32(v))
	}
}
func (e *enc) pad(align int) {
	for len(e.buf)%align != 0 {
		e.buf = append(e.buf, 0)
	}
}

// ehdr appends an ELF header with phnum program headers at phoff.
func (e *enc) ehdr(class elf.Class, typ elf.Type, machine elf.Machine, entry, phoff, shoff uint64, phnum, shnum int) {
	data := elf.ELFDATA2LSB
	if e.l.order == binary.BigEndian {
		data = elf.ELFDATA2MSB
	}
	e.buf = append(e.buf, 0x7f, 'E', 'L', 'F', byte(class), byte(data), byte(elf.EV_CURRENT))
	e.buf = append(e.buf, make([]byte, elf.EI_NIDENT-7)...)
	e.u16(uint16(typ))
	e.u16(uint16(machine))
	e.u32(uint32(elf.EV_CURRENT))
	e.word(entry)
	e.word(phoff)
	e.word(shoff)
	e.u32(0) // flags
	c := e.l.idx()
	e.u16(uint16(ehdrSize[c]))
	e.u16(uint16(phdrSize[c]))
	e.u16(uint16(phnum))
	shentsize := uint16(0)
	if shnum > 0 {
		shentsize = uint16(shdrSize[c])
	}
	e.u16(shentsize)
	e.u16(uint16(shnum))
	e.u16(0) // shstrndx
}

func (e *enc) phdr(typ elf.ProgType, flags elf.ProgFlag, off, vaddr, filesz, memsz, align uint64) {
	if e.l.is64 {
		e.u32(uint32(typ))
		e.u32(uint32(flags))
		e.u64(off)
		e.u64(vaddr)
		e.u64(0)
		e.u64(filesz)
		e.u64(memsz)
		e.u64(align)
		return
	}
	e.u32(uint32(typ))
	e.u32(uint32(off))
	e.u32(uint32(vaddr))
	e.u32(0)
	e.u32(uint32(filesz))
	e.u32(uint32(memsz))
	e.u32(uint32(flags))
	e.u32(uint32(align))
}

// note appends one note padded to align (4 or 8).
func (e *enc) note(name string, typ uint32, desc []byte, align int) {
	e.u32(uint32(len(name) + 1))
	e.u32(uint32(len(desc)))
	e.u32(typ)
	e.buf = append(e.buf, name...)
	e.buf = append(e.buf, 0)
	e.pad(align)
	e.buf = append(e.buf, desc...)
	e.pad(align)
}

func (s *synthCore) bytes() []byte {
	l := s.layout()
	c := l.idx()
	align := int(s.noteAlign)
	if align < 4 {
		align = 4
	}
	notes := &enc{l: l}
	for _, n := range s.notes {
		notes.note(n.name, n.typ, n.desc, align)
	}
	nph := len(s.loads)
	if len(s.notes) > 0 {
		nph++
	}
	phoff := ehdrSize[c]
	noteOff := phoff + uint64(nph)*phdrSize[c]
	dataOff := noteOff + uint64(len(notes.buf))
	dataOff = (dataOff + 15) &^ 15
	end := dataOff
	for _, ld := range s.loads {
		end += uint64(len(ld.data))
	}
	typ := s.typ
	if typ == 0 {
		typ = elf.ET_CORE
	}
	e := &enc{l: l}
	phnum, shoff, shnum := nph, uint64(0), 0
	if s.xnum {
		phnum, shoff, shnum = pnXnum, end, 1
	}
	e.ehdr(s.class, typ, s.machine, 0, phoff, shoff, phnum, shnum)
	if len(s.notes) > 0 {
		e.phdr(elf.PT_NOTE, 0, noteOff, 0, uint64(len(notes.buf)), 0, s.noteAlign)
	}
	off := dataOff
	for _, ld := range s.loads {
		// A segment not dumped points at the end of the data, not at
		// the next segment's bytes as Linux writes it: the data here is
		// not page-aligned, and libdwfl (0.188) rounds p_offset+p_filesz
		// up to a page, so eu-unstrip would read the next segment's
		// bytes and report phantom modules (see testdata/README.md).
		at := off
		if len(ld.data) == 0 {
			at = end
		}
		e.phdr(elf.PT_LOAD, elf.PF_R, at, ld.vaddr, uint64(len(ld.data)), ld.memsz, 0x1000)
		off += uint64(len(ld.data))
	}
	e.buf = append(e.buf, notes.buf...)
	e.pad(16)
	for _, ld := range s.loads {
		e.buf = append(e.buf, ld.data...)
	}
	if s.xnum {
		// Section header 0: sh_info holds the program header count.
		sh := make([]byte, shdrSize[c])
		l.order.PutUint32(sh[offShInfo[c]:], uint32(nph))
		e.buf = append(e.buf, sh...)
	}
	return e.buf
}

// fileDesc encodes NT_FILE with offsets given in bytes.
func fileDesc(l layout, pageSize uint64, maps []mapping) []byte {
	e := &enc{l: l}
	e.word(uint64(len(maps)))
	e.word(pageSize)
	for _, m := range maps {
		e.word(m.start)
		e.word(m.end)
		e.word(m.off / pageSize)
	}
	for _, m := range maps {
		e.buf = append(e.buf, m.path...)
		e.buf = append(e.buf, 0)
	}
	return e.buf
}

// auxvDesc encodes NT_AUXV from type, value pairs, adding AT_NULL.
func auxvDesc(l layout, pairs ...uint64) []byte {
	e := &enc{l: l}
	for _, v := range pairs {
		e.word(v)
	}
	e.word(atNull)
	e.word(0)
	return e.buf
}

// prstatusDesc encodes the start of struct elf_prstatus up to pr_sid.
func prstatusDesc(l layout, sig, pid int) []byte {
	e := &enc{l: l}
	e.u32(uint32(sig)) // si_signo
	e.u32(0)           // si_code
	e.u32(0)           // si_errno
	e.u16(uint16(sig)) // pr_cursig
	e.u16(0)
	e.word(0) // pr_sigpend
	e.word(0) // pr_sighold
	e.u32(uint32(pid))
	e.u32(1) // ppid
	e.u32(uint32(pid))
	e.u32(uint32(pid))
	return e.buf
}

func siginfoDesc(l layout, signo int) []byte {
	b := make([]byte, 128)
	l.order.PutUint32(b, uint32(signo))
	return b
}

// elfObject builds the first page of an ELF object linked at base: header,
// PT_LOAD, PT_NOTE with a GNU build-id, and, when soname is set,
// PT_DYNAMIC whose DT_STRTAB is the link-time address, as in the vdso.
func elfObject(l layout, class elf.Class, machine elf.Machine, base uint64, id []byte, soname string) []byte {
	c := l.idx()
	nph := 2
	if soname != "" {
		nph = 3
	}
	phoff := ehdrSize[c]
	noteOff := phoff + uint64(nph)*phdrSize[c]
	note := &enc{l: l}
	note.note("GNU", ntGNUBuildID, id, 4)
	dynOff := noteOff + uint64(len(note.buf))
	dyn := &enc{l: l}
	strOff := dynOff + 4*2*l.wordSize()
	strtab := "\x00" + soname + "\x00"
	if soname != "" {
		dyn.word(dtSoname)
		dyn.word(1)
		dyn.word(dtStrtab)
		dyn.word(base + strOff)
		dyn.word(dtStrsz)
		dyn.word(uint64(len(strtab)))
		dyn.word(dtNull)
		dyn.word(0)
	}
	size := strOff + uint64(len(strtab))
	typ := elf.ET_DYN
	if base != 0 {
		typ = elf.ET_EXEC
	}
	e := &enc{l: l}
	e.ehdr(class, typ, machine, base+0x100, phoff, 0, nph, 0)
	e.phdr(elf.PT_LOAD, elf.PF_R|elf.PF_X, 0, base, size, size, 0x1000)
	e.phdr(elf.PT_NOTE, elf.PF_R, noteOff, base+noteOff, uint64(len(note.buf)), uint64(len(note.buf)), 4)
	if soname != "" {
		e.phdr(elf.PT_DYNAMIC, elf.PF_R, dynOff, base+dynOff, uint64(len(dyn.buf)), uint64(len(dyn.buf)), l.wordSize())
	}
	e.buf = append(e.buf, note.buf...)
	e.buf = append(e.buf, dyn.buf...)
	e.buf = append(e.buf, strtab...)
	return e.buf
}

var (
	synthExeID  = bytes.Repeat([]byte{0x11}, 20)
	synthLibID  = bytes.Repeat([]byte{0x22}, 16)
	synthVdsoID = bytes.Repeat([]byte{0x33}, 20)
)

// ntGNUBuildID is NT_GNU_BUILD_ID, a note type of owner "GNU".
const ntGNUBuildID = 3

// Addresses of the synthetic process; they fit 32 bits.
const (
	synthExe    = 0x00400000
	synthLib    = 0x40000000
	synthLocale = 0x50000000
	synthBlob   = 0x60000000
	synthExe2   = 0x70000000
	synthStack  = 0x7ffe0000
	synthExecfn = synthStack + 0xf00
	synthVdso   = 0x7fff0000
)

// synthProcess returns a synthetic core of a process that maps an
// executable (twice), a library, a file not dumped, a file mapped only
// from offset 0x3000, a stack and the vdso, with NT_FILE offsets in units
// of pageSize, and the Core that NewFile must return for it.
func synthProcess(class elf.Class, order binary.ByteOrder, machine elf.Machine, pageSize, noteAlign uint64) (*synthCore, *Core) {
	l := layout{order: order, is64: class == elf.ELFCLASS64}
	exe := elfObject(l, class, machine, synthExe, synthExeID, "")
	lib := elfObject(l, class, machine, 0, synthLibID, "")
	vdso := elfObject(l, class, machine, 0, synthVdsoID, "linux-vdso.so.1")
	stack := make([]byte, 0x1000)
	copy(stack[synthExecfn-synthStack:], "/usr/bin/synth\x00")
	unit := max(pageSize, 0x1000) // file offsets are whole pages
	maps := []mapping{
		{synthExe, synthExe + 0x1000, 0, "/usr/bin/synth"},
		{synthExe + 0x1000, synthExe + 0x3000, unit, "/usr/bin/synth"},
		{synthLib, synthLib + 0x1000, 0, "/usr/lib/libsynth.so.1.0"},
		{synthLib + 0x1000, synthLib + 0x2000, unit, "/usr/lib/libsynth.so.1.0"},
		{synthLocale, synthLocale + 0x100000, 0, "/usr/lib/locale/locale-archive"},
		{synthBlob, synthBlob + 0x1000, 3 * unit, "/data/blob"},
		{synthExe2, synthExe2 + 0x1000, 0, "/usr/bin/synth"},
	}
	s := &synthCore{
		class: class, order: order, machine: machine, noteAlign: noteAlign,
		notes: []synthNote{
			{"CORE", ntPrstatus, prstatusDesc(l, 6, 4242)},
			{"CORE", ntSiginfo, siginfoDesc(l, 6)},
			{"CORE", ntAuxv, auxvDesc(l, atSysinfoEhdr, synthVdso, 6, 0x1000, atPhdr, synthExe+ehdrSize[l.idx()],
				atEntry, synthExe+0x100, atExecfn, synthExecfn)},
			{"CORE", ntFile, fileDesc(l, pageSize, maps)},
		},
		loads: []synthLoad{
			{synthExe, 0x1000, exe},
			{synthExe + 0x1000, 0x2000, nil},
			{synthLib, 0x1000, lib},
			{synthLib + 0x1000, 0x1000, nil},
			{synthLocale, 0x100000, nil},
			{synthBlob, 0x1000, nil},
			{synthExe2, 0x1000, exe},
			{synthStack, 0x1000, stack},
			{synthVdso, 0x1000, vdso},
		},
	}
	want := &Core{
		Class: class, ByteOrder: order, Machine: machine, Pid: 4242, Signal: 6,
		Executable: "/usr/bin/synth",
		Modules: []Module{
			{Start: synthExe, End: synthExe + 0x3000, Path: "/usr/bin/synth", BuildID: synthExeID},
			{Start: synthLib, End: synthLib + 0x2000, Path: "/usr/lib/libsynth.so.1.0", BuildID: synthLibID},
			{Start: synthLocale, End: synthLocale + 0x100000, Path: "/usr/lib/locale/locale-archive"},
			{Start: synthBlob, End: synthBlob + 0x1000, FileOffset: 3 * unit, Path: "/data/blob"},
			{Start: synthExe2, End: synthExe2 + 0x1000, Path: "/usr/bin/synth", BuildID: synthExeID},
			{Start: synthVdso, End: synthVdso + 0x1000, Path: "linux-vdso.so.1", BuildID: synthVdsoID},
		},
	}
	return s, want
}
