package rpmfile

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"sync"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// MaxWindow bounds a decompressor's dictionary or window. rpm's strongest
// presets use 64 MiB (xz -9) and 8 MiB (zstd -19); 256 MiB leaves room
// without letting a hostile stream demand gigabytes.
const MaxWindow = 256 << 20

var (
	magicGzip  = []byte{0x1f, 0x8b}
	magicXz    = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicZstd  = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicBzip2 = []byte("BZh")
	magicCpio  = []byte("07070")
)

// Options tune Decompress.
type Options struct {
	// XZ picks the xz decoder. XZGo (or empty): ulikunitz/xz, pure Go.
	// XZLiblzma: liblzma in process, about twice as fast; only in builds
	// with -tags liblzma (HaveLiblzma). Anything else is the path of an
	// xz binary to pipe the payload through: liblzma's speed, plus the
	// cost of a process and two pipes.
	XZ string
}

// The xz decoders Options.XZ names besides an xz binary's path.
const (
	XZGo      = "go"
	XZLiblzma = "liblzma"
)

var errClosed = errors.New("payload: read after close")

// Decompress returns the decompressed payload read from r. The codec is
// chosen by the stream's magic bytes; hint (the header's compressor)
// decides only for lzma, which has none. r is wrapped in a bufio.Reader
// unless it is one: every decompressor here is slow on unbuffered input.
//
// Closing the returned reader before its end is fine: with an external xz
// the process is stopped, and every byte it took from r has been read
// from r, so a checksum computed beneath r still sees each byte once.
func Decompress(ctx context.Context, r io.Reader, hint string, o Options) (io.ReadCloser, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 256<<10)
	}
	head, err := br.Peek(6)
	if err != nil && len(head) == 0 {
		return nil, &FormatError{Off: 0, Msg: "payload: empty"}
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		z, _ := gzipReaders.Get().(*gzip.Reader)
		if z == nil {
			z = new(gzip.Reader)
		}
		if err := z.Reset(br); err != nil {
			return nil, &FormatError{Off: 0, Msg: "payload: gzip: " + err.Error()}
		}
		return named("gzip", &pooledGzip{z}), nil
	case bytes.HasPrefix(head, magicXz):
		if err := checkXzDict(br); err != nil {
			return nil, err
		}
		switch o.XZ {
		case XZLiblzma:
			z, err := newLiblzma(br)
			if err != nil {
				return nil, err
			}
			return named("xz", z), nil
		case "", XZGo:
		default:
			return externalXZ(ctx, br, o.XZ)
		}
		z, err := xz.NewReader(br)
		if err != nil {
			return nil, &FormatError{Off: 0, Msg: "payload: xz: " + err.Error()}
		}
		return named("xz", io.NopCloser(z)), nil
	case bytes.HasPrefix(head, magicZstd):
		z := zstdDecoder()
		if err := z.Reset(br); err != nil {
			return nil, &FormatError{Off: 0, Msg: "payload: zstd: " + err.Error()}
		}
		return named("zstd", &pooledZstd{z}), nil
	case bytes.HasPrefix(head, magicBzip2):
		return named("bzip2", io.NopCloser(bzip2.NewReader(br))), nil
	case bytes.HasPrefix(head, magicCpio):
		return io.NopCloser(br), nil
	case hint == "lzma":
		if head, _ := br.Peek(5); len(head) == 5 && binary.LittleEndian.Uint32(head[1:]) > MaxWindow {
			return nil, &FormatError{Off: 1, Msg: "payload: lzma dictionary larger than 256 MiB"}
		}
		z, err := lzma.NewReader(br)
		if err != nil {
			return nil, &FormatError{Off: 0, Msg: "payload: lzma: " + err.Error()}
		}
		return named("lzma", io.NopCloser(z)), nil
	}
	return nil, &FormatError{Off: 0, Msg: fmt.Sprintf("payload: unknown compression (header says %q, magic % x)", hint, head)}
}

// named reports a decoder's errors as *FormatError naming the codec and
// the payload offset, except io.ErrUnexpectedEOF, which Walk turns into
// "truncated" naming the member.
func named(codec string, rc io.ReadCloser) io.ReadCloser { return &namedDecoder{rc: rc, codec: codec} }

