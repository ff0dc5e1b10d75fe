package decompress

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// xzGuard passes an .xz stream through unchanged while following its
// structure (xz file format 1.2.0: streams, blocks, LZMA2 chunks, index,
// padding), so that it refuses a block whose LZMA2 dictionary is larger
// than max before the decoder reading from the guard sees the block and
// allocates the dictionary. It checks nothing else: the decoder verifies
// checksums and data.
//
// It is a state machine: pass bytes may be read before the next
// structure, which next parses by peeking at r (buffered by at least
// 1 KiB, the largest block header) without consuming it. The guard never
// reads past the structure it has checked.
type xzGuard struct {
	r      *bufio.Reader
	max    int64
	single bool // stop after the first stream, as single-stream decoders do

	off  int64                // bytes passed
	pass int64                // bytes that may pass before next runs
	next func(*xzGuard) error // parses the structure at off: sets pass and next
	err  error                // sticky: io.EOF after the last stream, or the failure

	check   int64  // size of a block's check, from the stream flags
	start   int64  // offset of the current block or index
	varints uint64 // index fields (varints) left to pass
}

func newXZGuard(r *bufio.Reader, max int64, single bool) *xzGuard {
	return &xzGuard{r: r, max: max, single: single, next: (*xzGuard).streamHeader}
}

func (g *xzGuard) Read(p []byte) (int, error) {
	for g.pass == 0 {
		if g.err != nil {
			return 0, g.err
		}
		if err := g.next(g); err != nil {
			g.err = err
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > g.pass {
		p = p[:g.pass]
	}
	n, err := g.r.Read(p)
	g.off += int64(n)
	g.pass -= int64(n)
	if n == 0 && err != nil {
		if errors.Is(err, io.EOF) {
			err = g.fail(g.off, "truncated")
		}
		g.err = err
	}
	return n, g.err
}

// fail returns a *FormatError at off, marking a truncation as
// io.ErrUnexpectedEOF.
func (g *xzGuard) fail(off int64, format string, args ...any) error {
	e := &FormatError{Format: XZ, Off: off, Msg: fmt.Sprintf(format, args...)}
	if e.Msg == "truncated" {
		e.Err = io.ErrUnexpectedEOF
	}
	return e
}

// peek returns the n bytes at off without consuming them.
func (g *xzGuard) peek(n int) ([]byte, error) {
	b, err := g.r.Peek(n)
	if len(b) == n {
		return b, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		return nil, g.fail(g.off, "truncated")
	}
	return nil, err
}

// checkSizes is the size of a block's check, by check id.
var checkSizes = [16]int64{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}

func (g *xzGuard) streamHeader() error {
	h, err := g.peek(12)
	if err != nil {
		return err
	}
	if !bytes.Equal(h[:6], magicXZ) {
		return g.fail(g.off, "bad stream header magic")
	}
	if h[6] != 0 || h[7]&0xf0 != 0 {
		return g.fail(g.off+6, "unsupported stream flags")
	}
	g.check = checkSizes[h[7]&0x0f]
	g.pass, g.next = 12, (*xzGuard).blockOrIndex
	return nil
}

// blockOrIndex looks at a block header before the decoder sees it, or
// starts the index.
func (g *xzGuard) blockOrIndex() error {
	b, err := g.peek(1)
	if err != nil {
		return err
	}
	g.start = g.off
	if b[0] == 0 { // the index indicator
		g.pass, g.next = 1, (*xzGuard).indexCount
		return nil
	}
	size := (int(b[0]) + 1) * 4
	hdr, err := g.peek(size)
	if err != nil {
		return err
	}
	if err := checkBlock(hdr, g.off, g.max); err != nil {
		return err
	}
	g.pass, g.next = int64(size), (*xzGuard).chunk
	return nil
}

// checkBlock refuses the block header h at off if it is malformed or its
// dictionary is larger than max.
func checkBlock(h []byte, off, max int64) error {
	dict, err := blockDict(h)
	if err != nil {
		return &FormatError{Format: XZ, Off: off, Msg: err.Error()}
	}
	if dict > max {
		return &LimitError{Format: XZ, What: "dictionary", Off: off, Need: dict, Limit: max}
	}
	return nil
}

// chunk passes one LZMA2 chunk, header and data, or the end marker.
func (g *xzGuard) chunk() error {
	n, end, err := lzma2Chunk(g.peek, g.off)
	if err != nil {
		return err
	}
	g.pass = n
	if end {
		g.next = (*xzGuard).blockEnd
	}
	return nil
}

// lzma2Chunk returns the size of the LZMA2 chunk at off, header and data,
// read with peek; end is true for the end marker (one byte).
func lzma2Chunk(peek func(int) ([]byte, error), off int64) (n int64, end bool, err error) {
	b, err := peek(1)
	if err != nil {
		return 0, false, err
	}
	switch ctl := b[0]; {
	case ctl == 0x00: // end of the block's data
		return 1, true, nil
	case ctl == 0x01 || ctl == 0x02: // uncompressed chunk
		h, err := peek(3)
		if err != nil {
			return 0, false, err
		}
		return 3 + int64(binary.BigEndian.Uint16(h[1:])) + 1, false, nil
	case ctl >= 0x80: // LZMA chunk: sizes, [properties], data
		hl := 5
		if (ctl>>5)&3 >= 2 {
			hl = 6
		}
		h, err := peek(hl)
		if err != nil {
			return 0, false, err
		}
		return int64(hl) + int64(binary.BigEndian.Uint16(h[3:])) + 1, false, nil
	}
	return 0, false, &FormatError{Format: XZ, Off: off, Msg: fmt.Sprintf("invalid LZMA2 control byte %#x", b[0])}
}

// blockEnd passes the block padding and check.
func (g *xzGuard) blockEnd() error {
	g.pass = (4-(g.off-g.start)%4)%4 + g.check
	g.next = (*xzGuard).blockOrIndex
	return nil
}

// indexCount reads the index's record count: two varints follow for each
// record (unpadded and uncompressed size).
func (g *xzGuard) indexCount() error {
	n, size, err := g.varint()
	if err != nil {
		return err
	}
	g.varints = min(n, math.MaxUint64/2) * 2
	g.pass, g.next = size, (*xzGuard).indexRecords
	return nil
}

// indexRecords passes the index records, then the index padding and
// CRC32 and the stream footer.
func (g *xzGuard) indexRecords() error {
	if g.varints == 0 {
		g.pass = (4-(g.off-g.start)%4)%4 + 4 + 12
		g.next = (*xzGuard).streamEnd
		return nil
	}
	_, size, err := g.varint()
	if err != nil {
		return err
	}
	g.varints--
	g.pass = size
	return nil
}

func (g *xzGuard) streamEnd() error {
	if g.single {
		return io.EOF
	}
	return g.padding()
}

// padding passes stream padding (groups of four zero bytes) and starts
// the next stream, if any.
func (g *xzGuard) padding() error {
	b, err := g.r.Peek(4)
	switch {
	case len(b) == 0 && errors.Is(err, io.EOF):
		return io.EOF
	case len(b) < 4 && err != nil && !errors.Is(err, io.EOF):
		return err
	case len(b) < 4:
		return g.fail(g.off, "truncated stream padding")
	case bytes.Equal(b, []byte{0, 0, 0, 0}):
		g.pass, g.next = 4, (*xzGuard).padding
		return nil
	}
	return g.streamHeader()
}

// varint peeks at a multibyte integer of the xz format (at most 9 bytes)
// and returns it with its length.
func (g *xzGuard) varint() (v uint64, size int64, err error) {
	b, err := g.r.Peek(9)
	if len(b) == 0 {
		if err == nil || errors.Is(err, io.EOF) {
			return 0, 0, g.fail(g.off, "truncated")
		}
		return 0, 0, err
	}
	v, n, ok := decodeVarint(b)
	switch {
	case ok:
		return v, int64(n), nil
	case len(b) < 9:
		return 0, 0, g.fail(g.off, "truncated")
	}
	return 0, 0, g.fail(g.off, "variable-length integer too long")
}

// decodeVarint decodes a multibyte integer at the start of b; ok is false
// when b ends first or the integer is longer than 9 bytes.
func decodeVarint(b []byte) (v uint64, n int, ok bool) {
	for i := 0; i < 9 && i < len(b); i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i]&0x80 == 0 {
			return v, i + 1, true
		}
	}
	return 0, 0, false
}

