package elfnote

import (
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

var buildIDLine = regexp.MustCompile(`(?m)^\s*Build ID: ([0-9a-f]+)\s*$`)

// referenceBuildID returns the build-id readelf -n prints for path, "" if
// it prints none, and checks that eu-readelf -n agrees when installed.
func referenceBuildID(t testing.TB, path string) string {
	t.Helper()
	id := firstBuildID(fixtures.Run(t, "", fixtures.Tool(t, "readelf"), "-n", path))
	if eu, err := exec.LookPath("eu-readelf"); err == nil {
		if euID := firstBuildID(fixtures.Run(t, "", eu, "-n", path)); euID != id {
			t.Fatalf("readelf -n says build-id %q, eu-readelf -n says %q", id, euID)
		}
	}
	return id
}

// checkCorrupt checks that readelf -n warns of a corrupt note in path and
// prints no build-id, and that BuildID returns a *FormatError for it.
func checkCorrupt(t *testing.T, path string) {
	t.Helper()
	cmd := exec.Command(fixtures.Tool(t, "readelf"), "-n", path)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("readelf -n %s: %v\n%s", path, err, stderr.String())
	}
	if id := firstBuildID(stdout.String()); id != "" || !strings.Contains(stderr.String(), "Warning: note with invalid") {
		t.Fatalf("readelf -n prints build-id %q and warns %q; want a corrupt note", id, stderr.String())
	}
	id, err := Open(path)
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("Open = %x, %v; want *FormatError", id, err)
	}
}

