package corefile

import (
	"debug/elf"
	"errors"
	"sort"

	"github.com/retraced/retraced/index/elfnote"
)

// findModules lists the modules: the runs of NT_FILE mappings, the vdso,
// or, without NT_FILE, the dumped segments that start with an ELF header.
func (c *Core) findModules(m *memory, n *noteInfo) error {
	objs := &objects{m: m, seen: make(map[uint64]object)}
	vdso := n.auxv.sysinfoEhdr
	if n.haveFile {
		for _, g := range group(n.files) {
			mod := Module{Start: g.start, End: g.end, FileOffset: g.off, Path: g.path}
			if g.off == 0 {
				o, err := objs.at(g.start, false)
				if err != nil {
					return err
				}
				mod.BuildID = o.buildID
			}
			c.Modules = append(c.Modules, mod)
		}
	} else {
		for _, s := range m.segs {
			if s.vaddr == vdso || s.avail < 4 {
				continue
			}
			b, err := m.read(s.vaddr, 4)
			if errors.Is(err, errUnavailable) {
				continue
			}
			if err != nil {
				return err
			}
			if !elfnote.IsELF(b) {
				continue
			}
			o, err := objs.at(s.vaddr, false)
			if err != nil {
				return err
			}
			c.Modules = append(c.Modules, Module{Start: s.vaddr, End: m.segmentEnd(s.vaddr), BuildID: o.buildID})
		}
	}

	// The vdso is no file, so NT_FILE does not list it; the kernel dumps
	// it whole. List it when the core holds it.
	if vdso != 0 && m.find(vdso) >= 0 && !c.hasModuleAt(vdso) {
		o, err := objs.at(vdso, true)
		if err != nil {
			return err
		}
		name := o.soname
		if name == "" {
			name = "[vdso]"
		}
		c.Modules = append(c.Modules, Module{Start: vdso, End: m.segmentEnd(vdso), Path: name, BuildID: o.buildID})
	}
	sort.SliceStable(c.Modules, func(i, j int) bool { return c.Modules[i].Start < c.Modules[j].Start })
	return nil
}

func (c *Core) hasModuleAt(addr uint64) bool {
	for _, mod := range c.Modules {
		if mod.Start == addr {
			return true
		}
	}
	return false
}

// group joins the NT_FILE mappings (sorted by start) into runs: a run is
// one file's consecutive mappings, and a mapping at file offset 0 starts a
// new run, as when a file is mapped twice.
func group(files []mapping) []mapping {
	var runs []mapping
	for _, f := range files {
		if n := len(runs); n > 0 && runs[n-1].path == f.path && f.off != 0 {
			runs[n-1].end = max(runs[n-1].end, f.end)
			continue
		}
		runs = append(runs, f)
	}
	return runs
}

// findExecutable sets c.Executable from the auxiliary vector.
func (c *Core) findExecutable(m *memory, a auxv) error {
	for _, addr := range []uint64{a.phdr, a.entry} {
		if addr == 0 {
			continue
		}
		for _, mod := range c.Modules {
			if mod.Start <= addr && addr < mod.End && mod.Path != "" {
				c.Executable = mod.Path
				return nil
			}
		}
	}
	if a.execfn == 0 {
		return nil
	}
	s, err := m.readString(a.execfn, MaxPathBytes)
	if errors.Is(err, errUnavailable) {
		return nil
	}
	if err != nil {
		return err
	}
	c.Executable = s
	return nil
}

// An object is what is read of an ELF object from its image in memory.
type object struct {
	buildID []byte
	soname  string
}

// objects reads ELF objects from memory, each address once.
type objects struct {
	m    *memory
	seen map[uint64]object
}

// at reads the object whose ELF header is at start. Whatever the core
// does not hold, or holds malformed, is left empty: only a failing
// reader is an error.
func (ob *objects) at(start uint64, wantSoname bool) (object, error) {
	if o, ok := ob.seen[start]; ok {
		return o, nil
	}
	o, err := readObject(ob.m, start, wantSoname)
	if errors.Is(err, errUnavailable) {
		err = nil
	}
	if err != nil {
		return object{}, err
	}
	ob.seen[start] = o
	return o, nil
}