// checkFirstXZBlock looks, without consuming anything, at the stream
// header and the first block header buffered in br, so that the most
// common hostile stream (one block asking for gigabytes) is refused when
// it is opened rather than at its first read. What it cannot see yet the
// guard checks as the stream is read.
func checkFirstXZBlock(br *bufio.Reader, max int64) error {
	b, _ := br.Peek(12 + 1)
	if len(b) < 13 || !bytes.Equal(b[:6], magicXZ) || b[12] == 0 {
		return nil
	}
	size := (int(b[12]) + 1) * 4
	hdr, _ := br.Peek(12 + size)
	if len(hdr) < 12+size {
		return nil
	}
	return checkBlock(hdr[12:], 12, max)
}

// blockDict returns the LZMA2 dictionary size of a block header, 0 when
// the block has no LZMA2 filter (the decoder refuses it then).
func blockDict(h []byte) (int64, error) {
	// size byte, flags, [compressed size], [uncompressed size], filter
	// flags..., padding, CRC32
	if len(h) < 8 {
		return 0, errors.New("block header too short")
	}
	flags := h[1]
	p := 2
	end := len(h) - 4
	varint := func() (uint64, error) {
		v, n, ok := decodeVarint(h[p:end])
		if !ok {
			if end-p < 9 {
				return 0, errors.New("block header truncated")
			}
			return 0, errors.New("variable-length integer too long")
		}
		p += n
		return v, nil
	}
	for _, bit := range []byte{0x40, 0x80} {
		if flags&bit != 0 {
			if _, err := varint(); err != nil {
				return 0, err
			}
		}
	}
	var dict int64
	for i := 0; i < int(flags&3)+1; i++ {
		id, err := varint()
		if err != nil {
			return 0, err
		}
		size, err := varint()
		if err != nil {
			return 0, err
		}
		if size > uint64(end-p) {
			return 0, errors.New("filter properties past the block header")
		}
		props := h[p : p+int(size)]
		p += int(size)
		if id == 0x21 { // LZMA2
			if len(props) != 1 || props[0] > 40 {
				return 0, errors.New("bad LZMA2 properties")
			}
			dict = lzma2Dict(props[0])
		}
	}
	return dict, nil
}

// lzma2Dict decodes an LZMA2 dictionary size byte (0..40).
func lzma2Dict(b byte) int64 {
	if b == 40 {
		return 1<<32 - 1
	}
	return int64(2|b&1) << (b/2 + 11)
}
