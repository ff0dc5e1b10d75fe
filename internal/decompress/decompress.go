package decompress

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz/lzma"
)

// A Format is a compression format.
type Format uint8

// The formats. Raw is data read as it is; LZMA (lzma-alone, as old RPM
// payloads use) has no magic and is read only as [Config.NoMagic].
const (
	Raw Format = iota
	Gzip
	XZ
	Zstd
	Bzip2
	LZMA
)

var formatNames = [...]string{Raw: "raw", Gzip: "gzip", XZ: "xz", Zstd: "zstd", Bzip2: "bzip2", LZMA: "lzma"}

func (f Format) String() string {
	if int(f) < len(formatNames) {
		return formatNames[f]
	}
	return fmt.Sprintf("format(%d)", uint8(f))
}

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicXZ    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte("BZh")
)

// MagicLen is the most bytes [Detect] looks at.
const MagicLen = 6

// Detect returns the format whose magic bytes start head: Gzip, XZ, Zstd
// or Bzip2, else Raw.
func Detect(head []byte) Format {
	switch {
	case bytes.HasPrefix(head, magicGzip):
		return Gzip
	case bytes.HasPrefix(head, magicXZ):
		return XZ
	case bytes.HasPrefix(head, magicZstd):
		return Zstd
	case bytes.HasPrefix(head, magicBzip2):
		return Bzip2
	}
	return Raw
}

// Defaults of the Config limits.
const (
	// DefaultMaxDict is xz -9's dictionary, the largest of xz's presets.
	DefaultMaxDict = 64 << 20
	// DefaultMaxWindow leaves room above zstd --ultra -22's 128 MiB.
	DefaultMaxWindow = 256 << 20
)

// Config says what NewReader decodes and within which limits.
type Config struct {
	// Formats lists the formats decoded; a stream in another, or without
	// known magic, is read as it is (Raw) unless NoMagic says otherwise.
	Formats []Format
	// NoMagic is how a stream that Formats does not take is read: Raw
	// (the zero value) or LZMA.
	NoMagic Format

	// MaxDict bounds the dictionary of xz (LZMA2) and lzma streams, which
	// the decoder allocates whole before it decodes a byte (up to 4 GiB);
	// 0 means DefaultMaxDict.
	MaxDict int64
	// MaxWindow bounds a zstd frame's window; 0 means DefaultMaxWindow.
	MaxWindow int64
	// MaxOutput bounds the decompressed bytes: reading more fails with a
	// *LimitError. 0 means no bound.
	MaxOutput int64

	// XZDecoder, if set, decodes xz instead of the Go decoder (liblzma,
	// an xz process). It reads the stream through the dictionary guard,
	// up to the end of the first stream, and keeps its own memory limit.
	// It must hold LZMA2 chunks to their sizes, as liblzma and xz do:
	// the guard sees block headers where the chunk sizes put them.
	XZDecoder func(r *bufio.Reader) (io.ReadCloser, error)
}

var (
	// ErrFormat is matched by every *FormatError.
	ErrFormat = errors.New("malformed compressed data")
	// ErrTooLarge is matched by every *LimitError.
	ErrTooLarge = errors.New("over a decompression limit")
)

// A FormatError reports malformed compressed data.
type FormatError struct {
	Format Format
	// Off is the byte offset in the compressed stream of the fault, or -1
	// when the decoder does not say.
	Off int64
	Msg string // what is wrong; Err's text when empty
	Err error  // the decoder's error; io.ErrUnexpectedEOF when truncated
}

func (e *FormatError) Error() string {
	msg := e.Msg
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Off >= 0 {
		return fmt.Sprintf("%s at byte %d: %s", e.Format, e.Off, msg)
	}
	return e.Format.String() + ": " + msg
}

func (e *FormatError) Unwrap() error        { return e.Err }
func (e *FormatError) Is(target error) bool { return target == ErrFormat }

// A LimitError reports a stream over one of the Config limits: a
// dictionary or window it asks for, or its output.
type LimitError struct {
	Format Format
	What   string // "dictionary", "window" or "output"
	// Off is the byte offset in the compressed stream of the header that
	// asks, or -1 when the decoder does not say.
	Off   int64
	Need  int64 // what the header asks for; 0 when unknown
	Limit int64
}

