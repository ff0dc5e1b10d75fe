package blob

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"os"
	"sync"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// A delta blob holds a file as the difference from another blob, its
// base: a zstd frame compressed with the base's content as a raw
// dictionary (what `zstd --patch-from=BASE` writes), behind a header:
//
//	magicDelta        8 bytes  "RTDELTA\x01"
//	base digest      32 bytes  SHA-256 of the base's content
//	base size         8 bytes  little-endian, the base's content length
//	content size      8 bytes  little-endian, this blob's content length
//	zstd frame                 dictionary id 0, content checksum on
//
// The chain rule: a delta's base is always a full blob (zstd or S2),
// never another delta, so a read costs at most one decompression more
// than a full blob's (the base's, once: its plain copy is a cache). The
// pool refuses to write a delta on a delta and reports a delta whose
// base is one as corrupt.
var magicDelta = []byte{'R', 'T', 'D', 'E', 'L', 'T', 'A', 0x01}

const deltaHeaderSize = 8 + sha256.Size + 8 + 8

// Bounds on deltas. The encoder keeps the whole base in its window (and a
// decoder a window as large), so a delta is made only when base and
// content together fit MaxDeltaSpan; a base smaller than minDeltaBase is
// not worth a second file read.
const (
	MaxDeltaSpan = 64 << 20
	minDeltaBase = 4 << 10
)

// ErrNotDeltaBase reports a blob that may not serve as a delta's base: it
// is a delta itself, or too small or too large.
var ErrNotDeltaBase = errors.New("not a delta base")

// deltaHeader is a parsed delta header.
type deltaHeader struct {
	base     Digest
	baseSize int64
	size     int64
}

func (h deltaHeader) marshal() []byte {
	b := make([]byte, 0, deltaHeaderSize)
	b = append(b, magicDelta...)
	b = append(b, h.base[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(h.baseSize))
	b = binary.LittleEndian.AppendUint64(b, uint64(h.size))
	return b
}

// readDeltaHeader reads a delta header from br, which starts with
// magicDelta.
func readDeltaHeader(br *bufio.Reader) (deltaHeader, error) {
	var b [deltaHeaderSize]byte
	if _, err := io.ReadFull(br, b[:]); err != nil {
		return deltaHeader{}, fmt.Errorf("delta header: %w", err)
	}
	var h deltaHeader
	copy(h.base[:], b[8:8+sha256.Size])
	h.baseSize = int64(binary.LittleEndian.Uint64(b[8+sha256.Size:]))
	h.size = int64(binary.LittleEndian.Uint64(b[16+sha256.Size:]))
	if h.baseSize < 0 || h.size < 0 || h.baseSize > MaxDeltaSpan || h.size > MaxDeltaSpan {
		return deltaHeader{}, fmt.Errorf("delta header: sizes %d and %d out of range", h.baseSize, h.size)
	}
	return h, nil
}

func isDelta(head []byte) bool { return bytes.HasPrefix(head, magicDelta) }

// deltaWindow is the zstd window a delta of content on a base needs so
// that every byte of the base stays reachable: a power of two.
func deltaWindow(baseSize, size int64) int {
	n := max(baseSize+size, zstd.MinWindowSize)
	return 1 << bits.Len64(uint64(n-1))
}

// BlobInfo is what the pool knows of one stored blob without decoding it.
type BlobInfo struct {
	// Stored is the blob's size on disk (compressed).
	Stored int64
	// Compacted: Compact has rewritten it (its final form).
	Compacted bool
	// Delta: the blob is a delta on Base.
	Delta bool
	Base  Digest
}

// Info reports blob d's stored size and form, reading its header. With a
// Remote, blobs are never deltas.
func (p *Pool) Info(d Digest) (BlobInfo, error) {
	if p.cfg.Remote != nil {
		st, err := p.remoteStat(d)
		return BlobInfo{Stored: st.Size, Compacted: st.Compacted}, err
	}
	f, err := os.Open(p.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return BlobInfo{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return BlobInfo{}, fmt.Errorf("blob %s: %w", d, err)
	}
	info := BlobInfo{Stored: fi.Size(), Compacted: fi.Mode().Perm()&0o222 == 0}
	var head [deltaHeaderSize]byte
	n, _ := io.ReadFull(f, head[:])
	if isDelta(head[:n]) {
		h, err := readDeltaHeader(bufio.NewReader(bytes.NewReader(head[:n])))
		if err != nil {
			return info, fmt.Errorf("blob %s: %w: %v", d, ErrCorrupt, err)
		}
		info.Delta, info.Base = true, h.base
	}
	return info, nil
}

// Stat is Info without reading the blob: Delta comes from the mode a
// compacted delta gets (modeDelta), Base is not set. For statistics;
// what must be right (gc keeping bases) reads the header with Info.
func (p *Pool) Stat(d Digest) (BlobInfo, error) {
	if p.cfg.Remote != nil {
		st, err := p.remoteStat(d)
		return BlobInfo{Stored: st.Size, Compacted: st.Compacted}, err
	}
	fi, err := os.Stat(p.Path(d))
	if errors.Is(err, fs.ErrNotExist) {
		return BlobInfo{}, fmt.Errorf("%w: %s", ErrNotFound, d)
	}
	if err != nil {
		return BlobInfo{}, err
	}
	perm := fi.Mode().Perm()
	return BlobInfo{Stored: fi.Size(), Compacted: perm&0o222 == 0, Delta: perm == modeDelta}, nil
}

// DeltaBase reports the base of blob d when it is a delta (ok false for a
// full blob): what gc must keep while d is kept.
func (p *Pool) DeltaBase(d Digest) (base Digest, ok bool, err error) {
	info, err := p.Info(d)
	return info.Base, info.Delta, err
}

// mapped is a read-only memory map of a plain copy: a delta's base, as
// the zstd dictionary, without copying it onto the heap.
type mapped struct {
	b []byte
}

func (m *mapped) close() {
	if m.b != nil {
		syscall.Munmap(m.b)
		m.b = nil
	}
}

// mapBase maps the content of base, a full blob of size bytes, from its
// plain copy (made when missing; Plain checks its digest as it writes
// it). A base that is a delta itself breaks the chain rule: ErrCorrupt.
func (p *Pool) mapBase(base Digest, size int64) (*mapped, error) {
	info, err := p.Info(base)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	if info.Delta {
		return nil, fmt.Errorf("delta base %s: %w: is a delta itself", base, ErrCorrupt)
	}
	path, err := p.Plain(base)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("delta base %s: %w", base, err)
	}
	if fi.Size() != size {
		return nil, fmt.Errorf("delta base %s: %w: %d bytes, the delta says %d", base, ErrCorrupt, fi.Size(), size)
	}
	if size == 0 {
		return &mapped{}, nil
	}
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("delta base %s: map: %w", base, err)
	}
	return &mapped{b: b}, nil
}

