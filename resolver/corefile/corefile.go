package corefile

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"sort"

	"github.com/retraced/retraced/index/elfnote"
)

// Limits on what is read from one core file. They bound memory and time for
// hostile input and sit far above what kernels and gdb write.
const (
	// MaxSegments is the most program headers a core may have. Linux
	// writes one per mapping; vm.max_map_count is 65530 by default and
	// 1048576 on some distributions (Fedora since 39).
	MaxSegments = 1 << 20

	// MaxNoteBytes is the most PT_NOTE data read in all. Linux caps its
	// NT_FILE note at 16 MiB; the rest is a few KiB per thread.
	MaxNoteBytes = 64 << 20

	// MaxPathBytes is the longest file name accepted in NT_FILE (PATH_MAX,
	// which bounds the kernel's d_path) or read through AT_EXECFN.
	MaxPathBytes = 4096
)

// Limits on what is read of the memory image, for each mapped object and in
// all. Real objects have a dozen program headers and a few hundred bytes of
// notes.
const (
	maxObjectPhnum     = 1024
	maxObjectNoteBytes = 64 << 10
	maxDynamicBytes    = 64 << 10
	maxSonameBytes     = 256
	maxMemoryReadBytes = 64 << 20
	maxReadPieces      = 64 // PT_LOAD segments one read may span
)

// Note types of owner "CORE" (linux/elf.h).
const (
	ntPrstatus = 1
	ntAuxv     = 6
	ntSiginfo  = 0x53494749 // "SIGI"
	ntFile     = 0x46494c45 // "FILE"
	ownerCore  = "CORE"
)

// Auxiliary vector entry types (linux/auxvec.h).
const (
	atNull        = 0
	atPhdr        = 3
	atEntry       = 9
	atExecfn      = 31
	atSysinfoEhdr = 33
)

// pnXnum in e_phnum means the real count is in section 0's sh_info.
const pnXnum = 0xffff

// ErrNotCore is returned for input that is not an ELF core file: not ELF at
// all (the error then also matches [elfnote.ErrNotELF]), or an ELF file of
// another type, such as an executable or a shared library.
var ErrNotCore = errors.New("corefile: not an ELF core file")

// A FormatError reports a malformed or truncated core file and where.
type FormatError struct {
	Off int64  // byte offset in the core file of the offending field or table
	Msg string // what is wrong
	Err error  // underlying error, if any: *elfnote.FormatError, io.ErrUnexpectedEOF
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("corefile: %s at byte %#x", e.Msg, e.Off)
}

func (e *FormatError) Unwrap() error { return e.Err }

func formatErr(off uint64, format string, args ...any) *FormatError {
	return &FormatError{Off: clampOff(off), Msg: fmt.Sprintf(format, args...)}
}

// A Module is one object mapped into the process: an executable, a shared
// library, another mapped file, or the vdso.
type Module struct {
	// Start and End delimit the module's mappings, End excluded. For a
	// mapped file they run from the first mapping to the end of the last
	// one in the file's run of NT_FILE entries; for the vdso, and for
	// objects found without NT_FILE, they are the dumped segment that
	// holds the ELF header.
	Start, End uint64

	// FileOffset is the offset in bytes of the file at Start: 0 when the
	// module starts at the file's ELF header, as objects loaded by ld.so
	// do. Only then is BuildID looked for.
	FileOffset uint64

	// Path is the file's name as NT_FILE records it: an absolute path in
	// the process's view (its chroot, its mount namespace), with
	// " (deleted)" appended by the kernel for a file removed since. For
	// the vdso it is the vdso's DT_SONAME, as eu-unstrip names it
	// ("linux-vdso.so.1" on x86-64 and aarch64, "linux-gate.so.1" on
	// i386), or "[vdso]" when it has none. It is "" for an object found
	// in a core without NT_FILE.
	Path string

	// BuildID is the GNU build-id read from the object's image in the
	// core, or nil when the core does not hold the object's ELF header,
	// program headers and build-id note (not dumped, the core cut short,
	// or no build-id).
	BuildID []byte
}

