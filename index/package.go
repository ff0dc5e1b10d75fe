package index

// Packages and the files they ship: the values, and reading them.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/retraced/retraced/index/kv"

	"github.com/retraced/retraced/index/blob"
)

// Kind says what a file carrying a build-id is.
type Kind uint8

const (
	// KindNone marks files that carry no build-id.
	KindNone Kind = iota
	// KindExecutable is a binary or shared library shipped by a package.
	KindExecutable
	// KindDebuginfo is a separate debug file (under /usr/lib/debug).
	KindDebuginfo
)

func (k Kind) String() string {
	switch k {
	case KindExecutable:
		return "executable"
	case KindDebuginfo:
		return "debuginfo"
	}
	return "none"
}

// MarshalText implements encoding.TextMarshaler.
func (k Kind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (k *Kind) UnmarshalText(b []byte) error {
	switch string(b) {
	case "executable":
		*k = KindExecutable
	case "debuginfo":
		*k = KindDebuginfo
	case "none", "":
		*k = KindNone
	default:
		return fmt.Errorf("unknown kind %q", b)
	}
	return nil
}

// File is one file of a package that the mirror kept.
type File struct {
	Path string      `json:"path"`
	Mode fs.FileMode `json:"mode"`
	// Size is the uncompressed size of a regular file.
	Size int64 `json:"size,omitempty"`
	// Blob names a regular file's content in the pool; zero for links.
	Blob blob.Digest `json:"blob,omitzero"`
	// Link is a symlink's target.
	Link    string  `json:"link,omitempty"`
	BuildID BuildID `json:"build_id,omitzero"`
	Kind    Kind    `json:"kind,omitempty"`
	// AltLink is, for a debug file processed by dwz, the build-id of the
	// multifile its .gnu_debugaltlink names: the file that holds the
	// debug information it shares with the rest of its build, without
	// which a debugger drops all of it.
	AltLink BuildID `json:"alt_link,omitzero"`
}

// Package is one RPM the mirror ingested.
type Package struct {
	NEVRA     NEVRA  `json:"nevra"`
	SourceRPM string `json:"source_rpm,omitempty"`
	// FileName is the RPM's file name upstream.
	FileName string `json:"file_name"`
	// Checksum is the RPM's checksum as "type:hex".
	Checksum string `json:"checksum"`
	// Fetched is the RPM's size in bytes.
	Fetched int64 `json:"fetched"`
	// Stored is what this package added to the pool, compressed.
	Stored    int64     `json:"stored"`
	BuildTime int64     `json:"build_time,omitempty"`
	Added     time.Time `json:"added"`
	Sources   []string  `json:"sources"`
	Files     []File    `json:"files"`
}

// Package returns the package n, or ErrNotFound.
func (s *Store) Package(n NEVRA) (*Package, error) {
	var p *Package
	err := s.db.View(func(txn kv.Reader) error {
		var err error
		p, err = getPackage(txn, n)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

func getPackage(txn kv.Reader, n NEVRA) (*Package, error) {
	v, err := txn.Get(packageKey(n))
	if errors.Is(err, kv.ErrNotFound) {
		return nil, fmt.Errorf("package %s: %w", n, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get package %s: %w", n, err)
	}
	p := new(Package)
	if err := json.Unmarshal(v, p); err != nil {
		return nil, fmt.Errorf("decode package %s: %w", n, err)
	}
	return p, nil
}

// HasPackage reports whether the package n is in the index.
func (s *Store) HasPackage(n NEVRA) (bool, error) { return s.has(packageKey(n)) }

// HasNVRA reports whether a package of that name, version, release and
// arch is in the index, whatever its epoch (ABRT's package files usually
// leave the epoch out).
func (s *Store) HasNVRA(name, version, release, arch string) (bool, error) {
	err := s.db.View(func(txn kv.Reader) error {
		return txn.Scan([]byte(prefixPackage+name+"-"), true, func(k, _ []byte) error {
			n, err := packageFromKey(k)
			if err == nil && n.Name == name && n.Version == version && n.Release == release && n.Arch == arch {
				return errFound
			}
			return nil
		})
	})
	if errors.Is(err, errFound) {
		return true, nil
	}
	return false, err
}

// errFound stops a scan that found what it looked for.
var errFound = errors.New("found")

// Packages calls fn for every package in the index, in key order.
func (s *Store) Packages(fn func(p *Package) error) error {
	return s.db.View(func(txn kv.Reader) error {
		return txn.Scan([]byte(prefixPackage), false, func(k, v []byte) error {
			p := new(Package)
			if err := json.Unmarshal(v, p); err != nil {
				return fmt.Errorf("decode %s: %w", k, err)
			}
			return fn(p)
		})
	})
}

func (p *Package) buildIDs() []BuildID {
	var ids []BuildID
	for _, f := range p.Files {
		if !f.BuildID.IsZero() {
			ids = append(ids, f.BuildID)
		}
	}
	return ids
}