// readObject reads the ELF header and program headers at start, finds the
// load bias, and reads the build-id from the PT_NOTE segments and, if
// asked, DT_SONAME from PT_DYNAMIC. It returns the parts it could read
// with errUnavailable or nil; other errors come from the reader.
func readObject(m *memory, start uint64, wantSoname bool) (object, error) {
	var o object
	ident, err := m.read(start, elf.EI_NIDENT)
	if err != nil {
		return o, err
	}
	if !elfnote.IsELF(ident) {
		return o, nil
	}
	_, l, err := parseIdent(ident)
	if err != nil {
		return o, nil
	}
	c := l.idx()
	ehdr, err := m.read(start, ehdrSize[c])
	if err != nil {
		return o, err
	}
	phoff := l.word(ehdr[offPhoff[c]:])
	phentsize := uint64(l.order.Uint16(ehdr[offPhentsize[c]:]))
	phnum := uint64(l.order.Uint16(ehdr[offPhnum[c]:]))
	if phentsize != phdrSize[c] || phnum == 0 || phnum > maxObjectPhnum || start+phoff < start {
		return o, nil
	}
	table, err := m.read(start+phoff, phnum*phentsize)
	if err != nil {
		return o, err
	}
	progs := make([]prog, phnum)
	for i := range progs {
		progs[i] = l.readProg(table[uint64(i)*phentsize:])
	}

	// The load bias: where the segment holding file offset 0 was
	// mapped, less its link-time address. Since p_vaddr and p_offset
	// agree modulo the page size, p_vaddr-p_offset is where the file's
	// first page was linked to go; it went to start.
	var bias uint64
	found := false
	for _, ph := range progs {
		if ph.typ != elf.PT_LOAD || ph.vaddr < ph.off {
			continue
		}
		align := ph.align
		if align < 2 || align&(align-1) != 0 {
			align = 1
		}
		if ph.off&^(align-1) == 0 {
			bias = start - (ph.vaddr - ph.off)
			found = true
			break
		}
	}
	if !found {
		return o, nil
	}

	var noteBytes uint64
	for _, ph := range progs {
		if ph.typ != elf.PT_NOTE || ph.filesz == 0 || o.buildID != nil {
			continue
		}
		if ph.filesz > maxObjectNoteBytes-noteBytes {
			break
		}
		noteBytes += ph.filesz
		data, err := m.read(ph.vaddr+bias, ph.filesz)
		if errors.Is(err, errUnavailable) {
			continue
		}
		if err != nil {
			return o, err
		}
		o.buildID = findBuildID(data, l, ph.align)
	}
	if wantSoname {
		name, err := readSoname(m, l, progs, start, bias)
		if err != nil && !errors.Is(err, errUnavailable) {
			return o, err
		}
		o.soname = name
	}
	return o, nil
}

// findBuildID returns a copy of the first GNU build-id in a note blob,
// under the index's rule (elfnote.BlobBuildID: owner name exactly
// "GNU\0", 1 to elfnote.MaxBuildIDBytes bytes; libdwfl wants 3 or more),
// or nil. Notes after a malformed one are not seen, as in libdwfl.
func findBuildID(data []byte, l layout, align uint64) []byte {
	id, err := elfnote.BlobBuildID(data, l.order, align, 0)
	if err != nil {
		return nil // none, or malformed: the module has no build-id
	}
	return id
}

// Dynamic section tags.
const (
	dtNull   = 0
	dtStrtab = 5
	dtStrsz  = 10
	dtSoname = 14
)

// readSoname returns DT_SONAME of the object at start, or "".
func readSoname(m *memory, l layout, progs []prog, start, bias uint64) (string, error) {
	var dyn *prog
	end := start
	for i, ph := range progs {
		switch ph.typ {
		case elf.PT_DYNAMIC:
			if dyn == nil {
				dyn = &progs[i]
			}
		case elf.PT_LOAD:
			if e := ph.vaddr + bias + ph.memsz; e > end {
				end = e
			}
		}
	}
	entsize := 2 * l.wordSize()
	if dyn == nil || dyn.filesz == 0 || dyn.filesz > maxDynamicBytes {
		return "", nil
	}
	data, err := m.read(dyn.vaddr+bias, dyn.filesz-dyn.filesz%entsize)
	if err != nil {
		return "", err
	}
	var strtab, strsz, soname uint64
	haveSoname := false
	for i := uint64(0); i+entsize <= uint64(len(data)); i += entsize {
		tag, val := l.word(data[i:]), l.word(data[i+l.wordSize():])
		switch tag {
		case dtNull:
			i = uint64(len(data))
		case dtStrtab:
			strtab = val
		case dtStrsz:
			strsz = val
		case dtSoname:
			soname, haveSoname = val, true
		}
	}
	if !haveSoname || strtab == 0 || soname >= strsz {
		return "", nil
	}
	// In the vdso, .dynamic is not relocated: DT_STRTAB is a link-time
	// address. Apply the bias when that lands it inside the object, as
	// libdwfl does.
	if (strtab < start || strtab >= end) && strtab+bias >= start && strtab+bias < end {
		strtab += bias
	}
	return m.readString(strtab+soname, min(maxSonameBytes, strsz-soname))
}