func firstBuildID(out string) string {
	if m := buildIDLine.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// checkBuildID runs BuildID on path and compares it with want, a hex id or
// "" for ErrNoBuildID.
func checkBuildID(t *testing.T, path, want string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	id, err := BuildID(f)
	if want == "" {
		if !errors.Is(err, ErrNoBuildID) {
			t.Fatalf("BuildID = %x, %v; want ErrNoBuildID", id, err)
		}
		return
	}
	if err != nil {
		t.Fatalf("BuildID: %v; want %s", err, want)
	}
	if got := hex.EncodeToString(id); got != want {
		t.Fatalf("BuildID = %s, want %s (readelf -n)", got, want)
	}
}

const helloC = `#include <stdio.h>
int main(void) { puts("hello"); return 0; }
`

const libC = `int answer(void) { return 42; }
`

// freestandingC needs neither libc nor crt files, so it links with gcc -m32
// even where no 32-bit libc is installed.
const freestandingC = `void _start(void) { for (;;) ; }
`

// TestBuildIDGCC builds real ELF files with gcc and binutils and checks
// BuildID against readelf -n (and eu-readelf -n) on each.
func TestBuildIDGCC(t *testing.T) {
	gcc := fixtures.Tool(t, "gcc")
	fixtures.Tool(t, "readelf")
	dir := t.TempDir()
	for name, src := range map[string]string{"hello.c": helloC, "lib.c": libC, "free.c": freestandingC} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cc := func(t *testing.T, args ...string) { fixtures.Run(t, dir, gcc, args...) }
	// Built first: the separate debug files below are split from it.
	cc(t, "-g", "-O2", "-Wl,--build-id=sha1", "-o", "exe-sha1", "hello.c")
	exeID := referenceBuildID(t, filepath.Join(dir, "exe-sha1"))
	if len(exeID) != 40 {
		t.Fatalf("readelf -n: build-id %q of exe-sha1 is not sha1", exeID)
	}

	tests := []struct {
		name      string
		build     func(t *testing.T) // writes dir/name
		want      string             // expected id if not readelf's: exeID for debug files
		malformed bool               // readelf -n warns of a corrupt note: want a *FormatError
	}{
		{name: "exe-sha1", build: func(t *testing.T) {}},
		{name: "exe-md5", build: func(t *testing.T) { cc(t, "-Wl,--build-id=md5", "-o", "exe-md5", "hello.c") }},
		{name: "exe-uuid", build: func(t *testing.T) { cc(t, "-Wl,--build-id=uuid", "-o", "exe-uuid", "hello.c") }},
		{name: "exe-hex-4-bytes", build: func(t *testing.T) { cc(t, "-Wl,--build-id=0x01020304", "-o", "exe-hex-4-bytes", "hello.c") }},
		{name: "exe-hex-1-byte", build: func(t *testing.T) {
			// ld leaves the descriptor unpadded; both readelfs call it corrupt.
			cc(t, "-Wl,--build-id=0xab", "-o", "exe-hex-1-byte", "hello.c")
		}, malformed: true},
		{name: "exe-hex-64-bytes", build: func(t *testing.T) {
			cc(t, "-Wl,--build-id=0x"+strings.Repeat("5a", 64), "-o", "exe-hex-64-bytes", "hello.c")
		}},
		{name: "exe-no-pie", build: func(t *testing.T) { cc(t, "-no-pie", "-Wl,--build-id=sha1", "-o", "exe-no-pie", "hello.c") }},
		{name: "exe-static", build: func(t *testing.T) {
			cmd := exec.Command(gcc, "-static", "-Os", "-Wl,--build-id=sha1", "-o", "exe-static", "hello.c")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Skipf("gcc -static does not work here (no libc.a?): %v\n%s", err, out)
			}
		}},
		{name: "exe-stripped", build: func(t *testing.T) {
			fixtures.Run(t, dir, fixtures.Tool(t, "strip"), "--strip-all", "-o", "exe-stripped", "exe-sha1")
		}, want: exeID},
		{name: "exe-nobuildid", build: func(t *testing.T) { cc(t, "-Wl,--build-id=none", "-o", "exe-nobuildid", "hello.c") }},
		{name: "lib.so", build: func(t *testing.T) { cc(t, "-shared", "-fPIC", "-Wl,--build-id=sha1", "-o", "lib.so", "lib.c") }},
		{name: "lib.o", build: func(t *testing.T) { cc(t, "-c", "-o", "lib.o", "lib.c") }}, // ld adds build-ids, cc -c does not
		{name: "objcopy.debug", build: func(t *testing.T) {
			fixtures.Run(t, dir, fixtures.Tool(t, "objcopy"), "--only-keep-debug", "exe-sha1", "objcopy.debug")
		}, want: exeID},
		{name: "eu-strip.debug", build: func(t *testing.T) {
			fixtures.Run(t, dir, fixtures.Tool(t, "eu-strip"), "-f", "eu-strip.debug", "-o", "eu-stripped", "exe-sha1")
		}, want: exeID},
		{name: "no-section-headers", build: func(t *testing.T) {
			// As sstrip leaves a file: only program headers, so the id
			// must come from the PT_NOTE segment.
			data := readFile(t, filepath.Join(dir, "exe-sha1"))
			le.PutUint64(data[0x28:], 0) // e_shoff
			le.PutUint16(data[0x3c:], 0) // e_shnum
			le.PutUint16(data[0x3e:], 0) // e_shstrndx
			writeFile(t, filepath.Join(dir, "no-section-headers"), data)
		}, want: exeID},
		{name: "exe-32", build: func(t *testing.T) {
			cmd := exec.Command(gcc, "-m32", "-Wl,--build-id=sha1", "-o", "exe-32", "hello.c")
			cmd.Dir = dir
			if _, err := cmd.CombinedOutput(); err == nil {
				return
			}
			// No 32-bit libc: a freestanding 32-bit executable still
			// exercises ELFCLASS32.
			cmd = exec.Command(gcc, "-m32", "-nostdlib", "-static", "-Wl,--build-id=sha1", "-o", "exe-32", "free.c")
			cmd.Dir = dir
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Skipf("gcc -m32 does not work here: %v\n%s", err, out)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.build(t)
			path := filepath.Join(dir, tt.name)
			if tt.malformed {
				checkCorrupt(t, path)
				return
			}
			want := referenceBuildID(t, path)
			if tt.want != "" && want != tt.want {
				t.Fatalf("readelf -n: build-id %q, want %q", want, tt.want)
			}
			checkBuildID(t, path, want)
		})
	}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestSeeds checks the committed seeds against the outcomes testdata/gen.sh
// recorded from readelf -n.
func TestSeeds(t *testing.T) {
	f, err := os.Open("testdata/expected.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
			continue
		}
		if len(fields) != 2 {
			t.Fatalf("testdata/expected.txt: bad line %q", sc.Text())
		}
		name, want := fields[0], fields[1]
		n++
		t.Run(name, func(t *testing.T) {
			id, err := Open(filepath.Join("testdata", name))
			var fe *FormatError
			switch want {
			case "none":
				if !errors.Is(err, ErrNoBuildID) {
					t.Fatalf("Open = %x, %v; want ErrNoBuildID", id, err)
				}
			case "notelf":
				if !errors.Is(err, ErrNotELF) {
					t.Fatalf("Open = %x, %v; want ErrNotELF", id, err)
				}
			case "format":
				if !errors.As(err, &fe) {
					t.Fatalf("Open = %x, %v; want *FormatError", id, err)
				}
				if !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "at byte 0x") {
					t.Errorf("error %q names neither the file nor the offset", err)
				}
			default:
				if err != nil || hex.EncodeToString(id) != want {
					t.Fatalf("Open = %x, %v; want %s", id, err, want)
				}
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("testdata/expected.txt lists no seeds")
	}
}

func TestOpenMissing(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Open(missing) = %v, want fs.ErrNotExist", err)
	}
}

// tinyLayout locates, with debug/elf, the bytes the malformed cases patch
// in testdata/tiny (an x86-64 little-endian PIE).
type tinyLayout struct {
	data                  []byte
	shoff, phoff          int64
	noteOff, noteHdr      int64 // .note.gnu.build-id data and section header
	notePhdr              int64 // the PT_NOTE program header that covers it
	strtabHdr             int64 // .shstrtab section header
	shnum, shentsz, phent int64
}

func loadTiny(t *testing.T) tinyLayout {
	t.Helper()
	data := readFile(t, "testdata/tiny")
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	l := tinyLayout{
		data:    data,
		phoff:   int64(le.Uint64(data[0x20:])),
		shoff:   int64(le.Uint64(data[0x28:])),
		phent:   int64(le.Uint16(data[0x36:])),
		shentsz: int64(le.Uint16(data[0x3a:])),
		shnum:   int64(le.Uint16(data[0x3c:])),
	}
	l.strtabHdr = l.shoff + int64(le.Uint16(data[0x3e:]))*l.shentsz
	for i, s := range f.Sections {
		if s.Name == ".note.gnu.build-id" {
			l.noteOff, l.noteHdr = int64(s.Offset), l.shoff+int64(i)*l.shentsz
		}
	}
	for i, p := range f.Progs {
		if p.Type == elf.PT_NOTE && int64(p.Off) <= l.noteOff && l.noteOff < int64(p.Off+p.Filesz) {
			l.notePhdr = l.phoff + int64(i)*l.phent
		}
	}
	if l.noteOff == 0 || l.notePhdr == 0 {
		t.Fatal("testdata/tiny has no .note.gnu.build-id inside a PT_NOTE")
	}
	return l
}

// TestBuildIDMalformed patches a real binary and checks the kind of error
// and the offset it carries.
func TestBuildIDMalformed(t *testing.T) {
	l := loadTiny(t)
	const tinyID = "f3c653f8dd10b32a6a9204436a11157b7c9d738d" // testdata/expected.txt
	patched := func(edits ...func(b []byte)) func() []byte {
		return func() []byte {
			b := bytes.Clone(l.data)
			for _, e := range edits {
				e(b)
			}
			return b
		}
	}
	u16 := func(off int64, v uint16) func([]byte) { return func(b []byte) { le.PutUint16(b[off:], v) } }
	u32 := func(off int64, v uint32) func([]byte) { return func(b []byte) { le.PutUint32(b[off:], v) } }
	u64 := func(off int64, v uint64) func([]byte) { return func(b []byte) { le.PutUint64(b[off:], v) } }
	prefix := func(n int) func() []byte { return func() []byte { return bytes.Clone(l.data[:n]) } }
	raw := func(s string) func() []byte { return func() []byte { return []byte(s) } }
	past := uint64(len(l.data) + 0x1000)

	tests := []struct {
		name    string
		input   func() []byte
		wantErr error // ErrNotELF or ErrNoBuildID, or nil
		wantOff int64 // offset of the *FormatError when wantErr and wantID are unset
		wantID  string
	}{
		{name: "empty", input: raw(""), wantErr: ErrNotELF},
		{name: "3 bytes of magic", input: raw("\x7fEL"), wantErr: ErrNotELF},
		{name: "shell script", input: raw("#!/bin/sh\nexit 0\n"), wantErr: ErrNotELF},
		{name: "PE", input: raw("MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"), wantErr: ErrNotELF},
		{name: "magic only", input: prefix(4), wantOff: 4},
		{name: "identification only", input: prefix(16), wantOff: 16},
		{name: "header cut", input: prefix(63), wantOff: 63},
		{name: "program headers cut", input: prefix(200), wantOff: l.phoff},
		{name: "section headers cut", input: prefix(len(l.data) - 100), wantOff: l.shoff},
		{name: "unknown class", input: patched(func(b []byte) { b[4] = 3 }), wantOff: 4},
		{name: "unknown data encoding", input: patched(func(b []byte) { b[5] = 0 }), wantOff: 5},
		{name: "unknown version", input: patched(func(b []byte) { b[6] = 2 }), wantOff: 0}, // debug/elf's offset
		{name: "shstrndx out of range", input: patched(u16(0x3e, 0x7000)), wantOff: 0},
		{name: "build-id namesz past section end", input: patched(u32(l.noteOff, 0xffff)), wantOff: l.noteOff},
		{name: "build-id descsz past section end", input: patched(u32(l.noteOff+4, 0xffff)), wantOff: l.noteOff + 4},
		{name: "build-id descsz 0", input: patched(u32(l.noteOff+4, 0)), wantOff: l.noteOff + 4},
		{name: "build-id descsz 65", input: patched(u32(l.noteOff+4, 65)), wantOff: l.noteOff + 4},
		{name: "build-id type 4", input: patched(u32(l.noteOff+8, 4)), wantErr: ErrNoBuildID},
		{
			name:    "note section past EOF", // PT_NOTE is intact but not read: the file has sections
			input:   patched(u64(l.noteHdr+24, past)),
			wantOff: int64(past),
		},
		{
			name:   "no section headers",
			input:  patched(u64(0x28, 0), u16(0x3c, 0), u16(0x3e, 0)),
			wantID: tinyID,
		},
		{
			name:    "no section headers, PT_NOTE past EOF",
			input:   patched(u64(0x28, 0), u16(0x3c, 0), u16(0x3e, 0), u64(l.notePhdr+8, past)),
			wantOff: int64(past),
		},
		{
			name:    "no section headers, PT_NOTE alignment 3",
			input:   patched(u64(0x28, 0), u16(0x3c, 0), u16(0x3e, 0), u64(l.notePhdr+48, 3)),
			wantOff: l.noteOff,
		},
		{
			name:    "note section of 2^62 bytes",
			input:   patched(u64(l.noteHdr+32, 1<<62)),
			wantOff: l.noteOff,
		},
		{
			name:    "note section alignment 16",
			input:   patched(u64(l.noteHdr+48, 16)),
			wantOff: l.noteOff,
		},
		{
			name:    "extended section count too large",
			input:   patched(u16(0x3c, 0), u64(l.shoff+32, 1<<20)),
			wantOff: l.shoff + 32,
		},
		{
			name:    "compressed section-name table",
			input:   patched(u64(l.strtabHdr+8, uint64(elf.SHF_COMPRESSED))),
			wantOff: l.strtabHdr + 8,
		},
		{
			name:    "section-name table of 2^40 bytes",
			input:   patched(u64(l.strtabHdr+32, 1<<40)),
			wantOff: l.strtabHdr + 32,
		},
		{
			name:    "program header table of 4 GiB",
			input:   patched(u16(0x36, 0xffff), u16(0x38, 0xffff)),
			wantOff: 0x36,
		},
		{
			name:    "section-name table past EOF",
			input:   patched(u64(l.strtabHdr+24, past)),
			wantOff: int64(past),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := BuildID(bytes.NewReader(tt.input()))
			switch {
			case tt.wantID != "":
				if err != nil || hex.EncodeToString(id) != tt.wantID {
					t.Fatalf("BuildID = %x, %v; want %s", id, err, tt.wantID)
				}
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("BuildID = %x, %v; want %v", id, err, tt.wantErr)
				}
			default:
				if id != nil {
					t.Errorf("BuildID returned id %x with an error", id)
				}
				checkFormatError(t, err, tt.wantOff)
				if !strings.Contains(err.Error(), "at byte 0x") {
					t.Errorf("error %q does not name its offset", err)
				}
			}
		})
	}
}

