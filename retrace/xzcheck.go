package retrace

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// checkXZ copies the .xz stream r (buffered by at least 1 KiB, the
// largest block header) to w, following its structure (xz file
// format 1.2.0: streams, blocks, LZMA2 chunks, index, padding) so that it
// can refuse a block whose LZMA2 dictionary is larger than maxDict before
// the decoder behind w sees the block and allocates the dictionary. It
// checks nothing else: the decoder verifies checksums and data.
func checkXZ(r *bufio.Reader, w io.Writer, maxDict int64) error {
	c := &xzCopier{r: r, w: w}
	for stream := 0; ; stream++ {
		if stream > 0 {
			// Stream padding (groups of four zero bytes), then another
			// stream or the end.
			for {
				b, err := r.Peek(4)
				if len(b) == 0 && errors.Is(err, io.EOF) {
					return nil
				}
				if len(b) < 4 {
					return xzErr(c.off, "truncated stream padding")
				}
				if !bytes.Equal(b, []byte{0, 0, 0, 0}) {
					break
				}
				c.copy(4)
			}
		}
		if err := c.stream(maxDict); err != nil {
			return err
		}
	}
}

func xzErr(off int64, format string, args ...any) error {
	return fmt.Errorf("%w: xz at byte %d: %s", ErrBadArchive, off, fmt.Sprintf(format, args...))
}

// xzCopier copies bytes from r to w as the structure is read; the first
// error sticks.
type xzCopier struct {
	r   *bufio.Reader
	w   io.Writer
	off int64 // bytes copied
	err error
}

// read copies n bytes (n small) and returns them.
func (c *xzCopier) read(n int) []byte {
	if c.err != nil {
		return make([]byte, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(c.r, b); err != nil {
		c.fail(err)
		return b
	}
	c.write(b)
	return b
}

// copy copies n bytes without looking at them.
func (c *xzCopier) copy(n int64) {
	if c.err != nil {
		return
	}
	m, err := io.CopyN(c.w, c.r, n)
	c.off += m
	if err != nil {
		c.fail(err)
	}
}

func (c *xzCopier) write(b []byte) {
	if _, err := c.w.Write(b); err != nil {
		c.fail(err)
		return
	}
	c.off += int64(len(b))
}

func (c *xzCopier) fail(err error) {
	if c.err != nil {
		return
	}
	if errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = xzErr(c.off, "truncated")
	}
	c.err = err
}

func (c *xzCopier) byte() byte { return c.read(1)[0] }

// varint reads a multibyte integer of the xz format (at most 9 bytes).
func (c *xzCopier) varint() uint64 {
	var v uint64
	for i := 0; i < 9; i++ {
		b := c.byte()
		if c.err != nil {
			return 0
		}
		v |= uint64(b&0x7f) << (7 * i)
		if b&0x80 == 0 {
			return v
		}
	}
	c.fail(xzErr(c.off, "variable-length integer too long"))
	return 0
}

// checkSizes is the size of a block's check, by check id.
var checkSizes = [16]int64{0, 4, 4, 4, 8, 8, 8, 16, 16, 16, 32, 32, 32, 64, 64, 64}

// stream copies one stream: header, blocks, index, footer.
func (c *xzCopier) stream(maxDict int64) error {
	h := c.read(12)
	if c.err != nil {
		return c.err
	}
	if !bytes.Equal(h[:6], xzMagic) {
		return xzErr(c.off-12, "bad stream header magic")
	}
	if h[6] != 0 || h[7]&0xf0 != 0 {
		return xzErr(c.off-6, "unsupported stream flags")
	}
	checkSize := checkSizes[h[7]&0x0f]
	for {
		b, err := c.r.Peek(1)
		if err != nil {
			c.fail(err)
			return c.err
		}
		if b[0] == 0 {
			break // the index
		}
		// Look at the block header before the decoder sees it.
		start := c.off
		size := (int(b[0]) + 1) * 4
		hdr, err := c.r.Peek(size)
		if err != nil {
			c.fail(err)
			return c.err
		}
		dict, err := blockDict(hdr)
		if err != nil {
			return xzErr(start, "%v", err)
		}
		if dict > maxDict {
			return fmt.Errorf("%w: xz block at byte %d needs a %d MiB dictionary, more than the %d MiB allowed",
				ErrTooLarge, start, dict>>20, maxDict>>20)
		}
		c.copy(int64(size))
		c.lzma2()
		if c.err != nil {
			return c.err
		}
		pad := (4 - (c.off-start)%4) % 4
		c.copy(pad + checkSize)
		if c.err != nil {
			return c.err
		}
	}
	// Index: indicator, record count, records, padding, CRC32.
	start := c.off
	c.byte()
	n := c.varint()
	for i := uint64(0); i < n && c.err == nil; i++ {
		c.varint() // unpadded size
		c.varint() // uncompressed size
	}
	c.copy((4-(c.off-start)%4)%4 + 4)
	c.copy(12) // stream footer
	return c.err
}

// lzma2 copies LZMA2 chunks up to and including the end marker.
func (c *xzCopier) lzma2() {
	for c.err == nil {
		ctl := c.byte()
		switch {
		case c.err != nil:
			return
		case ctl == 0x00:
			return
		case ctl == 0x01 || ctl == 0x02: // uncompressed chunk
			size := binary.BigEndian.Uint16(c.read(2))
			c.copy(int64(size) + 1)
		case ctl >= 0x80: // LZMA chunk
			c.copy(2) // low bits of the uncompressed size
			packed := binary.BigEndian.Uint16(c.read(2))
			if (ctl>>5)&3 >= 2 {
				c.copy(1) // new properties
			}
			c.copy(int64(packed) + 1)
		default:
			c.fail(xzErr(c.off-1, "invalid LZMA2 control byte %#x", ctl))
		}
	}
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
		var v uint64
		for i := 0; i < 9; i++ {
			if p >= end {
				return 0, errors.New("block header truncated")
			}
			b := h[p]
			p++
			v |= uint64(b&0x7f) << (7 * i)
			if b&0x80 == 0 {
				return v, nil
			}
		}
		return 0, errors.New("variable-length integer too long")
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
