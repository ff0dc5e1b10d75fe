package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/retraced/retraced/index/blob"
)

// errCodec reports a stored value that does not decode; it means the
// database is damaged or from an incompatible version.
var errCodec = errors.New("index: undecodable value")

// Match values are written as:
//
//	uvarint count, then per match:
//	  str name, uvarint epoch, str version, str release, str arch,
//	  byte kind, str path, [32]byte blob digest, uvarint size
//
// with str = uvarint length + bytes, and then, only when some match has a
// dwz multifile (Match.AltLink), a trailer: per match in the same order,
// str altlink build-id (empty for none). A value without the trailer (all
// values written before it existed) decodes with no altlinks, and a reader
// that predates it ignores it. The format favours decode speed: a lookup
// is one Get plus this decode.

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func encodeMatches(ms []Match) []byte {
	n := 1
	for _, m := range ms {
		n += len(m.NEVRA.Name) + len(m.NEVRA.Version) + len(m.NEVRA.Release) + len(m.NEVRA.Arch) + len(m.Path) + 64
	}
	b := make([]byte, 0, n)
	b = binary.AppendUvarint(b, uint64(len(ms)))
	for _, m := range ms {
		b = appendStr(b, m.NEVRA.Name)
		b = binary.AppendUvarint(b, uint64(m.NEVRA.Epoch))
		b = appendStr(b, m.NEVRA.Version)
		b = appendStr(b, m.NEVRA.Release)
		b = appendStr(b, m.NEVRA.Arch)
		b = append(b, byte(m.Kind))
		b = appendStr(b, m.Path)
		b = append(b, m.Blob[:]...)
		b = binary.AppendUvarint(b, uint64(m.Size))
	}
	if slices.ContainsFunc(ms, func(m Match) bool { return !m.AltLink.IsZero() }) {
		for _, m := range ms {
			b = appendStr(b, m.AltLink.b)
		}
	}
	return b
}

type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		d.err = fmt.Errorf("%w: bad varint at byte %d", errCodec, d.off)
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)-d.off) {
		d.err = fmt.Errorf("%w: %d bytes past the end at byte %d", errCodec, n, d.off)
		return nil
	}
	v := d.b[d.off : d.off+int(n)]
	d.off += int(n)
	return v
}

func (d *decoder) str() string { return string(d.bytes(d.uvarint())) }

func decodeMatches(b []byte) ([]Match, error) {
	d := &decoder{b: b}
	n := d.uvarint()
	if n > uint64(len(b)) {
		return nil, fmt.Errorf("%w: count %d exceeds value size", errCodec, n)
	}
	ms := make([]Match, 0, n)
	for i := uint64(0); i < n && d.err == nil; i++ {
		var m Match
		m.NEVRA.Name = d.str()
		m.NEVRA.Epoch = int(d.uvarint())
		m.NEVRA.Version = d.str()
		m.NEVRA.Release = d.str()
		m.NEVRA.Arch = d.str()
		if k := d.bytes(1); k != nil {
			m.Kind = Kind(k[0])
		}
		m.Path = d.str()
		copy(m.Blob[:], d.bytes(uint64(len(blob.Digest{}))))
		m.Size = int64(d.uvarint())
		ms = append(ms, m)
	}
	if d.err == nil && d.off < len(d.b) {
		for i := range ms {
			if id := d.str(); id != "" && d.err == nil {
				if len(id) > MaxBuildIDLen {
					return nil, fmt.Errorf("%w: altlink of %d bytes at byte %d", errCodec, len(id), d.off)
				}
				ms[i].AltLink = BuildID{id}
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return ms, nil
}

// Counts are the index totals kept up to date by every write.
type Counts struct {
	Packages uint64 `json:"packages"`
	BuildIDs uint64 `json:"build_ids"`
	Files    uint64 `json:"files"`
}

func encodeCounts(c Counts) []byte {
	b := binary.AppendUvarint(nil, c.Packages)
	b = binary.AppendUvarint(b, c.BuildIDs)
	return binary.AppendUvarint(b, c.Files)
}

func decodeCounts(b []byte) (Counts, error) {
	d := &decoder{b: b}
	c := Counts{Packages: d.uvarint(), BuildIDs: d.uvarint(), Files: d.uvarint()}
	return c, d.err
}

// Path index values (v1/f/ keys) are written as:
//
//	byte kind, str raw build-id, str the RPM's file name
//
// so that a path search answers from the keys it scans, decoding no
// package.
func encodePathValue(k Kind, id BuildID, archive string) []byte {
	b := make([]byte, 0, 2+len(id.b)+2+len(archive))
	b = append(b, byte(k))
	b = appendStr(b, id.b)
	return appendStr(b, archive)
}

func decodePathValue(v []byte) (Kind, BuildID, string, error) {
	d := &decoder{b: v}
	var k Kind
	if b := d.bytes(1); b != nil {
		k = Kind(b[0])
	}
	id := d.str()
	archive := d.str()
	if d.err != nil {
		return 0, BuildID{}, "", d.err
	}
	if len(id) == 0 || len(id) > MaxBuildIDLen {
		return 0, BuildID{}, "", fmt.Errorf("%w: path entry build-id of %d bytes", errCodec, len(id))
	}
	return k, BuildID{id}, archive, nil
}