// TestBuildIDDebugElfError checks that debug/elf's own errors stay
// reachable through the *FormatError.
func TestBuildIDDebugElfError(t *testing.T) {
	data := bytes.Clone(loadTiny(t).data)
	data[6] = 2 // EI_VERSION
	_, err := BuildID(bytes.NewReader(data))
	var ee *elf.FormatError
	if !errors.As(err, &ee) {
		t.Fatalf("BuildID error %v does not wrap an *elf.FormatError", err)
	}
}

// synthELF writes a minimal ELF file: a header, one PT_NOTE per note blob,
// the blobs, and section headers naming them. readelf reads it like any
// other, which lets the tests cover byte orders and classes gcc here
// cannot produce.
func synthELF(is64 bool, order binary.ByteOrder, blobs []synthBlob) []byte {
	ehsize, phent, shent := 52, 32, 40
	class, machine := elf.ELFCLASS32, elf.EM_PPC
	if is64 {
		ehsize, phent, shent = 64, 56, 64
		class, machine = elf.ELFCLASS64, elf.EM_PPC64
	}
	data := elf.ELFDATA2LSB
	if order == binary.BigEndian {
		data = elf.ELFDATA2MSB
	}

	out := make([]byte, ehsize+phent*len(blobs))
	shstrtab := []byte("\x00.shstrtab\x00")
	type placed struct{ off, size, align, name int }
	var at []placed
	for _, b := range blobs {
		out = pad(out, max(int(b.align), 4))
		at = append(at, placed{len(out), len(b.data), int(b.align), len(shstrtab)})
		out = append(out, b.data...)
		shstrtab = append(append(shstrtab, b.name...), 0)
	}
	strOff := len(out)
	out = pad(append(out, shstrtab...), 8)
	shoff := len(out)
	out = append(out, make([]byte, shent*(len(blobs)+2))...)

	word := func(off, v int) {
		if is64 {
			order.PutUint64(out[off:], uint64(v))
		} else {
			order.PutUint32(out[off:], uint32(v))
		}
	}
	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS], out[elf.EI_DATA], out[elf.EI_VERSION] = byte(class), byte(data), byte(elf.EV_CURRENT)
	order.PutUint16(out[16:], uint16(elf.ET_EXEC))
	order.PutUint16(out[18:], uint16(machine))
	order.PutUint32(out[20:], uint32(elf.EV_CURRENT))
	w := 4
	if is64 {
		w = 8
	}
	// e_entry, e_phoff, e_shoff follow e_version; then flags and the halves.
	word(24+w, ehsize)
	word(24+2*w, shoff)
	h := 24 + 3*w + 4
	for i, v := range []int{ehsize, phent, len(blobs), shent, len(blobs) + 2, len(blobs) + 1} {
		order.PutUint16(out[h+2*i:], uint16(v))
	}
	for i, p := range at {
		ph := ehsize + i*phent
		order.PutUint32(out[ph:], uint32(elf.PT_NOTE))
		if is64 {
			order.PutUint32(out[ph+4:], uint32(elf.PF_R))
			order.PutUint64(out[ph+8:], uint64(p.off))
			order.PutUint64(out[ph+32:], uint64(p.size))
			order.PutUint64(out[ph+40:], uint64(p.size))
			order.PutUint64(out[ph+48:], uint64(p.align))
		} else {
			order.PutUint32(out[ph+4:], uint32(p.off))
			order.PutUint32(out[ph+16:], uint32(p.size))
			order.PutUint32(out[ph+20:], uint32(p.size))
			order.PutUint32(out[ph+24:], uint32(elf.PF_R))
			order.PutUint32(out[ph+28:], uint32(p.align))
		}
	}
	section := func(i, name int, typ elf.SectionType, off, size, align int) {
		sh := shoff + i*shent
		order.PutUint32(out[sh:], uint32(name))
		order.PutUint32(out[sh+4:], uint32(typ))
		if is64 {
			order.PutUint64(out[sh+24:], uint64(off))
			order.PutUint64(out[sh+32:], uint64(size))
			order.PutUint64(out[sh+48:], uint64(align))
		} else {
			order.PutUint32(out[sh+16:], uint32(off))
			order.PutUint32(out[sh+20:], uint32(size))
			order.PutUint32(out[sh+32:], uint32(align))
		}
	}
	for i, p := range at {
		section(i+1, p.name, elf.SHT_NOTE, p.off, p.size, p.align)
	}
	section(len(blobs)+1, 1, elf.SHT_STRTAB, strOff, len(shstrtab), 1)
	return out
}