func (e *LimitError) Error() string {
	switch {
	case e.What == "output" && e.Format == Raw:
		return fmt.Sprintf("data larger than %d bytes", e.Limit)
	case e.What == "output":
		return fmt.Sprintf("%s data decompresses to more than %d bytes", e.Format, e.Limit)
	case e.Need > 0:
		return fmt.Sprintf("%s %s at byte %d needs a %s %s, more than the %s allowed",
			e.Format, headerNames[e.Format], e.Off, size(e.Need), e.What, size(e.Limit))
	}
	return fmt.Sprintf("%s stream needs a %s larger than the %s allowed", e.Format, e.What, size(e.Limit))
}

func (e *LimitError) Is(target error) bool { return target == ErrTooLarge }

// headerNames name the header that asks for a dictionary or window.
var headerNames = map[Format]string{XZ: "block", Zstd: "frame", LZMA: "header"}

// size writes n bytes in MiB, or KiB below 1 MiB, rounded down.
func size(n int64) string {
	if n < 1<<20 {
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d MiB", n>>20)
}

var errClosed = errors.New("decompress: read after close")

// A Reader is a decompressed stream.
type Reader struct {
	format Format
	dec    io.Reader
	done   func() error // returns the decoder to its pool, or closes it
	guard  *xzGuard     // xz only
	window int64        // zstd only: the limit, for its errors
	max, n int64        // output bound and bytes read
	err    error        // sticky
}

// minBuffer is the smallest caller's buffer NewReader reads through: the
// xz guard peeks at whole block headers, up to 1 KiB.
const minBuffer = 1 << 10

// NewReader returns the decompressed stream read from r, in the format
// its magic bytes give (see Config.Formats). r is read through a
// bufio.Reader: r itself when it is one (of at least 1 KiB), else a new
// one of 64 KiB. Bytes after the compressed stream may be left unread
// in it.
//
// A stream over a limit fails with a *LimitError, malformed data with a
// *FormatError; the first block or frame header is checked here, the
// others as they are read. Errors of r come back as they are, or
// wrapped in a *FormatError when a decoder passed them on.
func NewReader(r io.Reader, c Config) (*Reader, error) {
	br, ok := r.(*bufio.Reader)
	if !ok || br.Size() < minBuffer {
		br = bufio.NewReaderSize(r, 64<<10)
	}
	head, err := br.Peek(18) // the longest header looked at here: zstd's
	if len(head) < MagicLen && err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	f := Detect(head)
	if !slices.Contains(c.Formats, f) {
		f = c.NoMagic
	}
	dict, window := c.MaxDict, c.MaxWindow
	if dict <= 0 {
		dict = DefaultMaxDict
	}
	if window <= 0 {
		window = DefaultMaxWindow
	}
	z := &Reader{format: f, max: c.MaxOutput, window: window}
	switch f {
	case Raw:
		z.dec = br
	case Gzip:
		g, _ := gzipReaders.Get().(*gzip.Reader)
		if g == nil {
			g = new(gzip.Reader)
		}
		if err := g.Reset(br); err != nil {
			gzipReaders.Put(g)
			return nil, z.openErr(err)
		}
		z.dec = g
		z.done = func() error { gzipReaders.Put(g); return nil }
	case XZ:
		if err := checkFirstXZBlock(br, dict); err != nil {
			return nil, err
		}
		if c.XZDecoder != nil {
			z.guard = newXZGuard(br, dict, true)
			d, err := c.XZDecoder(bufio.NewReaderSize(z.guard, 64<<10))
			if err != nil {
				return nil, z.openErr(err)
			}
			z.dec, z.done = d, d.Close
			break
		}
		z.dec = newXZReader(br, dict)
	case Zstd:
		if need, ok := zstdWindow(head); ok && need > window {
			return nil, &LimitError{Format: Zstd, What: "window", Off: 0, Need: need, Limit: window}
		}
		d, err := zstdDecoder(br, window)
		if err != nil {
			return nil, fmt.Errorf("decompress: zstd: %w", err)
		}
		z.dec = d
		z.done = func() error {
			if d.Reset(nil) == nil {
				zstdDecoders.Put(d)
			}
			return nil
		}
	case Bzip2:
		z.dec = bzip2.NewReader(br)
	case LZMA:
		// Properties (1 byte), dictionary size (4), uncompressed size (8).
		if len(head) >= 5 {
			if need := int64(binary.LittleEndian.Uint32(head[1:])); need > dict {
				return nil, &LimitError{Format: LZMA, What: "dictionary", Off: 1, Need: need, Limit: dict}
			}
		}
		d, err := lzma.NewReader(br)
		if err != nil {
			return nil, z.openErr(err)
		}
		z.dec = d
	default:
		return nil, fmt.Errorf("decompress: cannot read %v", f)
	}
	return z, nil
}

// Format returns the format being decoded.
func (z *Reader) Format() Format { return z.format }

// Read reads decompressed bytes. Past Config.MaxOutput it fails with a
// *LimitError; every error is sticky.
func (z *Reader) Read(p []byte) (int, error) {
	if z.err != nil {
		return 0, z.err
	}
	if z.max > 0 {
		if z.n >= z.max {
			return 0, z.beyond()
		}
		if int64(len(p)) > z.max-z.n {
			p = p[:z.max-z.n]
		}
	}
	n, err := z.dec.Read(p)
	z.n += int64(n)
	if err != nil {
		z.err = z.decodeErr(err)
	}
	return n, z.err
}

// beyond looks for a byte past the output bound: there is none only at
// the end of the stream.
func (z *Reader) beyond() error {
	var one [1]byte
	for range 100 {
		n, err := z.dec.Read(one[:])
		if n > 0 {
			z.err = &LimitError{Format: z.format, What: "output", Off: -1, Limit: z.max}
			return z.err
		}
		if err != nil {
			z.err = z.decodeErr(err)
			return z.err
		}
	}
	z.err = io.ErrNoProgress
	return z.err
}

// decodeErr names a decoder's error: the guard's finding when it made
// the decoder fail, a *LimitError for a zstd window over the limit, a
// *FormatError for the rest.
func (z *Reader) decodeErr(err error) error {
	if err == io.EOF || z.format == Raw {
		return err
	}
	if z.guard != nil && z.guard.err != nil && z.guard.err != io.EOF {
		return z.guard.err
	}
	if errors.Is(err, ErrFormat) || errors.Is(err, ErrTooLarge) {
		return err
	}
	if z.format == Zstd && (errors.Is(err, zstd.ErrWindowSizeExceeded) || errors.Is(err, zstd.ErrDecoderSizeExceeded)) {
		return &LimitError{Format: Zstd, What: "window", Off: -1, Limit: z.window}
	}
	e := &FormatError{Format: z.format, Off: -1, Err: err}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		e.Msg = "truncated"
	}
	return e
}

