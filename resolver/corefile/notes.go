package corefile

import (
	"bytes"
	"errors"
	"sort"

	"github.com/retraced/retraced/index/elfnote"
)

// maxAuxvBytes bounds NT_AUXV: Linux saves at most a few dozen entries.
const maxAuxvBytes = 64 << 10

// A mapping is one NT_FILE entry.
type mapping struct {
	start, end uint64
	off        uint64 // file offset in bytes
	path       string
}

// auxv holds the auxiliary vector entries that locate the objects.
type auxv struct {
	phdr, entry, execfn, sysinfoEhdr uint64
}

// noteInfo is what the notes of a core say.
type noteInfo struct {
	pid, signal int
	haveFile    bool // an NT_FILE note was found, even an empty one
	files       []mapping
	auxv        auxv
}

// notes reads the PT_NOTE segments and decodes the first NT_PRSTATUS,
// NT_SIGINFO, NT_AUXV and NT_FILE notes of owner "CORE".
func (p *parser) notes() (*noteInfo, error) {
	var total uint64
	for _, ph := range p.noteProgs {
		if ph.filesz == 0 {
			continue
		}
		if ph.filesz > MaxNoteBytes-total {
			return nil, formatErr(ph.at, "note segments exceed the limit of %d bytes", MaxNoteBytes)
		}
		total += ph.filesz
		if err := p.inFile("note segment", ph.off, ph.filesz); err != nil {
			return nil, err
		}
	}
	info := new(noteInfo)
	var prstatus, siginfo bool
	var auxvSeen bool
	for _, ph := range p.noteProgs {
		if ph.filesz == 0 {
			continue
		}
		blob, err := p.readFile("note segment", ph.off, ph.filesz)
		if err != nil {
			return nil, err
		}
		base := int64(ph.off) // below the file size, checked above
		notes, err := elfnote.ParseNotes(blob, p.order, ph.align, base)
		if err != nil {
			var fe *elfnote.FormatError
			if errors.As(err, &fe) {
				return nil, &FormatError{Off: fe.Off, Msg: "malformed note: " + fe.Msg, Err: err}
			}
			return nil, err
		}
		for _, n := range notes {
			if n.Name != ownerCore {
				continue
			}
			at := descOffset(blob, base, n, p, ph.align)
			switch {
			case n.Type == ntPrstatus && !prstatus:
				prstatus = true
				if err := info.prstatus(p.layout, n.Desc, at); err != nil {
					return nil, err
				}
			case n.Type == ntSiginfo && !siginfo:
				siginfo = true
				if len(n.Desc) < 4 {
					return nil, formatErr(at, "NT_SIGINFO of %d bytes is too short", len(n.Desc))
				}
				if !prstatus {
					info.signal = int(int32(p.order.Uint32(n.Desc)))
				}
			case n.Type == ntAuxv && !auxvSeen:
				auxvSeen = true
				if err := info.parseAuxv(p.layout, n.Desc, at); err != nil {
					return nil, err
				}
			case n.Type == ntFile && !info.haveFile:
				info.haveFile = true
				files, err := parseFileNote(p.layout, n.Desc, at)
				if err != nil {
					return nil, err
				}
				info.files = files
			}
		}
	}
	return info, nil
}

// descOffset returns the file offset of note n's descriptor: after its
// 12-byte header and its name padded to the blob's alignment.
func descOffset(blob []byte, base int64, n elfnote.Note, p *parser, align uint64) uint64 {
	rel := n.Off - base
	namesz := uint64(p.order.Uint32(blob[rel:]))
	pad := uint64(4)
	if align == 8 {
		pad = 8
	}
	return uint64(n.Off) + 12 + (namesz+pad-1)&^(pad-1)
}

