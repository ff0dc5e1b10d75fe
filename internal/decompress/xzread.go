package decompress

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

// xzReader decodes an .xz file (streams, blocks, index, padding: xz file
// format 1.2.0) with the Go LZMA2 decoder of ulikunitz/xz/lzma. It frames
// the stream itself rather than through xz.Reader because that decoder
// does not check that an LZMA2 chunk's data ends where the chunk header
// says: hostile data can end a chunk early and have the decoder take
// bytes inside a chunk for the next block header, one the guard never
// saw, asking for a 4 GiB dictionary. Here each block's decoder reads
// only the block's LZMA2 chunks, walked by [xzChunks], gets the
// dictionary of the header checked against the limit, and must end
// exactly at the chunks' end marker. Checks, block and index sizes and
// the stream footer are verified as xz does.
type xzReader struct {
	r   *bufio.Reader
	max int64 // dictionary bound
	off int64 // bytes consumed from r

	flags   []byte    // the stream flags, repeated in the footer
	sum     hash.Hash // the block check, nil for None
	sumSize int64

	block   *lzma.Reader2 // the current block's data; nil between blocks
	chunks  *xzChunks
	hdr     xzBlockHeader
	out     int64      // uncompressed bytes of the current block
	records [][2]int64 // unpadded and uncompressed size of each block of the stream
	err     error      // sticky
}

func newXZReader(r *bufio.Reader, max int64) *xzReader {
	return &xzReader{r: r, max: max}
}

func (x *xzReader) Read(p []byte) (int, error) {
	for x.err == nil {
		if x.block == nil {
			x.err = x.next()
			continue
		}
		n, err := x.block.Read(p)
		if x.sum != nil {
			x.sum.Write(p[:n])
		}
		x.out += int64(n)
		if err == io.EOF {
			err = x.endBlock()
		} else if err != nil {
			err = x.blockErr(err)
		}
		x.err = err
		if n > 0 || len(p) == 0 {
			return n, nil
		}
	}
	return 0, x.err
}

// fail returns a *FormatError at off, marking a truncation as
// io.ErrUnexpectedEOF.
func (x *xzReader) fail(off int64, msg string) error {
	e := &FormatError{Format: XZ, Off: off, Msg: msg}
	if msg == "truncated" {
		e.Err = io.ErrUnexpectedEOF
	}
	return e
}

// read consumes n bytes; a short stream is a truncation.
func (x *xzReader) read(n int) ([]byte, error) {
	b := make([]byte, n)
	k, err := io.ReadFull(x.r, b)
	x.off += int64(k)
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil, x.fail(x.off, "truncated")
	}
	return b, err
}

// next reads what comes between blocks: a stream header, a block header
// (starting its block), or an index with the stream footer and the
// padding after it.
func (x *xzReader) next() error {
	if x.flags == nil {
		return x.streamHeader()
	}
	b, err := x.r.Peek(1)
	if len(b) == 0 {
		if err == io.EOF {
			return x.fail(x.off, "truncated")
		}
		return err
	}
	if b[0] == 0 {
		return x.index()
	}
	return x.startBlock(int(b[0]))
}

func (x *xzReader) streamHeader() error {
	start := x.off
	h, err := x.read(12)
	if err != nil {
		return err
	}
	switch {
	case !bytes.Equal(h[:6], magicXZ):
		return x.fail(start, "bad stream header magic")
	case binary.LittleEndian.Uint32(h[8:]) != crc32.ChecksumIEEE(h[6:8]):
		return x.fail(start+8, "stream header CRC32 mismatch")
	case h[6] != 0 || h[7]&0xf0 != 0:
		return x.fail(start+6, "unsupported stream flags")
	}
	x.flags = h[6:8]
	x.sumSize = checkSizes[h[7]]
	switch h[7] {
	case 0:
		x.sum = nil
	case 1:
		x.sum = crc32.NewIEEE()
	case 4:
		x.sum = crc64.New(crc64.MakeTable(crc64.ECMA))
	case 10:
		x.sum = sha256.New()
	default:
		return x.fail(start+7, "unsupported check type")
	}
	x.records = x.records[:0]
	return nil
}

// An xzBlockHeader is what a block header says; sizes are -1 when absent.
type xzBlockHeader struct {
	off, size          int64
	packed, uncompress int64
	dict               int64
}