// openDelta returns a reader of the content of the delta blob read from
// br (positioned at its header); f is closed with it.
func (p *Pool) openDelta(d Digest, f io.Closer, br *bufio.Reader) (io.ReadCloser, error) {
	h, err := readDeltaHeader(br)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w: %v", d, ErrCorrupt, err)
	}
	base, err := p.mapBase(h.base, h.baseSize)
	if err != nil {
		return nil, fmt.Errorf("open blob %s: %w", d, err)
	}
	dec, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1),
		zstd.WithDecoderDictRaw(0, base.b), zstd.WithDecoderMaxWindow(2*MaxDeltaSpan))
	if err != nil {
		base.close()
		return nil, fmt.Errorf("open blob %s: %w: %v", d, ErrCorrupt, err)
	}
	return &reader{d: d, f: f, dec: &deltaDecoder{dec: dec, base: base, want: h.size}, h: sha256.New()}, nil
}

// deltaDecoder is a delta's zstd stream over its mapped base.
type deltaDecoder struct {
	dec  *zstd.Decoder
	base *mapped
	n    int64
	want int64
}

func (d *deltaDecoder) Read(p []byte) (int, error) {
	n, err := d.dec.Read(p)
	d.n += int64(n)
	if err == io.EOF && d.n != d.want {
		return n, fmt.Errorf("delta holds %d bytes, its header says %d", d.n, d.want)
	}
	return n, err
}

func (d *deltaDecoder) Close() error {
	if d.dec != nil {
		d.dec.Close() // before the unmap: it reads the base
		d.dec = nil
		d.base.close()
	}
	return nil
}

// encodeDelta writes content (size bytes read from src) to w as a delta
// on base, whose content is mapped in baseMap, at level.
func encodeDelta(w io.Writer, base Digest, baseMap []byte, src io.Reader, size int64, level Level) error {
	h := deltaHeader{base: base, baseSize: int64(len(baseMap)), size: size}
	if _, err := w.Write(h.marshal()); err != nil {
		return err
	}
	window := deltaWindow(h.baseSize, size)
	enc, err := getDeltaEncoder(w, window, level, baseMap)
	if err != nil {
		return err
	}
	defer putDeltaEncoder(enc, window, level)
	n, err := io.Copy(enc, src)
	if err != nil {
		enc.Close()
		return err
	}
	if n != size {
		enc.Close()
		return fmt.Errorf("content is %d bytes, not %d", n, size)
	}
	return enc.Close()
}

// Delta encoders are kept for reuse, by window and level: a new one
// allocates (and zeroes) a history of twice its window, which cost more
// CPU than the encoding when every delta took a fresh one.
var deltaEncoders sync.Map // deltaEncKey -> *sync.Pool of *zstd.Encoder

type deltaEncKey struct {
	window int
	level  Level
}

func getDeltaEncoder(w io.Writer, window int, level Level, base []byte) (*zstd.Encoder, error) {
	pl, _ := deltaEncoders.LoadOrStore(deltaEncKey{window, level}, new(sync.Pool))
	if enc, ok := pl.(*sync.Pool).Get().(*zstd.Encoder); ok {
		if err := enc.ResetWithOptions(w, zstd.WithEncoderDictRaw(0, base)); err == nil {
			return enc, nil
		}
	}
	return zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(true), zstd.WithWindowSize(window), zstd.WithEncoderDictRaw(0, base))
}

// putDeltaEncoder returns a closed encoder for reuse, with no reference
// left to its base (a mapping about to go) nor its writer.
func putDeltaEncoder(enc *zstd.Encoder, window int, level Level) {
	if err := enc.ResetWithOptions(nil, zstd.WithEncoderDictDelete()); err != nil {
		return
	}
	pl, _ := deltaEncoders.Load(deltaEncKey{window, level})
	pl.(*sync.Pool).Put(enc)
}