type synthBlob struct {
	name  string
	align uint64
	data  []byte
}

// TestBuildIDSynthetic checks hand-assembled files, in byte orders and
// classes gcc here cannot produce, against readelf -n.
func TestBuildIDSynthetic(t *testing.T) {
	fixtures.Tool(t, "readelf")
	id65 := bytes.Repeat([]byte{0xee}, 65)
	tests := []struct {
		name    string
		is64    bool
		order   binary.ByteOrder
		blobs   func(o binary.ByteOrder) []synthBlob
		wantOff bool // readelf prints an id, but BuildID must refuse it
		// readelf prints an id, but libdwfl (hence debuginfod) wants an
		// owner name of exactly "GNU\0", and so does BuildID.
		notLibdwfl bool
	}{
		{name: "ELF64 big-endian", is64: true, order: be},
		{name: "ELF32 big-endian", order: be},
		{name: "ELF32 little-endian", order: le},
		{name: "ELF64 8-byte aligned build-id", is64: true, order: le, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{{".note.gnu.property", 8, cat(note(o, 8, "GNU", 5, prop), note(o, 8, "GNU", 3, id20))}}
		}},
		{name: "build-id after a Go note", is64: true, order: be, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{{".notes", 4, cat(note(o, 4, "Go", 4, []byte("abcdefgh")), note(o, 4, "GNU", 3, id20[:8]))}}
		}},
		{name: "build-id in a second note section", is64: true, order: le, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{
				{".note.ABI-tag", 4, note(o, 4, "GNU", 1, make([]byte, 16))},
				{".note.other", 4, note(o, 4, "GNU", 3, id20[:16])},
			}
		}},
		{name: "owner CORE type 3 is not a build-id", is64: true, order: le, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{{"note0", 4, note(o, 4, "CORE", 3, make([]byte, 136))}}
		}},
		{name: "owner name without NUL", order: be, notLibdwfl: true, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{{".note.gnu.build-id", 4, rawNote(o, 4, 3, 20, 3, []byte("GNU"), id20)}}
		}},
		{name: "owner name with trailing bytes", is64: true, order: le, notLibdwfl: true, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{{".note.gnu.build-id", 4, rawNote(o, 4, 8, 20, 3, []byte("GNU\x00abc\x00"), id20)}}
		}},
		{name: "build-id of 65 bytes", is64: true, order: le, wantOff: true, blobs: func(o binary.ByteOrder) []synthBlob {
			return []synthBlob{{".note.gnu.build-id", 4, note(o, 4, "GNU", 3, id65)}}
		}},
	}
	dir := t.TempDir()
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blobs := []synthBlob{{".note.gnu.build-id", 4, note(tt.order, 4, "GNU", 3, id20)}}
			if tt.blobs != nil {
				blobs = tt.blobs(tt.order)
			}
			path := filepath.Join(dir, strings.Repeat("x", i+1))
			writeFile(t, path, synthELF(tt.is64, tt.order, blobs))
			want := referenceBuildID(t, path)
			if tt.notLibdwfl {
				if want == "" {
					t.Fatal("readelf -n prints no build-id")
				}
				checkBuildID(t, path, "")
				return
			}
			if !tt.wantOff {
				checkBuildID(t, path, want)
				return
			}
			_, err := BuildID(bytes.NewReader(readFile(t, path)))
			var fe *FormatError
			if want == "" || !errors.As(err, &fe) {
				t.Fatalf("readelf -n says %q; BuildID error = %v, want *FormatError", want, err)
			}
		})
	}
}