func (x *xzReader) startBlock(sizeByte int) error {
	start := x.off
	h, err := x.read((sizeByte + 1) * 4)
	if err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(h[len(h)-4:]) != crc32.ChecksumIEEE(h[:len(h)-4]) {
		return x.fail(start, "block header CRC32 mismatch")
	}
	hdr, err := parseBlockHeader(h)
	if err != nil {
		return x.fail(start, err.Error())
	}
	if hdr.dict > x.max {
		return &LimitError{Format: XZ, What: "dictionary", Off: start, Need: hdr.dict, Limit: x.max}
	}
	hdr.off = start
	x.hdr = hdr
	x.chunks = &xzChunks{r: x.r, off: x.off}
	if x.sum != nil {
		x.sum.Reset()
	}
	x.out = 0
	block, err := lzma.Reader2Config{DictCap: int(max(hdr.dict, lzma.MinDictCap))}.NewReader2(x.chunks)
	if err != nil {
		return x.blockErr(err)
	}
	x.block = block
	return nil
}

// parseBlockHeader reads a block header whose CRC32 holds: its sizes and
// its one filter, which must be LZMA2 (the only filter the decoder has).
func parseBlockHeader(h []byte) (xzBlockHeader, error) {
	hdr := xzBlockHeader{size: int64(len(h)), packed: -1, uncompress: -1}
	flags := h[1]
	if flags&0x3c != 0 {
		return hdr, errors.New("unsupported block flags")
	}
	if flags&3 != 0 {
		return hdr, errors.New("unsupported filter chain: only LZMA2 alone is decoded")
	}
	p, end := 2, len(h)-4
	varint := func() (int64, error) {
		v, n, ok := decodeVarint(h[p:end])
		if !ok || v > 1<<62 {
			return 0, errors.New("bad variable-length integer in the block header")
		}
		p += n
		return int64(v), nil
	}
	var err error
	if flags&0x40 != 0 {
		if hdr.packed, err = varint(); err != nil {
			return hdr, err
		}
		if hdr.packed == 0 {
			return hdr, errors.New("block compressed size 0")
		}
	}
	if flags&0x80 != 0 {
		if hdr.uncompress, err = varint(); err != nil {
			return hdr, err
		}
	}
	id, err := varint()
	if err != nil {
		return hdr, err
	}
	size, err := varint()
	if err != nil {
		return hdr, err
	}
	if id != 0x21 {
		return hdr, errors.New("unsupported filter: only LZMA2 is decoded")
	}
	if size != 1 || p >= end || h[p] > 40 {
		return hdr, errors.New("bad LZMA2 properties")
	}
	hdr.dict = lzma2Dict(h[p])
	p++
	if bytes.ContainsFunc(h[p:end], func(r rune) bool { return r != 0 }) {
		return hdr, errors.New("block header padding not zero")
	}
	return hdr, nil
}

// blockErr names an error of the block's decoder: the chunk walker's own
// when it had one, a *FormatError for the rest.
func (x *xzReader) blockErr(err error) error {
	if x.chunks != nil && x.chunks.err != nil && x.chunks.err != io.EOF {
		return x.chunks.err
	}
	if errors.Is(err, ErrFormat) || errors.Is(err, ErrTooLarge) {
		return err
	}
	if err == io.ErrUnexpectedEOF {
		return x.fail(x.chunks.off, "truncated")
	}
	return &FormatError{Format: XZ, Off: x.chunks.off, Err: err}
}

// endBlock checks that the decoder ended at the chunks' end marker, the
// sizes the header gave, the padding and the check.
func (x *xzReader) endBlock() error {
	c := x.chunks
	x.block = nil
	if !c.ended || c.pass != 0 {
		return x.fail(c.off, "LZMA2 data ends before its chunks do")
	}
	x.off = c.off
	packed := x.off - x.hdr.off - x.hdr.size
	switch {
	case x.hdr.packed >= 0 && packed != x.hdr.packed:
		return x.fail(x.hdr.off, "block compressed size differs from its header")
	case x.hdr.uncompress >= 0 && x.out != x.hdr.uncompress:
		return x.fail(x.hdr.off, "block uncompressed size differs from its header")
	}
	pad, err := x.read(int((4 - packed%4) % 4))
	if err != nil {
		return err
	}
	if bytes.ContainsFunc(pad, func(r rune) bool { return r != 0 }) {
		return x.fail(x.off-int64(len(pad)), "block padding not zero")
	}
	check, err := x.read(int(x.sumSize))
	if err != nil {
		return err
	}
	if x.sum != nil && !bytes.Equal(check, x.checkSum()) {
		return x.fail(x.off-x.sumSize, "block check mismatch")
	}
	x.records = append(x.records, [2]int64{x.hdr.size + packed + x.sumSize, x.out})
	return nil
}

// checkSum returns the block's check as xz stores it: CRC32 and CRC64
// little-endian (Go's hashes sum big-endian), SHA-256 as it is.
func (x *xzReader) checkSum() []byte {
	switch s := x.sum.(type) {
	case hash.Hash32:
		return binary.LittleEndian.AppendUint32(nil, s.Sum32())
	case hash.Hash64:
		return binary.LittleEndian.AppendUint64(nil, s.Sum64())
	}
	return x.sum.Sum(nil)
}

