package elfnote

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"testing"
)

func sectionNames(f *elf.File) []string {
	var names []string
	for _, s := range f.Sections {
		names = append(names, s.Name)
	}
	return names
}

// TestNewFile: NewFile opens what debug/elf opens, with the same sections,
// and refuses, before debug/elf reads it, what BuildID refuses for its
// headers: the same error, at the same offset.
func TestNewFile(t *testing.T) {
	for _, name := range []string{"tiny", "libtiny.so", "tiny.debug", "tiny-nobuildid"} {
		t.Run(name, func(t *testing.T) {
			data := readFile(t, filepath.Join("testdata", name))
			f, err := NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			ref, err := elf.NewFile(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sectionNames(f), sectionNames(ref); !slices.Equal(got, want) {
				t.Errorf("sections %v, debug/elf says %v", got, want)
			}
		})
	}
	l := loadTiny(t)
	compressedNames := bytes.Clone(l.data)
	le.PutUint64(compressedNames[l.strtabHdr+8:], uint64(elf.SHF_COMPRESSED))
	tests := []struct {
		name string
		data []byte
		off  int64
	}{
		{"truncated section headers", readFile(t, "testdata/truncated-shdrs"), -1},
		{"truncated program headers", readFile(t, "testdata/truncated-phdrs"), -1},
		{"compressed section-name table", compressedNames, l.strtabHdr + 8},
		{"extended numbering past the sections", extendedNumbering(int(elf.SHN_LORESERVE), int(elf.SHN_LORESERVE)+5), 64 + 40},
		{"ELF identification only", l.data[:elf.EI_NIDENT], elf.EI_NIDENT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := NewFile(bytes.NewReader(tt.data))
			var fe *FormatError
			if f != nil || !errors.As(err, &fe) {
				t.Fatalf("NewFile = %v, %v; want a *FormatError", f, err)
			}
			if tt.off >= 0 && fe.Off != tt.off {
				t.Errorf("error %v at %#x, want %#x", err, fe.Off, tt.off)
			}
			if _, berr := BuildID(bytes.NewReader(tt.data)); berr == nil || berr.Error() != err.Error() {
				t.Errorf("NewFile: %v; BuildID: %v", err, berr)
			}
		})
	}
	if _, err := NewFile(bytes.NewReader([]byte("#!/bin/sh\n"))); !errors.Is(err, ErrNotELF) {
		t.Errorf("shell script: %v, want ErrNotELF", err)
	}
}

// TestParseIdent checks the identification alone, for both classes and
// byte orders and each way it can be wrong.
func TestParseIdent(t *testing.T) {
	ident := func(class elf.Class, data elf.Data) []byte {
		b := make([]byte, elf.EI_NIDENT)
		copy(b, elf.ELFMAG)
		b[elf.EI_CLASS], b[elf.EI_DATA], b[elf.EI_VERSION] = byte(class), byte(data), byte(elf.EV_CURRENT)
		return b
	}
	tests := []struct {
		name  string
		in    []byte
		class elf.Class
		order binary.ByteOrder
		err   error
		off   int64
	}{
		{"ELF64 LSB", ident(elf.ELFCLASS64, elf.ELFDATA2LSB), elf.ELFCLASS64, binary.LittleEndian, nil, 0},
		{"ELF32 MSB", ident(elf.ELFCLASS32, elf.ELFDATA2MSB), elf.ELFCLASS32, binary.BigEndian, nil, 0},
		{"no magic", []byte("\x7fELX\x02\x01\x01"), 0, nil, ErrNotELF, 0},
		{"short", ident(elf.ELFCLASS64, elf.ELFDATA2LSB)[:7], 0, nil, nil, 7},
		{"class 3", ident(3, elf.ELFDATA2LSB), 0, nil, nil, elf.EI_CLASS},
		{"data 0", ident(elf.ELFCLASS64, 0), 0, nil, nil, elf.EI_DATA},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			class, order, err := ParseIdent(tt.in)
			switch {
			case tt.class != 0:
				if err != nil || class != tt.class || order != tt.order {
					t.Fatalf("ParseIdent = %v, %v, %v; want %v, %v", class, order, err, tt.class, tt.order)
				}
			case tt.err != nil:
				if !errors.Is(err, tt.err) {
					t.Fatalf("error %v, want %v", err, tt.err)
				}
			default:
				checkFormatError(t, err, tt.off)
			}
		})
	}
}

