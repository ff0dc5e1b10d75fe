package corefile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/retraced/retraced/fixtures"
	"github.com/retraced/retraced/index/elfnote"
)

// TestFixtureCores checks every fixture core against eu-unstrip -n --core:
// the output committed beside it (made chrooted, so names come from the
// link map), and eu-unstrip run now on the same file when installed. The
// vdso, which NT_FILE does not list, must be found through
// AT_SYSINFO_EHDR and named linux-vdso.so.1, as eu-unstrip names it.
func TestFixtureCores(t *testing.T) {
	cores := fixtures.Cores(t)
	if len(cores) == 0 {
		t.Fatal("no fixture cores")
	}
	for _, fc := range cores {
		t.Run(fc.File, func(t *testing.T) {
			name := fixtures.CoreFile(t, fc.File)
			c, err := Open(name)
			if err != nil {
				t.Fatal(err)
			}
			t.Run("committed", func(t *testing.T) {
				compareUnstrip(t, c, fromFixture(fc.Modules))
			})
			t.Run("live", func(t *testing.T) {
				compareUnstrip(t, c, liveUnstrip(t, name))
			})
			t.Run("executable", func(t *testing.T) {
				if c.Executable != fc.Executable {
					t.Errorf("Executable = %q, want %q", c.Executable, fc.Executable)
				}
			})
			t.Run("header", func(t *testing.T) {
				wantSig := int(syscall.SIGSEGV)
				if fc.How == "gcore" {
					wantSig = 0 // gcore of a process waiting in pause(2)
				}
				if c.Machine != elf.EM_X86_64 || c.Class != elf.ELFCLASS64 || c.ByteOrder != binary.LittleEndian {
					t.Errorf("Machine, Class, ByteOrder = %v, %v, %v", c.Machine, c.Class, c.ByteOrder)
				}
				if c.Signal != wantSig || c.Pid <= 0 || c.Truncated {
					t.Errorf("Signal %d, Pid %d, Truncated %v; want %d, > 0, false", c.Signal, c.Pid, c.Truncated, wantSig)
				}
			})
			t.Run("vdso", func(t *testing.T) {
				for _, m := range c.Modules {
					if m.Path == "linux-vdso.so.1" && m.BuildID != nil {
						return
					}
				}
				t.Errorf("no vdso module with a build-id:\n%s", dump(c))
			})
		})
	}
}

