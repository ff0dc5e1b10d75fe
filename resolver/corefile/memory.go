package corefile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"sort"
)

// errUnavailable means the core does not hold the memory asked for: no
// PT_LOAD segment maps it, its segment's data was not dumped (p_filesz <
// p_memsz), the file ends before it, or the read budget is spent.
var errUnavailable = errors.New("memory not in the core file")

// A segment is a PT_LOAD program header of the core: memory [vaddr,
// vaddr+memsz), of which the first avail bytes are in the file at off.
type segment struct {
	vaddr, memsz uint64
	off          uint64
	avail        uint64 // min(p_filesz, p_memsz, bytes the file holds from off)
}

// memory reads the process's memory image through the core's PT_LOAD
// segments.
type memory struct {
	r      io.ReaderAt
	segs   []segment // sorted by vaddr
	budget uint64    // bytes left to read in all
}

// find returns the index of the segment containing addr, or -1. With
// overlapping segments (never written by Linux or gdb) the one starting
// last at or before addr is tried.
func (m *memory) find(addr uint64) int {
	i := sort.Search(len(m.segs), func(i int) bool { return m.segs[i].vaddr > addr }) - 1
	if i >= 0 && addr-m.segs[i].vaddr < m.segs[i].memsz {
		return i
	}
	return -1
}

// segmentEnd returns the end of the segment containing addr, or 0.
func (m *memory) segmentEnd(addr uint64) uint64 {
	i := m.find(addr)
	if i < 0 {
		return 0
	}
	end := m.segs[i].vaddr + m.segs[i].memsz
	if end < m.segs[i].vaddr {
		return ^uint64(0) // wraps: the segment runs to the top of memory
	}
	return end
}

type piece struct{ off, n uint64 }

// read returns the n bytes at addr. A read may span adjacent segments; it
// returns errUnavailable if any byte is not in the file, and other errors
// only when the reader fails. Nothing is allocated before the whole range
// is known to be in the file.
func (m *memory) read(addr, n uint64) ([]byte, error) {
	if n > m.budget {
		return nil, errUnavailable
	}
	var pieces []piece
	for a, left := addr, n; left > 0; {
		i := m.find(a)
		if i < 0 || len(pieces) == maxReadPieces {
			return nil, errUnavailable
		}
		s := m.segs[i]
		rel := a - s.vaddr
		if rel >= s.avail {
			return nil, errUnavailable
		}
		k := min(left, s.avail-rel)
		pieces = append(pieces, piece{s.off + rel, k})
		left -= k
		if a+k < a && left > 0 {
			return nil, errUnavailable // wraps past the top of memory
		}
		a += k
	}
	m.budget -= n
	buf := make([]byte, n)
	at := uint64(0)
	for _, pc := range pieces {
		k, err := m.r.ReadAt(buf[at:at+pc.n], clampOff(pc.off))
		if uint64(k) < pc.n {
			if err == nil || isEOF(err) {
				return nil, errUnavailable // the reader is shorter than its size
			}
			return nil, fmt.Errorf("corefile: read memory at %#x (file offset %#x): %w", addr+at, pc.off, err)
		}
		at += pc.n
	}
	return buf, nil
}

// readString returns the NUL-terminated string at addr, of at most max
// bytes, reading at most max+1 bytes and stopping early at the end of the
// dumped data.
func (m *memory) readString(addr uint64, max uint64) (string, error) {
	var out []byte
	const chunk = 256
	for uint64(len(out)) <= max {
		n := uint64(chunk)
		if i := m.find(addr); i >= 0 {
			// Do not ask for bytes past the dumped part of the segment.
			s := m.segs[i]
			if rel := addr - s.vaddr; rel < s.avail {
				n = min(n, s.avail-rel)
			}
		}
		b, err := m.read(addr, n)
		if err != nil {
			return "", err
		}
		if j := bytes.IndexByte(b, 0); j >= 0 {
			out = append(out, b[:j]...)
			if uint64(len(out)) > max {
				break
			}
			return string(out), nil
		}
		out = append(out, b...)
		addr += n
	}
	return "", errUnavailable
}