type namedDecoder struct {
	rc    io.ReadCloser
	codec string
	off   int64 // decompressed bytes so far
}

func (d *namedDecoder) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	d.off += int64(n)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.As(err, new(*FormatError)) {
		err = &FormatError{Off: d.off, Msg: "payload: " + d.codec + ": " + err.Error()}
	}
	return n, err
}

func (d *namedDecoder) Close() error { return d.rc.Close() }

// Decoders are reused across payloads: a zstd decoder allocates its
// window (8 MiB for rpm's zstd -19) anew otherwise, and a sync decompresses
// hundreds of payloads.
var (
	zstdDecoders sync.Pool
	gzipReaders  sync.Pool
)

func zstdDecoder() *zstd.Decoder {
	if z, ok := zstdDecoders.Get().(*zstd.Decoder); ok {
		return z
	}
	z, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxWindow))
	if err != nil {
		panic(fmt.Sprintf("zstd reader with static options: %v", err))
	}
	return z
}

// pooledZstd returns its decoder to the pool on Close; reading after
// Close is the caller's bug and panics on the nil decoder.
type pooledZstd struct{ z *zstd.Decoder }

func (p *pooledZstd) Read(b []byte) (int, error) { return p.z.Read(b) }

func (p *pooledZstd) Close() error {
	if p.z != nil && p.z.Reset(nil) == nil {
		zstdDecoders.Put(p.z)
	}
	p.z = nil
	return nil
}

type pooledGzip struct{ z *gzip.Reader }

func (p *pooledGzip) Read(b []byte) (int, error) { return p.z.Read(b) }

func (p *pooledGzip) Close() error {
	if p.z != nil {
		gzipReaders.Put(p.z)
	}
	p.z = nil
	return nil
}

// externalXZ pipes r through `xz -dc`. Its memory limit repeats
// MaxWindow's bound on the dictionary.
func externalXZ(ctx context.Context, r io.Reader, bin string) (io.ReadCloser, error) {
	cmd := exec.CommandContext(ctx, bin, "--decompress", "--stdout", "--format=xz", "--single-stream",
		"--memlimit="+strconv.Itoa(MaxWindow+(16<<20)), "--threads=1")
	cmd.Stdin = r
	var stderr bytes.Buffer
	cmd.Stderr = &limitedBuffer{b: &stderr, max: 4096}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	return &xzProcess{cmd: cmd, out: out, stderr: &stderr}, nil
}

type xzProcess struct {
	cmd    *exec.Cmd
	out    io.ReadCloser
	stderr *bytes.Buffer
	done   bool
	err    error
}

func (x *xzProcess) Read(p []byte) (int, error) {
	n, err := x.out.Read(p)
	if err == io.EOF {
		// The end of output: did xz end well?
		x.wait()
		if x.err != nil {
			return n, &FormatError{Off: -1, Msg: "payload: xz: " + x.err.Error()}
		}
	}
	return n, err
}

// wait reaps xz once and records how it ended in x.err.
func (x *xzProcess) wait() {
	if x.done {
		return
	}
	x.done = true
	if err := x.cmd.Wait(); err != nil {
		msg := strings.TrimSpace(x.stderr.String())
		if msg == "" {
			msg = err.Error()
		}
		x.err = errors.New(msg)
	}
}

// Close stops xz if it is still running (the caller stopped early) and
// waits for it and for the goroutine feeding it.
func (x *xzProcess) Close() error {
	if x.done {
		return nil
	}
	x.out.Close() // xz gets EPIPE on its next write and exits
	x.wait()      // it fails then, which after an early stop is expected
	return nil
}