// TestFreshCore makes cores now, of a program linked against a library of
// its own, and compares them with eu-unstrip and with the build-ids
// elfnote reads from the files on disk. gdb's gcore always runs; a kernel
// core needs a plain kernel.core_pattern.
func TestFreshCore(t *testing.T) {
	gcc := fixtures.Tool(t, "gcc")
	gdb := fixtures.Tool(t, "gdb")
	dir := t.TempDir()
	dir, err := filepath.EvalSymlinks(dir) // NT_FILE paths are resolved
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lib.c", `int fresh_poke(int *p) { return *p = 1; }
`)
	write("prog.c", `int fresh_poke(int *p);
int main(void) { return fresh_poke(0); }
`)
	fixtures.Run(t, dir, gcc, "-g", "-shared", "-fPIC", "-Wl,--build-id=sha1", "-o", "libfresh.so", "lib.c")
	fixtures.Run(t, dir, gcc, "-g", "-Wl,--build-id=sha1", "-o", "prog", "prog.c", "-L.", "-lfresh", "-Wl,-rpath,"+dir)
	prog := filepath.Join(dir, "prog")
	lib := filepath.Join(dir, "libfresh.so")

	check := func(t *testing.T, core string) {
		c, err := Open(core)
		if err != nil {
			t.Fatal(err)
		}
		if c.Executable != prog {
			t.Errorf("Executable = %q, want %q", c.Executable, prog)
		}
		if c.Signal != int(syscall.SIGSEGV) {
			t.Errorf("Signal = %d, want SIGSEGV", c.Signal)
		}
		compareUnstrip(t, c, liveUnstrip(t, core))
		// Every module whose file is still there has its build-id.
		found := map[string]bool{}
		for _, m := range c.Modules {
			if !filepath.IsAbs(m.Path) || m.FileOffset != 0 {
				continue
			}
			want, err := elfnote.Open(m.Path)
			if err != nil {
				continue // not ELF, gone, or no build-id: nothing to compare
			}
			found[m.Path] = true
			if !bytes.Equal(m.BuildID, want) {
				t.Errorf("%s at %#x: build-id %x, the file has %x", m.Path, m.Start, m.BuildID, want)
			}
		}
		for _, p := range []string{prog, lib} {
			if !found[p] {
				t.Errorf("no module for %s:\n%s", p, dump(c))
			}
		}
	}

	t.Run("gcore", func(t *testing.T) {
		core := filepath.Join(dir, "gcore.core")
		cmd := exec.Command(gdb, "-batch", "-nx", "-ex", "run", "-ex", "gcore "+core, prog)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("gdb: %v\n%s", err, out)
		}
		if _, err := os.Stat(core); err != nil {
			t.Fatalf("gdb wrote no core: %v", err)
		}
		check(t, core)
	})

	t.Run("kernel", func(t *testing.T) {
		pattern, err := os.ReadFile("/proc/sys/kernel/core_pattern")
		if err != nil || strings.HasPrefix(string(pattern), "|") || strings.Contains(string(pattern), "/") {
			t.Skipf("kernel.core_pattern %q does not write cores into the working directory", pattern)
		}
		sub := filepath.Join(dir, "kernel")
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("sh", "-c", `ulimit -c unlimited && exec "$0"`, prog)
		cmd.Dir = sub
		if err := cmd.Run(); err == nil {
			t.Fatal("prog did not crash")
		}
		entries, err := os.ReadDir(sub)
		if err != nil || len(entries) != 1 {
			t.Skipf("no core dumped in %s (pattern %q): %v", sub, pattern, entries)
		}
		check(t, filepath.Join(sub, entries[0].Name()))
	})
}

// TestSynthetic checks cores no kernel here writes: 32-bit and
// big-endian, gdb's byte offsets, no NT_FILE, PN_XNUM, objects split
// across segments or not fully dumped.
func TestSynthetic(t *testing.T) {
	type variant struct {
		name  string
		build func() ([]byte, *Core)
	}
	base := func(class elf.Class, order binary.ByteOrder, m elf.Machine, pageSize, noteAlign uint64, edit func(*synthCore, *Core)) func() ([]byte, *Core) {
		return func() ([]byte, *Core) {
			s, want := synthProcess(class, order, m, pageSize, noteAlign)
			if edit != nil {
				edit(s, want)
			}
			return s.bytes(), want
		}
	}
	le64, be32 := binary.ByteOrder(binary.LittleEndian), binary.ByteOrder(binary.BigEndian)
	cases := []variant{
		{"aarch64", base(elf.ELFCLASS64, le64, elf.EM_AARCH64, 0x1000, 4, nil)},
		{"ppc32-big-endian", base(elf.ELFCLASS32, be32, elf.EM_PPC, 0x1000, 4, nil)},
		{"s390x-big-endian", base(elf.ELFCLASS64, binary.BigEndian, elf.EM_S390, 0x1000, 4, nil)},
		{"i386", base(elf.ELFCLASS32, binary.LittleEndian, elf.EM_386, 0x1000, 4, nil)},
		{"gdb-byte-offsets", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 1, 1, nil)},
		{"64k-pages", base(elf.ELFCLASS64, le64, elf.EM_AARCH64, 0x10000, 4, nil)},
		{"notes-align-8", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 0x1000, 8, nil)},
		{"no-nt-file", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 0x1000, 4, func(s *synthCore, want *Core) {
			s.notes = s.notes[:3]
			// The ELF headers in dumped segments, without paths; the
			// executable's name from AT_EXECFN.
			want.Modules = []Module{
				{Start: synthExe, End: synthExe + 0x1000, BuildID: synthExeID},
				{Start: synthLib, End: synthLib + 0x1000, BuildID: synthLibID},
				{Start: synthExe2, End: synthExe2 + 0x1000, BuildID: synthExeID},
				want.Modules[5],
			}
		})},
		{"siginfo-only", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 0x1000, 4, func(s *synthCore, want *Core) {
			s.notes = s.notes[1:]
			s.notes[0].desc = siginfoDesc(s.layout(), 7)
			want.Signal, want.Pid = 7, 0
		})},
		{"split-across-segments", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 0x1000, 4, func(s *synthCore, want *Core) {
			exe := s.loads[0].data
			s.loads[0] = synthLoad{synthExe, 0x80, exe[:0x80]} // inside the program headers
			s.loads = append(s.loads, synthLoad{synthExe + 0x80, 0x1000 - 0x80, exe[0x80:]})
		})},
		{"not-dumped", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 0x1000, 4, func(s *synthCore, want *Core) {
			s.loads[0].data = s.loads[0].data[:0x80] // p_filesz < p_memsz: the note is not in the file
			want.Modules[0].BuildID = nil
		})},
		{"no-auxv", base(elf.ELFCLASS64, le64, elf.EM_X86_64, 0x1000, 4, func(s *synthCore, want *Core) {
			s.notes = append(s.notes[:2], s.notes[3])
			want.Executable = ""
			want.Modules = want.Modules[:5] // nothing locates the vdso
		})},
		{"entry-only", base(elf.ELFCLASS32, be32, elf.EM_MIPS, 0x1000, 4, func(s *synthCore, want *Core) {
			s.notes[2].desc = auxvDesc(s.layout(), atEntry, synthExe+0x100)
			want.Modules = want.Modules[:5]
		})},
		{"pn-xnum", func() ([]byte, *Core) {
			s, want := synthProcess(elf.ELFCLASS64, binary.LittleEndian, elf.EM_X86_64, 0x1000, 4)
			for i := range 70000 {
				s.loads = append(s.loads, synthLoad{vaddr: 0x100000000 + uint64(i)*0x1000, memsz: 0x1000})
			}
			s.xnum = true
			return s.bytes(), want
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			data, want := tc.build()
			got, err := NewFile(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\n%s\nwant %+v\n%s", *got, dump(got), *want, dump(want))
			}
		})
	}
}

// TestTruncated cuts a fixture core at offsets inside each structure: a
// cut in the header, the program headers or the notes is a *FormatError
// at that structure; a cut in the memory image still lists every module,
// with a build-id exactly for those whose first page is in the file.
func TestTruncated(t *testing.T) {
	fc := fixtures.Cores(t)[0]
	full, err := os.ReadFile(fixtures.CoreFile(t, fc.File))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := NewFile(bytes.NewReader(full), int64(len(full)))
	if err != nil {
		t.Fatal(err)
	}
	// Where things are, from debug/elf rather than from this package.
	ef, err := elf.NewFile(bytes.NewReader(full))
	if err != nil {
		t.Fatal(err)
	}
	var noteOff uint64
	var loads []*elf.Prog
	for _, p := range ef.Progs {
		switch p.Type {
		case elf.PT_NOTE:
			noteOff = p.Off
		case elf.PT_LOAD:
			loads = append(loads, p)
		}
	}
	// firstPage returns the file offset of the page holding the ELF
	// header of the module at addr.
	firstPage := func(addr uint64) uint64 {
		for _, p := range loads {
			if p.Vaddr <= addr && addr < p.Vaddr+p.Filesz {
				return p.Off + addr - p.Vaddr
			}
		}
		t.Fatalf("no PT_LOAD dumps %#x", addr)
		return 0
	}

	for _, tc := range []struct {
		name string
		cut  uint64
		off  int64 // of the *FormatError
	}{
		{"ident", 10, 10},
		{"header", 40, 40},
		{"program-headers", 64 + 100, 64},
		{"notes", noteOff + 100, int64(noteOff)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewFile(bytes.NewReader(full[:tc.cut]), int64(tc.cut))
			var fe *FormatError
			if !errors.As(err, &fe) || fe.Off != tc.off {
				t.Fatalf("NewFile = %v, %v; want *FormatError at %#x", c, err, tc.off)
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("%v does not wrap io.ErrUnexpectedEOF", err)
			}
		})
	}

	// Cuts in the memory image: inside and just after each module's
	// first page, in the middle of the stack, one byte short.
	biggest := loads[0]
	for _, p := range loads {
		if p.Filesz > biggest.Filesz {
			biggest = p
		}
	}
	cuts := []uint64{uint64(len(full)) - 1, biggest.Off + biggest.Filesz/2}
	for _, m := range ref.Modules {
		if m.BuildID != nil {
			p := firstPage(m.Start)
			cuts = append(cuts, p, p+0x100, p+0x1000)
		}
	}
	slices.Sort(cuts)
	cuts = slices.Compact(cuts)
	for _, cut := range cuts {
		t.Run(fmt.Sprintf("memory-%#x", cut), func(t *testing.T) {
			c, err := NewFile(bytes.NewReader(full[:cut]), int64(cut))
			if err != nil {
				t.Fatal(err)
			}
			if !c.Truncated {
				t.Error("Truncated = false")
			}
			if len(c.Modules) != len(ref.Modules) || c.Executable != ref.Executable || c.Signal != ref.Signal {
				t.Fatalf("got\n%swant\n%s", dump(c), dump(ref))
			}
			for i, m := range c.Modules {
				r := ref.Modules[i]
				// The vdso's name is read from its dynamic section, which
				// a cut may remove.
				if m.Start != r.Start || m.End != r.End || m.Path != r.Path && !(r.Path == "linux-vdso.so.1" && m.Path == "[vdso]") {
					t.Errorf("module %d: %#x-%#x %s, want %#x-%#x %s", i, m.Start, m.End, m.Path, r.Start, r.End, r.Path)
				}
				var want []byte
				if r.BuildID != nil && firstPage(r.Start)+0x1000 <= cut {
					want = r.BuildID
				}
				if !bytes.Equal(m.BuildID, want) {
					t.Errorf("%s: build-id %x, want %x", r.Path, m.BuildID, want)
				}
			}
		})
	}
}

// TestNotCore checks that other input is ErrNotCore, not a format error.
func TestNotCore(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	l := layout{order: binary.BigEndian}
	for _, tc := range []struct {
		name   string
		data   []byte
		notELF bool
	}{
		{"test-binary", exe, false},
		{"ppc32-object", elfObject(l, elf.ELFCLASS32, elf.EM_PPC, 0x10000000, synthExeID, ""), false},
		{"empty", nil, true},
		{"short-magic", []byte("\x7fEL"), true},
		{"shell-script", []byte("#!/bin/sh\necho core\n"), true},
		{"zstd-core", mustRead(t, fixtures.Path("cores", fixtures.Cores(t)[0].File)), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewFile(bytes.NewReader(tc.data), int64(len(tc.data)))
			var fe *FormatError
			if !errors.Is(err, ErrNotCore) || errors.As(err, &fe) {
				t.Fatalf("NewFile = %v, %v; want ErrNotCore", c, err)
			}
			if errors.Is(err, elfnote.ErrNotELF) != tc.notELF {
				t.Errorf("errors.Is(%v, elfnote.ErrNotELF) = %v, want %v", err, !tc.notELF, tc.notELF)
			}
		})
	}
	t.Run("open-missing", func(t *testing.T) {
		if _, err := Open(filepath.Join(t.TempDir(), "nothing")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Open = %v, want os.ErrNotExist", err)
		}
	})
	t.Run("negative-size", func(t *testing.T) {
		if _, err := NewFile(bytes.NewReader(nil), -1); err == nil {
			t.Error("no error")
		}
	})
}

func mustRead(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestMalformed damages a synthetic core one field at a time; each is a
// *FormatError at the damaged field.
func TestMalformed(t *testing.T) {
	le := layout{order: binary.LittleEndian, is64: true}
	const phoff = 64
	const noteOff = phoff + 10*56 // ten program headers: notes, nine loads
	// Offsets in the good core's note segment: each note is a 12-byte
	// header, "CORE\0" padded to 8, then the descriptor.
	s0, _ := synthProcess(elf.ELFCLASS64, binary.LittleEndian, elf.EM_X86_64, 0x1000, 4)
	descAt := make([]uint64, len(s0.notes))
	at := uint64(noteOff)
	for i, n := range s0.notes {
		descAt[i] = at + 20
		at += 20 + (uint64(len(n.desc))+3)&^3
	}
	fileAt := descAt[3]
	goodFile := s0.notes[3].desc

	type edit func(s *synthCore, b []byte) []byte
	setNote := func(i int, desc []byte) edit {
		return func(s *synthCore, _ []byte) []byte {
			s.notes[i].desc = desc
			return nil
		}
	}
	patch := func(off int, v ...byte) edit {
		return func(_ *synthCore, b []byte) []byte {
			copy(b[off:], v)
			return b
		}
	}
	u64 := func(v uint64) []byte { return binary.LittleEndian.AppendUint64(nil, v) }
	u16 := func(v uint16) []byte { return binary.LittleEndian.AppendUint16(nil, v) }
	fileWith := func(f func(d []byte) []byte) []byte { return f(bytes.Clone(goodFile)) }

	for _, tc := range []struct {
		name string
		edit edit
		off  uint64
		note bool // found by elfnote.ParseNotes
	}{
		{"elf-class", patch(elf.EI_CLASS, 9), elf.EI_CLASS, false},
		{"elf-data", patch(elf.EI_DATA, 0), elf.EI_DATA, false},
		{"phentsize", patch(54, u16(32)...), 54, false},
		{"xnum-without-sections", patch(56, u16(pnXnum)...), 56, false},
		{"xnum-too-many", func(s *synthCore, _ []byte) []byte {
			b := s.bytes()
			copy(b[56:], u16(pnXnum))
			copy(b[40:], u64(uint64(len(b)))) // e_shoff: a section header 0 appended
			sh := make([]byte, 64)
			binary.LittleEndian.PutUint32(sh[44:], MaxSegments+1)
			return append(b, sh...)
		}, 56, false},
		{"program-headers-past-end", patch(32, u64(1<<40)...), 1 << 40, false},
		{"note-segment-past-end", patch(phoff+8, u64(1<<30)...), 1 << 30, false},
		{"notes-over-limit", patch(phoff+32, u64(MaxNoteBytes+1)...), phoff, false},
		{"note-alignment", patch(phoff+48, u64(16)...), noteOff, true},
		{"note-namesz", patch(noteOff, 0xff, 0xff, 0, 0), noteOff, true},
		{"note-descsz", patch(noteOff+4, 0xff, 0xff, 0xff, 0xff), noteOff + 4, true},
		{"prstatus-short", setNote(0, make([]byte, 20)), descAt[0], false},
		{"siginfo-short", setNote(1, make([]byte, 2)), descAt[1], false},
		{"auxv-odd", setNote(2, make([]byte, 24)), descAt[2], false},
		{"auxv-huge", setNote(2, make([]byte, maxAuxvBytes+16)), descAt[2], false},
		{"file-short", setNote(3, make([]byte, 12)), fileAt, false},
		{"file-count", setNote(3, fileWith(func(d []byte) []byte { copy(d, u64(1<<60)); return d })), fileAt, false},
		{"file-page-size-0", setNote(3, fileWith(func(d []byte) []byte { copy(d[8:], u64(0)); return d })), fileAt + 8, false},
		{"file-end-before-start", setNote(3, fileWith(func(d []byte) []byte { copy(d[16+8:], u64(1)); return d })), fileAt + 16 + 8, false},
		{"file-offset-overflow", setNote(3, fileWith(func(d []byte) []byte { copy(d[16+16:], u64(1<<60)); return d })), fileAt + 16 + 16, false},
		{"file-name-unterminated", setNote(3, fileWith(func(d []byte) []byte { return d[:len(d)-1] })), fileAt + uint64(len(goodFile)) - 1 - uint64(len("/usr/bin/synth")), false},
		{"file-name-too-long", setNote(3, fileDesc(le, 0x1000, []mapping{{0x1000, 0x2000, 0, strings.Repeat("x", MaxPathBytes+1)}})), fileAt + 16 + 24, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := synthProcess(elf.ELFCLASS64, binary.LittleEndian, elf.EM_X86_64, 0x1000, 4)
			b := tc.edit(s, s.bytes())
			if b == nil {
				b = s.bytes()
			}
			c, err := NewFile(bytes.NewReader(b), int64(len(b)))
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("NewFile = %v, %v; want *FormatError", c, err)
			}
			if fe.Off != int64(tc.off) {
				t.Errorf("error %q at %#x, want %#x", err, fe.Off, tc.off)
			}
			if want := fmt.Sprintf("at byte %#x", tc.off); !strings.HasPrefix(err.Error(), "corefile: ") || !strings.HasSuffix(err.Error(), want) {
				t.Errorf("error %q does not read \"corefile: ... %s\"", err, want)
			}
			var ne *elfnote.FormatError
			if errors.As(err, &ne) != tc.note {
				t.Errorf("error %q wraps an *elfnote.FormatError: %v, want %v", err, !tc.note, tc.note)
			}
		})
	}
}

// failingReader fails every read that reaches past off.
type failingReader struct {
	data []byte
	off  int64
}

var errDisk = errors.New("disk on fire")

func (r failingReader) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) > r.off {
		return 0, errDisk
	}
	return copy(p, r.data[off:]), nil
}

// TestReaderErrors checks that a failing reader's error comes back
// wrapped, wherever it strikes, and that a reader holding less than the
// size it was given is a *FormatError.
func TestReaderErrors(t *testing.T) {
	data := mustRead(t, filepath.Join("testdata", "crashme-1.0-min.core"))
	ef, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	var noteOff, memOff int64
	for _, p := range ef.Progs {
		if p.Type == elf.PT_NOTE {
			noteOff = int64(p.Off)
		}
		if p.Type == elf.PT_LOAD && p.Filesz > 0 && memOff == 0 {
			memOff = int64(p.Off)
		}
	}
	for _, tc := range []struct {
		name string
		off  int64
	}{
		{"header", 0},
		{"program-headers", 100},
		{"notes", noteOff + 10},
		{"memory", memOff + 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewFile(failingReader{data, tc.off}, int64(len(data)))
			if !errors.Is(err, errDisk) {
				t.Fatalf("NewFile = %v, %v; want an error wrapping %v", c, err, errDisk)
			}
		})
	}
	t.Run("size-larger-than-data", func(t *testing.T) {
		cut := noteOff + 10
		c, err := NewFile(bytes.NewReader(data[:cut]), int64(len(data)))
		var fe *FormatError
		if !errors.As(err, &fe) || fe.Off != cut {
			t.Fatalf("NewFile = %v, %v; want *FormatError at %#x", c, err, cut)
		}
	})
}