// A Core is what an ELF core file says about the process that dumped it.
type Core struct {
	Class     elf.Class        // ELFCLASS32 or ELFCLASS64
	ByteOrder binary.ByteOrder // of the core and of its notes
	Machine   elf.Machine

	// Pid is the process id from the first NT_PRSTATUS, 0 if there is none.
	Pid int

	// Signal is the signal that dumped the core: pr_cursig of the first
	// NT_PRSTATUS (the thread that took it), or si_signo of NT_SIGINFO
	// when there is no NT_PRSTATUS. It is 0 for a core that gdb's gcore
	// took of a process that was not stopped by a signal.
	Signal int

	// Executable is the path of the main program: the module holding the
	// program headers the kernel passed in AT_PHDR, else the module
	// holding AT_ENTRY, else the string AT_EXECFN points to (the name
	// given to execve, possibly relative), else "". A program started as
	// "ld.so PROGRAM" yields ld.so's path, as the kernel saw it.
	Executable string

	// Modules lists the mapped objects in address order: one for each run
	// of NT_FILE mappings of one file that starts at file offset 0 (and
	// one for each run starting elsewhere), and the vdso. A core without
	// NT_FILE (Linux before 3.7) lists the dumped segments that start
	// with an ELF header instead, with an empty Path.
	Modules []Module

	// Truncated reports that the file is shorter than its PT_LOAD
	// segments say: a core cut short by RLIMIT_CORE, a full disk or a
	// size limit. Its modules are still listed; those whose headers lie
	// past the end have a nil BuildID.
	Truncated bool
}

// Open opens the named core file and reads it with [NewFile].
func Open(name string) (*Core, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close() // read-only: a close error cannot lose data
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	c, err := NewFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read core %s: %w", name, err)
	}
	return c, nil
}

// NewFile reads the core file of size bytes in r, which starts at offset 0.
//
// It returns an error matching [ErrNotCore] for input that is not an ELF
// core file, a [*FormatError] with the byte offset for a malformed or
// truncated ELF header, program header table or note segment, and other
// errors only when r fails. A core whose memory segments are cut short is
// not an error: see [Core.Truncated]. NewFile never panics and reads a
// bounded amount of r: see [MaxSegments], [MaxNoteBytes], [MaxPathBytes].
func NewFile(r io.ReaderAt, size int64) (*Core, error) {
	if size < 0 {
		return nil, fmt.Errorf("corefile: negative size %d", size)
	}
	p := &parser{r: r, size: uint64(size)}
	if err := p.header(); err != nil {
		return nil, err
	}
	if err := p.programHeaders(); err != nil {
		return nil, err
	}
	n, err := p.notes()
	if err != nil {
		return nil, err
	}
	c := &Core{Class: p.class, ByteOrder: p.order, Machine: p.machine, Truncated: p.truncated}
	c.Pid, c.Signal = n.pid, n.signal
	m := &memory{r: r, segs: p.loads, budget: maxMemoryReadBytes}
	if err := c.findModules(m, n); err != nil {
		return nil, err
	}
	if err := c.findExecutable(m, n.auxv); err != nil {
		return nil, err
	}
	return c, nil
}

// layout reads the words whose size and byte order depend on the ELF
// class and data encoding.
type layout struct {
	order binary.ByteOrder
	is64  bool
}

func (l layout) wordSize() uint64 {
	if l.is64 {
		return 8
	}
	return 4
}

// word reads one address-sized word at b[0:].
func (l layout) word(b []byte) uint64 {
	if l.is64 {
		return l.order.Uint64(b)
	}
	return uint64(l.order.Uint32(b))
}

