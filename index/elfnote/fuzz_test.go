package elfnote

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// seedFiles returns the contents of the files directly in testdata.
func seedFiles(f *testing.F) map[string][]byte {
	f.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	seeds := make(map[string][]byte)
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata", e.Name()))
		if err != nil {
			f.Fatal(err)
		}
		seeds[e.Name()] = data
	}
	return seeds
}

func FuzzBuildID(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Add([]byte{})
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, err := BuildID(bytes.NewReader(data))
		var fe *FormatError
		switch {
		case err == nil:
			if len(id) == 0 || len(id) > MaxBuildIDBytes {
				t.Fatalf("build-id of %d bytes", len(id))
			}
		case errors.Is(err, ErrNotELF):
			if IsELF(data) {
				t.Fatalf("ErrNotELF for input with the ELF magic")
			}
		case !IsELF(data):
			t.Fatalf("error %v, want ErrNotELF for input without the ELF magic", err)
		case errors.Is(err, ErrNoBuildID):
		case errors.As(err, &fe):
			if fe.Off < 0 {
				t.Fatalf("negative offset in %v", err)
			}
		default:
			t.Fatalf("error %v (%T) is none of ErrNotELF, ErrNoBuildID, *FormatError", err, err)
		}
		if err != nil && id != nil {
			t.Fatalf("id %x returned with error %v", id, err)
		}
	})
}

func FuzzParseNotes(f *testing.F) {
	// The note blobs of the seed files, as sections and as segments.
	for _, data := range seedFiles(f) {
		ef, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			continue
		}
		big := ef.ByteOrder == binary.BigEndian
		for _, s := range ef.Sections {
			if s.Type == elf.SHT_NOTE {
				if blob, err := s.Data(); err == nil {
					f.Add(blob, big, uint8(s.Addralign), uint32(s.Offset))
				}
			}
		}
		for _, p := range ef.Progs {
			if p.Type == elf.PT_NOTE {
				blob := make([]byte, p.Filesz)
				if _, err := p.ReadAt(blob, 0); err == nil {
					f.Add(blob, big, uint8(p.Align), uint32(p.Off))
				}
			}
		}
	}
	f.Add(note(be, 8, "GNU", 3, id20), true, uint8(8), uint32(0))
	f.Add(rawNote(le, 4, 0xffff, 20, 3, []byte("GNU\x00"), id20), false, uint8(4), uint32(0x2e8))

	f.Fuzz(func(t *testing.T, data []byte, big bool, align uint8, base uint32) {
		var order binary.ByteOrder = binary.LittleEndian
		if big {
			order = binary.BigEndian
		}
		start, end := int64(base), int64(base)+int64(len(data))
		notes, err := ParseNotes(data, order, uint64(align), start)
		if err != nil {
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v (%T) is not a *FormatError", err, err)
			}
			if fe.Off < start || fe.Off > end {
				t.Fatalf("error offset %#x outside the blob [%#x, %#x]", fe.Off, start, end)
			}
		}
		prev := start - 1
		for _, n := range notes {
			if n.Off <= prev || n.Off+noteHeaderSize+int64(len(n.Desc)) > end {
				t.Fatalf("note at %#x with %d-byte desc out of order or outside [%#x, %#x)", n.Off, len(n.Desc), start, end)
			}
			if len(n.Name) > len(data) || bytes.IndexByte([]byte(n.Name), 0) >= 0 {
				t.Fatalf("bad name %q", n.Name)
			}
			prev = n.Off
		}
		// Parsing is deterministic and a valid blob parses whole.
		again, err2 := ParseNotes(data, order, uint64(align), start)
		if len(again) != len(notes) || (err == nil) != (err2 == nil) {
			t.Fatalf("second parse differs")
		}
	})
}

// FuzzDebugAltLink: DebugAltLink never panics, and what it returns keeps
// its contract (a name and a 1 to MaxBuildIDBytes id, or an error of the
// documented kinds).
func FuzzDebugAltLink(f *testing.F) {
	for _, data := range seedFiles(f) {
		f.Add(data)
	}
	f.Add([]byte("\x7fELF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		al, err := DebugAltLink(bytes.NewReader(data))
		var fe *FormatError
		switch {
		case err == nil:
			if al != nil && (al.Name == "" || len(al.BuildID) == 0 || len(al.BuildID) > MaxBuildIDBytes) {
				t.Fatalf("altlink %+v", al)
			}
		case errors.Is(err, ErrNotELF):
			if IsELF(data) {
				t.Fatalf("ErrNotELF for input with the ELF magic")
			}
		case errors.As(err, &fe):
			if fe.Off < 0 {
				t.Fatalf("negative offset in %v", err)
			}
		default:
			t.Fatalf("error %v (%T) is neither ErrNotELF nor *FormatError", err, err)
		}
		if err != nil && al != nil {
			t.Fatalf("altlink %+v returned with error %v", al, err)
		}
	})
}
