package index

import (
	"encoding/hex"
	"errors"
	"fmt"
)

// MaxBuildIDLen bounds a build-id in bytes. GNU ld writes 20 (sha1) or 16
// (md5/uuid) bytes; anything longer than 64 is not a build-id.
const MaxBuildIDLen = 64

// ErrBadBuildID reports a string that is not a build-id.
var ErrBadBuildID = errors.New("malformed build-id")

// BuildID is a GNU build-id. The zero value is the empty (absent) id.
type BuildID struct{ b string }

// ParseBuildID parses lowercase or uppercase hex of 1 to 64 bytes.
func ParseBuildID(s string) (BuildID, error) {
	if len(s) == 0 || len(s)%2 != 0 || len(s) > 2*MaxBuildIDLen {
		return BuildID{}, fmt.Errorf("%w: %q: want an even number of hex digits, 2 to %d", ErrBadBuildID, truncate(s, 40), 2*MaxBuildIDLen)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return BuildID{}, fmt.Errorf("%w: %q: not hex", ErrBadBuildID, truncate(s, 40))
	}
	return BuildID{string(b)}, nil
}

// BuildIDFromBytes wraps raw note bytes; it rejects empty and oversized ids.
func BuildIDFromBytes(b []byte) (BuildID, error) {
	if len(b) == 0 || len(b) > MaxBuildIDLen {
		return BuildID{}, fmt.Errorf("%w: %d bytes", ErrBadBuildID, len(b))
	}
	return BuildID{string(b)}, nil
}

// String returns lowercase hex.
func (id BuildID) String() string { return hex.EncodeToString([]byte(id.b)) }

// Bytes returns the raw id.
func (id BuildID) Bytes() []byte { return []byte(id.b) }

// IsZero reports whether id is absent.
func (id BuildID) IsZero() bool { return id.b == "" }

// MarshalText implements encoding.TextMarshaler.
func (id BuildID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *BuildID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = BuildID{}
		return nil
	}
	v, err := ParseBuildID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
