// Package decompresstest makes hostile compressed streams for tests: xz
// whose blocks ask for any dictionary, as a crafted upload or mirror
// would send. Of retraced, it may import nothing.
package decompresstest

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"testing"

	"github.com/ulikunitz/xz"
)

// XZ compresses data into one .xz stream with the Go encoder and a 1 MiB
// dictionary, in blocks of blockSize uncompressed bytes (0: one block).
func XZ(t testing.TB, data []byte, blockSize int64) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.WriterConfig{DictCap: 1 << 20, BlockSize: blockSize}.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// XZBlocks returns the offsets of the block headers of the one-stream
// .xz file b, from its index.
func XZBlocks(t testing.TB, b []byte) []int {
	t.Helper()
	if len(b) < 24 || !bytes.Equal(b[len(b)-2:], []byte("YZ")) {
		t.Fatal("not a one-stream xz file")
	}
	backward := (int(binary.LittleEndian.Uint32(b[len(b)-8:])) + 1) * 4
	index := b[len(b)-12-backward:]
	p := 1 // the indicator
	varint := func() int {
		var v uint64
		for i := 0; ; i++ {
			v |= uint64(index[p]&0x7f) << (7 * i)
			p++
			if index[p-1]&0x80 == 0 {
				return int(v)
			}
		}
	}
	offs := []int{}
	at := 12
	for n := varint(); n > 0; n-- {
		unpadded := varint()
		varint() // uncompressed size
		offs = append(offs, at)
		at += (unpadded + 3) &^ 3
	}
	return offs
}

// WithXZDict returns a copy of the .xz file b in which the block header
// at offset at asks for the LZMA2 dictionary whose size byte is dict
// (40: 4 GiB - 1, 37: 1.5 GiB), its CRC32 fixed.
func WithXZDict(t testing.TB, b []byte, dict byte, at int) []byte {
	t.Helper()
	b = bytes.Clone(b)
	h := b[at:]
	size := (int(h[0]) + 1) * 4
	p := 2
	skip := func() int { // a varint, returned
		var v int
		for i := 0; ; i++ {
			v |= int(h[p]&0x7f) << (7 * i)
			p++
			if h[p-1]&0x80 == 0 {
				return v
			}
		}
	}
	for _, bit := range []byte{0x40, 0x80} {
		if h[1]&bit != 0 {
			skip()
		}
	}
	found := false
	for range int(h[1]&3) + 1 {
		id, n := skip(), skip()
		if id == 0x21 && n == 1 {
			h[p] = dict
			found = true
		}
		p += n
	}
	if !found {
		t.Fatalf("no LZMA2 filter in block header % x", h[:size])
	}
	binary.LittleEndian.PutUint32(h[size-4:], crc32.ChecksumIEEE(h[:size-4]))
	return b
}