// prstatus decodes struct elf_prstatus: pr_info (si_signo, si_code,
// si_errno: three ints), pr_cursig (short, at 12), then pr_sigpend and
// pr_sighold (unsigned long each), then pr_pid.
func (info *noteInfo) prstatus(l layout, desc []byte, at uint64) error {
	pidOff := 16 + 2*l.wordSize()
	if uint64(len(desc)) < pidOff+4 {
		return formatErr(at, "NT_PRSTATUS of %d bytes is too short", len(desc))
	}
	info.signal = int(l.order.Uint16(desc[12:]))
	info.pid = int(int32(l.order.Uint32(desc[pidOff:])))
	return nil
}

// parseAuxv decodes the (type, value) word pairs of NT_AUXV up to AT_NULL;
// the first entry of each type counts.
func (info *noteInfo) parseAuxv(l layout, desc []byte, at uint64) error {
	w := l.wordSize()
	if uint64(len(desc)) > maxAuxvBytes {
		return formatErr(at, "NT_AUXV of %d bytes exceeds the limit of %d", len(desc), maxAuxvBytes)
	}
	if uint64(len(desc))%(2*w) != 0 {
		return formatErr(at, "NT_AUXV of %d bytes is not a whole number of %d-byte entries", len(desc), 2*w)
	}
	seen := make(map[uint64]bool)
	for i := uint64(0); i < uint64(len(desc)); i += 2 * w {
		typ, val := l.word(desc[i:]), l.word(desc[i+w:])
		if typ == atNull {
			break
		}
		if seen[typ] {
			continue
		}
		seen[typ] = true
		switch typ {
		case atPhdr:
			info.auxv.phdr = val
		case atEntry:
			info.auxv.entry = val
		case atExecfn:
			info.auxv.execfn = val
		case atSysinfoEhdr:
			info.auxv.sysinfoEhdr = val
		}
	}
	return nil
}

// parseFileNote decodes NT_FILE: count and page size (words), count
// triples of start, end and file offset in pages (words), then count
// NUL-terminated file names. The mappings are returned sorted by start;
// the kernel and gdb write them so already.
func parseFileNote(l layout, desc []byte, at uint64) ([]mapping, error) {
	w := l.wordSize()
	size := uint64(len(desc))
	if size < 2*w {
		return nil, formatErr(at, "NT_FILE of %d bytes is too short for its count and page size", size)
	}
	count, pageSize := l.word(desc), l.word(desc[w:])
	if count > (size-2*w)/(3*w) {
		return nil, formatErr(at, "NT_FILE count %d does not fit in its %d bytes", count, size)
	}
	if pageSize == 0 && count > 0 {
		return nil, formatErr(at+w, "NT_FILE page size is 0")
	}
	namesAt := 2*w + 3*w*count
	names := desc[namesAt:]
	files := make([]mapping, 0, count)
	intern := make(map[string]string)
	for i := uint64(0); i < count; i++ {
		e := desc[2*w+3*w*i:]
		m := mapping{start: l.word(e), end: l.word(e[w:])}
		pages := l.word(e[2*w:])
		entryAt := at + 2*w + 3*w*i
		if m.end < m.start {
			return nil, formatErr(entryAt+w, "NT_FILE mapping %d ends at %#x before its start %#x", i, m.end, m.start)
		}
		if pages > ^uint64(0)/pageSize {
			return nil, formatErr(entryAt+2*w, "NT_FILE mapping %d has file offset %#x pages of %d bytes: overflow", i, pages, pageSize)
		}
		m.off = pages * pageSize
		nameAt := at + namesAt + (size - namesAt - uint64(len(names)))
		end := bytes.IndexByte(names[:min(len(names), MaxPathBytes+1)], 0)
		switch {
		case end < 0 && len(names) > MaxPathBytes:
			return nil, formatErr(nameAt, "NT_FILE file name %d is longer than %d bytes", i, MaxPathBytes)
		case end < 0:
			return nil, formatErr(nameAt, "NT_FILE file name %d is not NUL-terminated", i)
		}
		path, ok := intern[string(names[:end])]
		if !ok {
			path = string(names[:end])
			intern[path] = path
		}
		m.path = path
		names = names[end+1:]
		files = append(files, m)
	}
	sort.SliceStable(files, func(i, j int) bool { return files[i].start < files[j].start })
	return files, nil
}
