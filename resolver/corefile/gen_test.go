package corefile

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

var generate = flag.Bool("generate", false, "rewrite the seed cores in testdata (see testdata/README.md)")

// TestGenerateSeeds writes testdata: with -generate only.
//
//	go test -run TestGenerateSeeds -generate ./resolver/corefile/
func TestGenerateSeeds(t *testing.T) {
	if !*generate {
		t.Skip("run with -generate to rewrite testdata")
	}
	unstrip := fixtures.Tool(t, "eu-unstrip")
	write := func(name string, data []byte) {
		t.Helper()
		path := filepath.Join("testdata", name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// The reference: eu-unstrip's view of the seed, recorded now.
		cmd := exec.Command(unstrip, "-n", "--core="+path)
		cmd.Env = append(os.Environ(), "LC_ALL=C")
		out, err := cmd.Output()
		if err != nil {
			t.Logf("eu-unstrip %s: %v (no reference recorded)", name, err)
			return
		}
		ref := strings.TrimSuffix(path, ".core") + ".unstrip.txt"
		if err := os.WriteFile(ref, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	for _, fc := range fixtures.Cores(t) {
		if fc.File != "crashme-1.0.core.zst" && fc.File != "greeter-1.1-gcore.core.zst" {
			continue
		}
		full, err := os.ReadFile(fixtures.CoreFile(t, fc.File))
		if err != nil {
			t.Fatal(err)
		}
		write(strings.TrimSuffix(fc.File, ".core.zst")+"-min.core", minimize(t, full))
	}
	for name, s := range map[string]*synthCore{
		"synth-aarch64.core": first(synthProcess(elf.ELFCLASS64, binary.LittleEndian, elf.EM_AARCH64, 0x1000, 4)),
		"synth-ppc32.core":   first(synthProcess(elf.ELFCLASS32, binary.BigEndian, elf.EM_PPC, 0x1000, 4)),
		"synth-gdb.core":     first(synthProcess(elf.ELFCLASS64, binary.LittleEndian, elf.EM_X86_64, 1, 1)),
	} {
		write(name, s.bytes())
	}
	s, _ := synthProcess(elf.ELFCLASS64, binary.LittleEndian, elf.EM_X86_64, 0x1000, 4)
	s.notes = s.notes[:3]
	write("synth-no-nt-file.core", s.bytes())
}

func first[A, B any](a A, _ B) A { return a }

// minimize cuts a 64-bit little-endian core down to what module listing
// reads: the same ELF header (less section headers), program headers and
// notes, and of the memory image only the first page of each segment that
// starts with an ELF header, or all of it up to 8 KiB (the vdso). The
// other segments keep their p_memsz with p_filesz 0: "not dumped".
func minimize(t *testing.T, core []byte) []byte {
	t.Helper()
	ef, err := elf.NewFile(bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	if ef.Class != elf.ELFCLASS64 || ef.ByteOrder != binary.LittleEndian {
		t.Fatalf("minimize handles ELFCLASS64 little-endian only")
	}
	le := binary.LittleEndian
	phoff := uint64(64)
	off := phoff + uint64(len(ef.Progs))*56
	type kept struct {
		p    *elf.Prog
		data []byte
	}
	var segs []kept
	for _, p := range ef.Progs {
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil && p.Filesz > 0 {
			t.Fatal(err)
		}
		if p.Type == elf.PT_LOAD {
			switch {
			case len(data) < 4 || !bytes.Equal(data[:4], []byte(elf.ELFMAG)):
				data = nil
			case len(data) > 0x2000:
				data = data[:0x1000]
			}
		}
		segs = append(segs, kept{p, data})
	}
	hdr := bytes.Clone(core[:64])
	le.PutUint64(hdr[32:], phoff) // e_phoff
	le.PutUint64(hdr[40:], 0)     // e_shoff
	le.PutUint16(hdr[58:], 0)     // e_shentsize
	le.PutUint16(hdr[60:], 0)     // e_shnum
	le.PutUint16(hdr[62:], 0)     // e_shstrndx
	end := off
	for _, s := range segs {
		end += uint64(len(s.data))
	}
	out := hdr
	for _, s := range segs {
		// A segment whose data was dropped points at the end of the
		// file: libdwfl (0.188) rounds p_offset+p_filesz up to a page,
		// and at an unaligned p_offset would read the next segment's
		// bytes (see testdata/README.md).
		at := off
		if len(s.data) == 0 && s.p.Filesz > 0 {
			at = end
		}
		ph := make([]byte, 56)
		le.PutUint32(ph[0:], uint32(s.p.Type))
		le.PutUint32(ph[4:], uint32(s.p.Flags))
		le.PutUint64(ph[8:], at)
		le.PutUint64(ph[16:], s.p.Vaddr)
		le.PutUint64(ph[24:], s.p.Paddr)
		le.PutUint64(ph[32:], uint64(len(s.data)))
		le.PutUint64(ph[40:], s.p.Memsz)
		le.PutUint64(ph[48:], s.p.Align)
		out = append(out, ph...)
		off += uint64(len(s.data))
	}
	for _, s := range segs {
		out = append(out, s.data...)
	}
	return out
}