// openErr names an error of a decoder reading its header: the stream
// ended there, so io.EOF is a truncation.
func (z *Reader) openErr(err error) error {
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return z.decodeErr(err)
}

// Close releases the decoder (a pooled one goes back to its pool, an
// XZDecoder is closed); the Reader cannot be read afterwards. It does
// not close the underlying reader.
func (z *Reader) Close() error {
	var err error
	if z.done != nil {
		err = z.done()
		z.done = nil
	}
	z.err = errClosed
	return err
}

// Decoders are reused across streams: a zstd decoder allocates its window
// (8 MiB for zstd -19) anew otherwise, and a sync decompresses hundreds
// of payloads.
var (
	zstdDecoders sync.Pool
	gzipReaders  sync.Pool
)

func zstdDecoder(r io.Reader, window int64) (*zstd.Decoder, error) {
	d, _ := zstdDecoders.Get().(*zstd.Decoder)
	if d == nil {
		var err error
		if d, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return nil, err
		}
	}
	if err := d.ResetWithOptions(r, zstd.WithDecoderMaxWindow(uint64(window))); err != nil {
		zstdDecoders.Put(d)
		return nil, err
	}
	return d, nil
}

// zstdWindow returns the window the zstd frame header at the start of b
// asks for: its Window_Descriptor's, or the content size of a
// single-segment frame (RFC 8878, 3.1.1.1). ok is false when b is too
// short to say.
func zstdWindow(b []byte) (size int64, ok bool) {
	if len(b) < 6 {
		return 0, false
	}
	fhd := b[4]
	if fhd&(1<<5) == 0 { // Window_Descriptor: exponent, mantissa
		wd := b[5]
		base := uint64(1) << (10 + wd>>3)
		return int64(base + base/8*uint64(wd&7)), true
	}
	p := 5 + [4]int{0, 1, 2, 4}[fhd&3] // past the dictionary id
	n := [4]int{1, 2, 4, 8}[fhd>>6]
	if len(b) < p+n {
		return 0, false
	}
	var fcs uint64
	for i := n - 1; i >= 0; i-- {
		fcs = fcs<<8 | uint64(b[p+i])
	}
	if n == 2 {
		fcs += 256
	}
	return int64(min(fcs, math.MaxInt64)), true
}