var euNoteLine = regexp.MustCompile(`(?m)^  (\S+) +(\d+)  \S`)

// TestCoreNotes parses the PT_NOTE segment of a real core file written by
// gdb's gcore and compares it with eu-readelf -n.
func TestCoreNotes(t *testing.T) {
	gcore, eu := fixtures.Tool(t, "gcore"), fixtures.Tool(t, "eu-readelf")
	dir := t.TempDir()
	sleeper := exec.Command(fixtures.Tool(t, "sleep"), "60")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := sleeper.Process.Kill(); err != nil {
			t.Errorf("kill sleep: %v", err)
		}
		var exit *exec.ExitError
		if err := sleeper.Wait(); err != nil && !errors.As(err, &exit) {
			t.Errorf("wait for sleep: %v", err) // a kill shows as an ExitError
		}
	}()
	prefix := filepath.Join(dir, "core")
	cmd := exec.Command(gcore, "-o", prefix, strconv.Itoa(sleeper.Process.Pid))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("gcore cannot attach here (ptrace not permitted?): %v\n%s", err, out)
	}
	path := prefix + "." + strconv.Itoa(sleeper.Process.Pid)

	var want []string
	for _, m := range euNoteLine.FindAllStringSubmatch(fixtures.Run(t, dir, eu, "-n", path), -1) {
		want = append(want, m[1]+" "+m[2])
	}
	if len(want) == 0 {
		t.Fatal("eu-readelf -n lists no notes in the core file")
	}

	f, err := elf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []string
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			t.Fatal(err)
		}
		notes, err := ParseNotes(data, f.ByteOrder, p.Align, int64(p.Off))
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range notes {
			got = append(got, n.Name+" "+strconv.Itoa(len(n.Desc)))
		}
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ParseNotes on the core's PT_NOTE:\n%s\neu-readelf -n:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A core file's own notes hold no build-id (those are in the mapped
	// images), and eu-readelf agrees.
	if id := referenceBuildID(t, path); id != "" {
		t.Fatalf("eu-readelf -n found build-id %s in a core file", id)
	}
	checkBuildID(t, path, "")
}

