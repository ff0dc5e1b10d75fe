package elfnote

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

// note encodes one note the way a linker does: namesz counts the NUL, and
// name and descriptor are each padded to align.
func note(order binary.ByteOrder, align int, name string, typ uint32, desc []byte) []byte {
	nameb := []byte(name)
	if name != "" {
		nameb = append(nameb, 0)
	}
	return rawNote(order, align, uint32(len(nameb)), uint32(len(desc)), typ, nameb, desc)
}

// rawNote encodes a note with the given size fields, whatever name and desc
// really hold.
func rawNote(order binary.ByteOrder, align int, namesz, descsz, typ uint32, name, desc []byte) []byte {
	b := make([]byte, 12, 12+len(name)+len(desc)+2*align)
	order.PutUint32(b[0:], namesz)
	order.PutUint32(b[4:], descsz)
	order.PutUint32(b[8:], typ)
	b = append(b, name...)
	b = pad(b, align)
	b = append(b, desc...)
	return pad(b, align)
}

func pad(b []byte, align int) []byte {
	for len(b)%align != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

var (
	le   = binary.LittleEndian
	be   = binary.BigEndian
	id20 = []byte("\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67\x89\xab\xcd\xef\x01\x23\x45\x67")
	prop = []byte("\x02\x80\x00\xc0\x04\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00\x00") // x86 ISA needed
)

func TestParseNotes(t *testing.T) {
	buildID := note(le, 4, "GNU", 3, id20)
	abiTag := note(le, 4, "GNU", 1, []byte{0, 0, 0, 0, 3, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0})
	prop8 := note(le, 8, "GNU", 5, prop) // .note.gnu.property: desc at 16, not 12+4
	buildID8 := note(le, 8, "GNU", 3, id20[:17])

	tests := []struct {
		name    string
		data    []byte
		order   binary.ByteOrder
		align   uint64
		base    int64
		want    []Note
		wantOff int64 // offset of the *FormatError; -1 for none
	}{
		{name: "empty", data: nil, order: le, align: 4, wantOff: -1},
		{
			name: "build-id", data: buildID, order: le, align: 4, base: 0x2e8,
			want:    []Note{{Name: "GNU", Type: 3, Desc: id20, Off: 0x2e8}},
			wantOff: -1,
		},
		{
			name: "build-id then ABI tag", data: cat(buildID, abiTag), order: le, align: 4, base: 0x2e8,
			want:    []Note{{"GNU", 3, id20, 0x2e8}, {"GNU", 1, abiTag[16:], 0x2e8 + 36}},
			wantOff: -1,
		},
		{
			name: "big-endian", data: note(be, 4, "GNU", 3, id20), order: be, align: 4,
			want: []Note{{"GNU", 3, id20, 0}}, wantOff: -1,
		},
		{
			name: "8-byte aligned", data: cat(prop8, buildID8), order: le, align: 8,
			want:    []Note{{"GNU", 5, prop, 0}, {"GNU", 3, id20[:17], 32}},
			wantOff: -1,
		},
		{
			name: "alignment 0 means 4", data: buildID, order: le, align: 0,
			want: []Note{{"GNU", 3, id20, 0}}, wantOff: -1,
		},
		{
			name: "alignment 16", data: buildID, order: le, align: 16, base: 7,
			wantOff: 7,
		},
		{
			name: "trailing zero padding", data: cat(buildID, make([]byte, 8)), order: le, align: 4,
			want: []Note{{"GNU", 3, id20, 0}}, wantOff: -1,
		},
		{
			name: "trailing garbage", data: cat(buildID, []byte{1, 0, 0, 0, 0}), order: le, align: 4, base: 0x100,
			want:    []Note{{"GNU", 3, id20, 0x100}},
			wantOff: 0x100 + 36,
		},
		{
			// ld --build-id=0xab writes this; readelf and eu-readelf refuse it.
			name: "last note without padding", data: rawNote(le, 4, 3, 3, 4, []byte("Go\x00"), []byte("abc"))[:19],
			order: le, align: 4, base: 0x358, wantOff: 0x358 + 4,
		},
		{
			name: "last name without padding", data: rawNote(le, 4, 3, 0, 4, []byte("Go\x00"), nil)[:15],
			order: le, align: 4, wantOff: 0,
		},
		{
			name: "empty name and descriptor", data: rawNote(le, 4, 0, 0, 9, nil, nil), order: le, align: 4,
			want: []Note{{"", 9, []byte{}, 0}}, wantOff: -1,
		},
		{
			name: "name without NUL", data: rawNote(le, 4, 3, 20, 3, []byte("GNU"), id20), order: le, align: 4,
			want: []Note{{"GNU", 3, id20, 0}}, wantOff: -1,
		},
		{
			name: "namesz past end", data: rawNote(le, 4, 0xffff, 20, 3, []byte("GNU\x00"), id20),
			order: le, align: 4, base: 0x2e8, wantOff: 0x2e8,
		},
		{
			name: "namesz 2^32-1", data: rawNote(le, 4, 0xffffffff, 0xffffffff, 3, nil, nil),
			order: le, align: 8, base: 0, wantOff: 0,
		},
		{
			name: "descsz past end", data: rawNote(le, 4, 4, 0xffff, 3, []byte("GNU\x00"), id20),
			order: le, align: 4, base: 0x2e8, wantOff: 0x2e8 + 4,
		},
		{
			name: "descsz past end in second note", data: cat(buildID, rawNote(le, 4, 4, 21, 3, []byte("GNU\x00"), id20)),
			order: le, align: 4, base: 0x2e8,
			want:    []Note{{"GNU", 3, id20, 0x2e8}},
			wantOff: 0x2e8 + 36 + 4,
		},
		{
			name: "name padding past end", data: rawNote(le, 1, 5, 1, 3, []byte("GNU\x00\x00"), nil)[:17],
			order: le, align: 8, wantOff: 0,
		},
		{
			name: "truncated header", data: buildID[:11], order: le, align: 4, base: 0x10, wantOff: 0x10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseNotes(tt.data, tt.order, tt.align, tt.base)
			checkFormatError(t, err, tt.wantOff)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d notes %+v, want %d %+v", len(got), got, len(tt.want), tt.want)
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.Name != w.Name || g.Type != w.Type || g.Off != w.Off || !bytes.Equal(g.Desc, w.Desc) {
					t.Errorf("note %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// checkFormatError fails unless err is a *FormatError at wantOff, or nil
// when wantOff is -1.
func checkFormatError(t *testing.T, err error, wantOff int64) {
	t.Helper()
	if wantOff < 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	var fe *FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("error = %v (%T), want *FormatError at %#x", err, err, wantOff)
	}
	if fe.Off != wantOff {
		t.Fatalf("error = %v, want offset %#x", err, wantOff)
	}
}

func TestParseNotesCut(t *testing.T) {
	// A blob cut by MaxNoteBytes ends quietly at the cut note.
	data := cat(note(le, 4, "GNU", 3, id20), note(le, 4, "CORE", 1, make([]byte, 300)))
	for cut := 37; cut < len(data); cut += 13 {
		got := 0
		err := walkNotes(data[:cut], le, 4, 0, true, func(noteRec) bool { got++; return true })
		if err != nil || got != 1 {
			t.Errorf("cut at %d: %d notes, %v; want 1 note, no error", cut, got, err)
		}
	}
}

func TestIsELF(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want bool
	}{
		{"", false},
		{"\x7fEL", false},
		{"\x7fELF", true},
		{"\x7fELF\x02\x01\x01", true},
		{"MZ\x90\x00", false},
		{"#!/bin/sh", false},
	} {
		if got := IsELF([]byte(tt.in)); got != tt.want {
			t.Errorf("IsELF(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