// ELF header field offsets, indexed by 0 for ELF32 and 1 for ELF64.
var (
	offPhoff     = [2]uint64{28, 32}
	offShoff     = [2]uint64{32, 40}
	offPhentsize = [2]uint64{42, 54}
	offPhnum     = [2]uint64{44, 56}
	ehdrSize     = [2]uint64{52, 64}
	phdrSize     = [2]uint64{32, 56}
	shdrSize     = [2]uint64{40, 64}
	offShInfo    = [2]uint64{28, 44}
)

func (l layout) idx() int {
	if l.is64 {
		return 1
	}
	return 0
}

// A prog is a program header.
type prog struct {
	typ                       elf.ProgType
	off, vaddr, filesz, memsz uint64
	align                     uint64
	at                        uint64 // offset of the header itself
}

// readProg decodes one program header of the layout's class.
func (l layout) readProg(b []byte) prog {
	if l.is64 {
		return prog{
			typ:    elf.ProgType(l.order.Uint32(b[0:])),
			off:    l.order.Uint64(b[8:]),
			vaddr:  l.order.Uint64(b[16:]),
			filesz: l.order.Uint64(b[32:]),
			memsz:  l.order.Uint64(b[40:]),
			align:  l.order.Uint64(b[48:]),
		}
	}
	return prog{
		typ:    elf.ProgType(l.order.Uint32(b[0:])),
		off:    uint64(l.order.Uint32(b[4:])),
		vaddr:  uint64(l.order.Uint32(b[8:])),
		filesz: uint64(l.order.Uint32(b[16:])),
		memsz:  uint64(l.order.Uint32(b[20:])),
		align:  uint64(l.order.Uint32(b[28:])),
	}
}

// parseIdent checks the ELF identification in b (at least EI_NIDENT
// bytes, starting with the magic) with elfnote's check and returns the
// class and layout.
func parseIdent(b []byte) (elf.Class, layout, error) {
	class, order, err := elfnote.ParseIdent(b)
	if fe := (*elfnote.FormatError)(nil); errors.As(err, &fe) {
		return 0, layout{}, &FormatError{Off: fe.Off, Msg: fe.Msg}
	}
	if err != nil {
		return 0, layout{}, err
	}
	return class, layout{order: order, is64: class == elf.ELFCLASS64}, nil
}

// parser reads the core file's own structures: header, program headers,
// notes.
type parser struct {
	r    io.ReaderAt
	size uint64
	layout
	class     elf.Class
	machine   elf.Machine
	phoff     uint64
	phnum     uint64
	loads     []segment
	noteProgs []prog
	truncated bool
}

// readFile reads n bytes at off, which the caller has checked lie within
// the file's size. A short read means the reader holds less than size
// said: a *FormatError.
func (p *parser) readFile(what string, off, n uint64) ([]byte, error) {
	buf := make([]byte, n)
	k, err := p.r.ReadAt(buf, int64(off))
	if uint64(k) < n {
		if err != nil && !isEOF(err) {
			return nil, fmt.Errorf("corefile: read %s at %#x: %w", what, off, err)
		}
		return nil, &FormatError{Off: clampOff(off + uint64(k)), Msg: what + " ends early", Err: io.ErrUnexpectedEOF}
	}
	return buf, nil
}

// inFile returns a *FormatError unless [off, off+n) lies within the file.
func (p *parser) inFile(what string, off, n uint64) error {
	if off > p.size || n > p.size-off {
		return &FormatError{Off: clampOff(off), Msg: fmt.Sprintf("%s [%#x, +%#x) extends past the end of the file (%#x bytes)", what, off, n, p.size), Err: io.ErrUnexpectedEOF}
	}
	return nil
}