// TestBlobBuildID: the build-id rule on a note blob, as corefile applies
// it to the notes of objects in a core's memory.
func TestBlobBuildID(t *testing.T) {
	id65 := bytes.Repeat([]byte{0xee}, 65)
	buildID := note(le, 4, "GNU", 3, id20)
	tests := []struct {
		name string
		data []byte
		want []byte
		err  error // nil with want nil: a *FormatError at off
		off  int64
	}{
		{"one", buildID, id20, nil, 0},
		{"after other notes", cat(note(le, 4, "GNU", 1, make([]byte, 16)), note(le, 4, "CORE", 3, id20), buildID), id20, nil, 0},
		{"1 byte", note(le, 4, "GNU", 3, id20[:1]), id20[:1], nil, 0},
		{"64 bytes", note(le, 4, "GNU", 3, id65[:64]), id65[:64], nil, 0},
		{"65 bytes, then a good one", cat(note(le, 4, "GNU", 3, id65), buildID), id20, nil, 0},
		{"65 bytes only", note(le, 4, "GNU", 3, id65), nil, nil, 4},
		{"empty descriptor", note(le, 4, "GNU", 3, nil), nil, nil, 4},
		{"owner GNU without its NUL", rawNote(le, 4, 3, 20, 3, []byte("GNU"), id20), nil, ErrNoBuildID, 0},
		{"owner GNU\\0\\0", rawNote(le, 4, 5, 20, 3, []byte("GNU\x00\x00"), id20), nil, ErrNoBuildID, 0},
		{"malformed note first", cat(rawNote(le, 4, 4, 1000, 1, []byte("GNU\x00"), nil), buildID), nil, nil, 4},
		{"no notes", nil, nil, ErrNoBuildID, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := BlobBuildID(tt.data, le, 4, 0)
			switch {
			case tt.want != nil:
				if err != nil || !bytes.Equal(id, tt.want) {
					t.Fatalf("BlobBuildID = %x, %v; want %x", id, err, tt.want)
				}
				if len(tt.data) > 0 && &id[0] == &tt.data[bytes.Index(tt.data, tt.want)] {
					t.Error("the build-id aliases the blob")
				}
			case tt.err != nil:
				if id != nil || !errors.Is(err, tt.err) {
					t.Fatalf("BlobBuildID = %x, %v; want %v", id, err, tt.err)
				}
			default:
				if id != nil {
					t.Fatalf("BlobBuildID = %x", id)
				}
				checkFormatError(t, err, tt.off)
			}
		})
	}
}

// FuzzNewFile: NewFile never panics, answers ErrNotELF, a *FormatError or
// a file, and agrees with BuildID on which inputs have headers it refuses.
func FuzzNewFile(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Add(extendedNumbering(int(elf.SHN_LORESERVE), int(elf.SHN_LORESERVE)+5))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := NewFile(bytes.NewReader(data))
		var fe *FormatError
		switch {
		case err == nil:
			if file == nil {
				t.Fatal("no file and no error")
			}
		case errors.Is(err, ErrNotELF), errors.As(err, &fe):
			if _, berr := BuildID(bytes.NewReader(data)); berr == nil || berr.Error() != err.Error() {
				t.Fatalf("NewFile: %v; BuildID: %v", err, berr)
			}
		default:
			t.Fatalf("error of another kind: %T %v", err, err)
		}
	})
}
