package rpmfile

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"

	"github.com/cavaliergopher/cpio"

	"github.com/retraced/retraced/internal/decompress"
)

// MaxWindow bounds a decompressor's dictionary or window. rpm's strongest
// presets use 64 MiB (xz -9) and 8 MiB (zstd -19); 256 MiB leaves room
// without letting a hostile stream demand gigabytes.
const MaxWindow = 256 << 20

// magicCpio starts an uncompressed payload.
var magicCpio = []byte("07070")

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
// Decoding goes through internal/decompress, which refuses an xz block
// (whichever decoder reads it), lzma header or zstd frame asking for more
// than MaxWindow.
//
// Closing the returned reader before its end is fine: with an external xz
// the process is stopped, and every byte it took from r has been read
// from r, so a checksum computed beneath r still sees each byte once.
func Decompress(ctx context.Context, r io.Reader, hint string, o Options) (io.ReadCloser, error) {
	br, ok := r.(*bufio.Reader)
	if !ok {
		br = bufio.NewReaderSize(r, 256<<10)
	}
	head, err := br.Peek(decompress.MagicLen)
	if err != nil && len(head) == 0 {
		return nil, &FormatError{Off: 0, Msg: "payload: empty"}
	}
	c := decompress.Config{
		Formats:   []decompress.Format{decompress.Gzip, decompress.XZ, decompress.Zstd, decompress.Bzip2},
		MaxDict:   MaxWindow,
		MaxWindow: MaxWindow,
	}
	cpio := bytes.HasPrefix(head, magicCpio)
	if hint == "lzma" && !cpio {
		c.NoMagic = decompress.LZMA
	}
	switch o.XZ {
	case XZLiblzma:
		c.XZDecoder = newLiblzma
	case "", XZGo:
	default:
		c.XZDecoder = func(r *bufio.Reader) (io.ReadCloser, error) { return externalXZ(ctx, r, o.XZ) }
	}
	z, err := decompress.NewReader(br, c)
	if err != nil {
		return nil, payloadErr(err, 0, "")
	}
	if z.Format() == decompress.Raw {
		if !cpio {
			return nil, &FormatError{Off: 0, Msg: fmt.Sprintf("payload: unknown compression (header says %q, magic % x)", hint, head)}
		}
		return z, nil
	}
	return &namedDecoder{rc: z, codec: z.Format().String()}, nil
}

// payloadErr reports a decoder's error as a *FormatError naming the codec
// and the payload offset, unless it is one already.
func payloadErr(err error, off int64, codec string) error {
	if fe := (*FormatError)(nil); errors.As(err, &fe) {
		return fe
	}
	msg := err.Error() // decompress's errors name the codec
	if !errors.Is(err, decompress.ErrFormat) && !errors.Is(err, decompress.ErrTooLarge) && codec != "" {
		msg = codec + ": " + msg
	}
	return &FormatError{Off: off, Msg: "payload: " + msg}
}

// namedDecoder reports a decoder's errors as *FormatError naming the
// codec and the payload offset, except io.ErrUnexpectedEOF, which Walk
// turns into "truncated" naming the member.
type namedDecoder struct {
	rc    io.ReadCloser
	codec string
	off   int64 // decompressed bytes so far
}

func (d *namedDecoder) Read(p []byte) (int, error) {
	n, err := d.rc.Read(p)
	d.off += int64(n)
	if err != nil && err != io.EOF && !errors.Is(err, io.ErrUnexpectedEOF) {
		err = payloadErr(err, d.off, d.codec)
	}
	return n, err
}

func (d *namedDecoder) Close() error { return d.rc.Close() }

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