// index reads the stream's index, checks it against the blocks read, and
// the stream footer; then stream padding up to the next stream or EOF.
func (x *xzReader) index() error {
	start := x.off
	crc := crc32.NewIEEE()
	tee := func(b []byte) { crc.Write(b) }
	ind, err := x.read(1)
	if err != nil {
		return err
	}
	tee(ind)
	varint := func() (int64, error) {
		b, _ := x.r.Peek(9)
		v, n, ok := decodeVarint(b)
		if !ok || v > 1<<62 {
			if len(b) < 9 {
				return 0, x.fail(x.off, "truncated")
			}
			return 0, x.fail(x.off, "bad variable-length integer in the index")
		}
		b, err := x.read(n)
		if err != nil {
			return 0, err
		}
		tee(b)
		return int64(v), nil
	}
	count, err := varint()
	if err != nil {
		return err
	}
	if count != int64(len(x.records)) {
		return x.fail(start, "index record count differs from the blocks")
	}
	for _, rec := range x.records {
		for _, want := range rec {
			v, err := varint()
			if err != nil {
				return err
			}
			if v != want {
				return x.fail(x.off, "index record differs from its block")
			}
		}
	}
	pad, err := x.read(int((4 - (x.off-start)%4) % 4))
	if err != nil {
		return err
	}
	if bytes.ContainsFunc(pad, func(r rune) bool { return r != 0 }) {
		return x.fail(x.off-int64(len(pad)), "index padding not zero")
	}
	tee(pad)
	sum, err := x.read(4)
	if err != nil {
		return err
	}
	if binary.LittleEndian.Uint32(sum) != crc.Sum32() {
		return x.fail(x.off-4, "index CRC32 mismatch")
	}
	foot, err := x.read(12)
	if err != nil {
		return err
	}
	switch {
	case !bytes.Equal(foot[10:], []byte("YZ")):
		return x.fail(x.off-2, "bad stream footer magic")
	case binary.LittleEndian.Uint32(foot) != crc32.ChecksumIEEE(foot[4:10]):
		return x.fail(x.off-12, "stream footer CRC32 mismatch")
	case !bytes.Equal(foot[8:10], x.flags):
		return x.fail(x.off-4, "stream footer flags differ from the header's")
	case (int64(binary.LittleEndian.Uint32(foot[4:]))+1)*4 != x.off-12-start:
		return x.fail(x.off-8, "stream footer backward size differs from the index")
	}
	return x.padding()
}

// padding consumes stream padding (groups of four zero bytes); another
// stream may follow, else the file ends.
func (x *xzReader) padding() error {
	for {
		b, err := x.r.Peek(4)
		switch {
		case len(b) == 0 && err == io.EOF:
			return io.EOF
		case len(b) < 4 && err != nil && err != io.EOF:
			return err
		case len(b) < 4:
			return x.fail(x.off, "truncated stream padding")
		case bytes.Equal(b, []byte{0, 0, 0, 0}):
			x.r.Discard(4)
			x.off += 4
			continue
		}
		x.flags = nil
		return nil
	}
}

// xzChunks reads a block's LZMA2 chunks, header and data, up to and
// including the end marker, walking their structure as it goes: its
// reader cannot read past the block, and whether that reader ended where
// the chunks do is known at the end.
type xzChunks struct {
	r     *bufio.Reader
	off   int64 // offset in the file
	pass  int64 // bytes of the current chunk left
	ended bool  // the end marker was passed
	err   error
}

func (c *xzChunks) Read(p []byte) (int, error) {
	for c.pass == 0 {
		if c.err != nil {
			return 0, c.err
		}
		if c.ended {
			c.err = io.EOF
			return 0, io.EOF
		}
		if c.err = c.chunk(); c.err != nil {
			return 0, c.err
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if int64(len(p)) > c.pass {
		p = p[:c.pass]
	}
	n, err := c.r.Read(p)
	c.off += int64(n)
	c.pass -= int64(n)
	if n == 0 && err != nil {
		if err == io.EOF {
			err = &FormatError{Format: XZ, Off: c.off, Msg: "truncated", Err: io.ErrUnexpectedEOF}
		}
		c.err = err
	}
	return n, c.err
}

// chunk looks at the next chunk's header and sets how many bytes pass.
func (c *xzChunks) chunk() error {
	peek := func(n int) ([]byte, error) {
		b, err := c.r.Peek(n)
		if len(b) == n {
			return b, nil
		}
		if err == nil || err == io.EOF {
			return nil, &FormatError{Format: XZ, Off: c.off, Msg: "truncated", Err: io.ErrUnexpectedEOF}
		}
		return nil, err
	}
	n, end, err := lzma2Chunk(peek, c.off)
	c.pass, c.ended = n, end
	return err
}