type limitedBuffer struct {
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// checkXzDict refuses an xz stream whose first block asks for a
// dictionary over MaxWindow: the decoder allocates whatever the stream
// asks for. rpm writes one block, or several alike when xz ran threaded.
func checkXzDict(br *bufio.Reader) error {
	const streamHeader = 12
	b, _ := br.Peek(streamHeader + 1024)
	if len(b) < streamHeader+2 {
		return nil // too short to be anything; the decoder reports it
	}
	blk := b[streamHeader:]
	if blk[0] == 0 {
		return nil // index indicator: no blocks
	}
	size := (int(blk[0]) + 1) * 4
	if size > len(blk) {
		return nil
	}
	flags := blk[1]
	p := 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present { // compressed / uncompressed size, varints
			for p < size && blk[p]&0x80 != 0 {
				p++
			}
			p++
		}
	}
	for f := 0; f <= int(flags&0x03) && p+2 < size; f++ {
		id, n := blk[p], int(blk[p+1])
		if id == 0x21 && n == 1 && p+2 < size {
			bits := blk[p+2]
			if bits > 40 {
				return &FormatError{Off: int64(streamHeader + p + 2), Msg: "payload: xz: bad dictionary size"}
			}
			dict := uint64(2|bits&1) << (bits/2 + 11)
			if bits == 40 || dict > MaxWindow {
				return &FormatError{Off: int64(streamHeader + p + 2), Msg: "payload: xz dictionary larger than 256 MiB"}
			}
		}
		p += 2 + n
	}
	return nil
}

// Member is one cpio member of a payload.
type Member struct {
	// Path is absolute, as the header lists it.
	Path  string
	Mode  uint32
	Size  int64
	Link  string
	Inode int64
	Nlink int
}

// IsRegular reports a regular file.
func (m *Member) IsRegular() bool { return m.Mode&ModeType == ModeRegular }

// ErrStop, returned by a WalkFunc, ends the walk early without error.
var ErrStop = errors.New("stop walking")

// WalkFunc receives each member and a reader of its data. Data not read is
// skipped (still decompressed). Returning ErrStop ends the walk.
type WalkFunc func(m *Member, data io.Reader) error

// Walk reads the cpio archive from payload member by member until the
// trailer, or until fn returns ErrStop. Malformed members are *FormatError
// with the payload offset; fn's errors are returned as they are.
func Walk(payload io.Reader, fn WalkFunc) error {
	// cpio reads headers a few bytes at a time and skips data in small
	// chunks: buffered, that is not a syscall each on an xz pipe.
	if _, ok := payload.(*bufio.Reader); !ok {
		payload = bufio.NewReaderSize(payload, 256<<10)
	}
	cr := &countReader{r: payload}
	ar := cpio.NewReader(cr)
	for {
		off := cr.n
		h, err := ar.Next()
		if err == io.EOF {
			return nil
		}
		if fe := (*FormatError)(nil); errors.As(err, &fe) {
			return fe // the decoder's
		}
		if err != nil {
			msg := err.Error()
			if errors.Is(err, io.ErrUnexpectedEOF) {
				msg = "truncated"
			} else if errors.Is(err, cpio.ErrHeader) {
				msg = "bad cpio header (only newc, magic 070701, is supported)"
			}
			return &FormatError{Off: off, Msg: "payload: " + msg}
		}
		p, perr := CleanPath(h.Name)
		if perr != nil {
			return &FormatError{Member: h.Name, Off: off, Msg: perr.Error()}
		}
		m := &Member{Path: p, Mode: uint32(h.Mode), Size: h.Size, Link: h.Linkname, Inode: h.Inode, Nlink: h.Links}
		data := &exactReader{r: ar, left: h.Size, m: m, off: cr}
		if err := fn(m, data); err != nil {
			if err == ErrStop {
				return nil
			}
			return err
		}
	}
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// exactReader yields exactly left bytes, turning an early end into a
// FormatError naming the member.
type exactReader struct {
	r    io.Reader
	left int64
	m    *Member
	off  *countReader
}

func (e *exactReader) Read(p []byte) (int, error) {
	if e.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > e.left {
		p = p[:e.left]
	}
	n, err := e.r.Read(p)
	e.left -= int64(n)
	if err == io.EOF || (err == nil && n == 0) {
		if e.left > 0 {
			return n, &FormatError{Member: e.m.Path, Off: e.off.n, Msg: fmt.Sprintf("payload truncated: %d bytes missing", e.left)}
		}
		err = nil
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = &FormatError{Member: e.m.Path, Off: e.off.n, Msg: fmt.Sprintf("payload truncated: %d bytes missing", e.left)}
	} else if err != nil && !errors.As(err, new(*FormatError)) {
		err = &FormatError{Member: e.m.Path, Off: e.off.n, Msg: "payload: " + err.Error()}
	}
	return n, err
}