// BenchmarkBuildID measures BuildID on real binaries: the committed seeds,
// read from memory and from an open file, and the system's libc when
// present.
func BenchmarkBuildID(b *testing.B) {
	files := []string{"testdata/tiny", "testdata/tiny.debug", "testdata/libtiny.so"}
	for _, libc := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib64/libc.so.6"} {
		if _, err := os.Stat(libc); err == nil {
			files = append(files, libc)
			break
		}
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			b.Fatal(err)
		}
		b.Run("mem/"+filepath.Base(path), func(b *testing.B) {
			b.ReportAllocs()
			r := bytes.NewReader(data)
			for b.Loop() {
				if _, err := BuildID(r); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("file/"+filepath.Base(path), func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := BuildID(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// manyNoteSections returns an ELF64 file whose n SHT_NOTE sections overlap
// on one blob of blobSize zero bytes (each 12 zero bytes is an empty note):
// a file built to make a naive reader parse n times blobSize bytes.
func manyNoteSections(n, blobSize int) []byte {
	const ehsize, shent = 64, 64
	blobOff := ehsize
	strOff := blobOff + blobSize
	shoff := strOff + 16
	out := make([]byte, shoff+shent*(n+2))
	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS], out[elf.EI_DATA], out[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[40:], uint64(shoff))
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[58:], shent)
	le.PutUint16(out[60:], uint16(n+2))
	le.PutUint16(out[62:], uint16(n+1))
	copy(out[strOff:], "\x00.shstrtab\x00")
	for i := 1; i <= n; i++ {
		sh := out[shoff+i*shent:]
		le.PutUint32(sh[4:], uint32(elf.SHT_NOTE))
		le.PutUint64(sh[24:], uint64(blobOff+4*(i%1024))) // distinct spans, all inside the blob
		le.PutUint64(sh[32:], uint64(blobSize-4*(i%1024)))
		le.PutUint64(sh[48:], 4)
	}
	sh := out[shoff+(n+1)*shent:]
	le.PutUint32(sh[0:], 1)
	le.PutUint32(sh[4:], uint32(elf.SHT_STRTAB))
	le.PutUint64(sh[24:], uint64(strOff))
	le.PutUint64(sh[32:], 11)
	return out
}

// TestBuildIDBounded checks that files whose size fields claim much more
// than they hold cost memory in proportion to what they hold.
func TestBuildIDBounded(t *testing.T) {
	l := loadTiny(t)
	patch := func(edit func(b []byte)) []byte {
		b := bytes.Clone(l.data)
		edit(b)
		return b
	}
	tests := []struct {
		name     string
		input    []byte
		maxAlloc uint64 // bytes allocated by one BuildID call
	}{
		{
			name:     "program header table of 7 MiB claimed",
			input:    patch(func(b []byte) { le.PutUint16(b[0x36:], 0xffff); le.PutUint16(b[0x38:], 0x70) }),
			maxAlloc: 64 << 10,
		},
		{
			name:     "section-name table of 4 MiB claimed",
			input:    patch(func(b []byte) { le.PutUint64(b[l.strtabHdr+32:], 4<<20) }),
			maxAlloc: 64 << 10,
		},
		{
			name:     "note section of 2^62 bytes claimed",
			input:    patch(func(b []byte) { le.PutUint64(b[l.noteHdr+32:], 1<<62) }),
			maxAlloc: 64 << 10,
		},
		{
			name:     "20000 overlapping note sections of 1 MiB",
			input:    manyNoteSections(20000, 1<<20),
			maxAlloc: MaxScanBytes + 8*(20000*64) + 2<<20, // scan budget, debug/elf's sections
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := BuildID(bytes.NewReader(tt.input))
			runtime.ReadMemStats(&after)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("BuildID error = %v, want *FormatError", err)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > tt.maxAlloc {
				t.Errorf("BuildID allocated %d bytes for a %d-byte file, want at most %d", alloc, len(tt.input), tt.maxAlloc)
			} else {
				t.Logf("%d bytes allocated for a %d-byte file: %v", alloc, len(tt.input), err)
			}
		})
	}
}

// extendedNumbering returns an ELF64 file using extended section numbering:
// e_shnum 0 and e_shstrndx SHN_XINDEX, with n (all SHT_NULL) sections and
// the section-name table index link, both in section 0.
func extendedNumbering(n, link int) []byte {
	const ehsize, shent = 64, 64
	out := make([]byte, ehsize+shent*n)
	copy(out, elf.ELFMAG)
	out[elf.EI_CLASS], out[elf.EI_DATA], out[elf.EI_VERSION] = byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), 1
	le.PutUint16(out[16:], uint16(elf.ET_EXEC))
	le.PutUint16(out[18:], uint16(elf.EM_X86_64))
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[40:], ehsize) // e_shoff
	le.PutUint16(out[52:], ehsize)
	le.PutUint16(out[58:], shent)
	le.PutUint16(out[62:], uint16(elf.SHN_XINDEX))
	le.PutUint64(out[ehsize+32:], uint64(n))    // sh_size of section 0
	le.PutUint32(out[ehsize+40:], uint32(link)) // sh_link of section 0
	return out
}

// TestExtendedNumbering covers a file that makes debug/elf index past its
// sections: BuildID refuses it first, and the recover in newFile would
// catch the panic if it did not.
func TestExtendedNumbering(t *testing.T) {
	const n = int(elf.SHN_LORESERVE)
	bad := extendedNumbering(n, n+5)
	_, err := BuildID(bytes.NewReader(bad))
	checkFormatError(t, err, 64+40)

	_, err = newFile(bytes.NewReader(bad))
	var fe *FormatError
	if !errors.As(err, &fe) || !strings.Contains(fe.Msg, "panicked") {
		t.Logf("debug/elf no longer panics on this file: %v", err)
	}
	// With the index in range, debug/elf itself refuses the SHT_NULL
	// section-name table.
	_, err = BuildID(bytes.NewReader(extendedNumbering(n, n-1)))
	if !errors.As(err, &fe) {
		t.Fatalf("BuildID error = %v, want *FormatError", err)
	}
}