func (p *parser) header() error {
	var buf [64]byte
	n, err := p.r.ReadAt(buf[:min(uint64(len(buf)), p.size)], 0)
	if err != nil && !isEOF(err) && n < len(buf) {
		return fmt.Errorf("corefile: read ELF header: %w", err)
	}
	if n < len(elf.ELFMAG) || !elfnote.IsELF(buf[:n]) {
		return fmt.Errorf("%w: %w", ErrNotCore, elfnote.ErrNotELF)
	}
	if n < elf.EI_NIDENT {
		return &FormatError{Off: int64(n), Msg: fmt.Sprintf("ELF identification truncated after %d bytes", n), Err: io.ErrUnexpectedEOF}
	}
	class, l, err := parseIdent(buf[:])
	if err != nil {
		return err
	}
	p.class, p.layout = class, l
	c := l.idx()
	if uint64(n) < ehdrSize[c] {
		return &FormatError{Off: int64(n), Msg: fmt.Sprintf("ELF header truncated after %d of %d bytes", n, ehdrSize[c]), Err: io.ErrUnexpectedEOF}
	}
	if t := elf.Type(l.order.Uint16(buf[16:])); t != elf.ET_CORE {
		return fmt.Errorf("%w: ELF type %v", ErrNotCore, t)
	}
	p.machine = elf.Machine(l.order.Uint16(buf[18:]))
	p.phoff = l.word(buf[offPhoff[c]:])
	phentsize := uint64(l.order.Uint16(buf[offPhentsize[c]:]))
	p.phnum = uint64(l.order.Uint16(buf[offPhnum[c]:]))
	if p.phnum == pnXnum {
		// Linux writes more than 65534 segments this way.
		shoff := l.word(buf[offShoff[c]:])
		if shoff == 0 {
			return formatErr(offPhnum[c], "e_phnum is PN_XNUM but there is no section header 0")
		}
		if err := p.inFile("section header 0", shoff, shdrSize[c]); err != nil {
			return err
		}
		sh, err := p.readFile("section header 0", shoff, shdrSize[c])
		if err != nil {
			return err
		}
		p.phnum = uint64(l.order.Uint32(sh[offShInfo[c]:]))
	}
	if p.phnum == 0 {
		return nil
	}
	if phentsize != phdrSize[c] {
		return formatErr(offPhentsize[c], "program header size %d, want %d for %v", phentsize, phdrSize[c], class)
	}
	if p.phnum > MaxSegments {
		return formatErr(offPhnum[c], "%d program headers exceed the limit of %d", p.phnum, MaxSegments)
	}
	return nil
}

func (p *parser) programHeaders() error {
	if p.phnum == 0 {
		return nil
	}
	entsize := phdrSize[p.idx()]
	tableSize := p.phnum * entsize // at most 2^20 * 56: no overflow
	if err := p.inFile("program header table", p.phoff, tableSize); err != nil {
		return err
	}
	table, err := p.readFile("program header table", p.phoff, tableSize)
	if err != nil {
		return err
	}
	for i := uint64(0); i < p.phnum; i++ {
		ph := p.readProg(table[i*entsize:])
		ph.at = p.phoff + i*entsize
		switch ph.typ {
		case elf.PT_LOAD:
			s := segment{vaddr: ph.vaddr, memsz: ph.memsz, off: ph.off}
			// The file may end before the segment's data does: count
			// only the bytes it holds.
			s.avail = ph.filesz
			if ph.off > p.size {
				s.avail = 0
			} else if ph.filesz > p.size-ph.off {
				s.avail = p.size - ph.off
			}
			if s.avail < ph.filesz {
				p.truncated = true
			}
			s.avail = min(s.avail, s.memsz)
			if s.memsz > 0 {
				p.loads = append(p.loads, s)
			}
		case elf.PT_NOTE:
			p.noteProgs = append(p.noteProgs, ph)
		}
	}
	sort.SliceStable(p.loads, func(i, j int) bool { return p.loads[i].vaddr < p.loads[j].vaddr })
	return nil
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

func clampOff(off uint64) int64 {
	if off > math.MaxInt64 {
		return math.MaxInt64
	}
	return int64(off)
}
