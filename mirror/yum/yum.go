package yum

import (
	"bufio"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/xml"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"

	"github.com/retraced/retraced/internal/decompress"
)

// ErrFormat is wrapped by every metadata parse error.
var ErrFormat = errors.New("malformed repository metadata")

// Checksum is a digest as metadata writes it.
type Checksum struct {
	Type  string `xml:"type,attr"`
	Value string `xml:",chardata"`
}

func (c Checksum) String() string { return c.Type + ":" + strings.TrimSpace(c.Value) }

// NewHash returns the hash for a metadata checksum type.
func NewHash(typ string) (hash.Hash, error) {
	switch typ {
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	case "sha384":
		return sha512.New384(), nil
	case "sha224":
		return sha256.New224(), nil
	case "sha1", "sha":
		return sha1.New(), nil
	}
	return nil, fmt.Errorf("%w: unsupported checksum type %q", ErrFormat, typ)
}

// Data is one metadata file repomd.xml lists.
type Data struct {
	Type     string   `xml:"type,attr"`
	Checksum Checksum `xml:"checksum"`
	Location struct {
		Href string `xml:"href,attr"`
	} `xml:"location"`
	Size     int64 `xml:"size"`
	OpenSize int64 `xml:"open-size"`
}

// Repomd is repodata/repomd.xml.
type Repomd struct {
	Revision string `xml:"revision"`
	Data     []Data `xml:"data"`
}

// ParseRepomd reads repomd.xml.
func ParseRepomd(r io.Reader) (*Repomd, error) {
	var m Repomd
	d := xml.NewDecoder(r)
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: repomd.xml at byte %d: %v", ErrFormat, d.InputOffset(), err)
	}
	return &m, nil
}

// Primary returns the primary metadata entry.
func (m *Repomd) Primary() (*Data, error) {
	for i := range m.Data {
		if m.Data[i].Type == "primary" {
			d := &m.Data[i]
			if d.Location.Href == "" || d.Checksum.Type == "" || strings.TrimSpace(d.Checksum.Value) == "" {
				return nil, fmt.Errorf("%w: repomd.xml: primary without location or checksum", ErrFormat)
			}
			return d, nil
		}
	}
	return nil, fmt.Errorf("%w: repomd.xml lists no primary metadata", ErrFormat)
}

// Package is one <package> of primary.xml.
type Package struct {
	Type    string `xml:"type,attr"`
	Name    string `xml:"name"`
	Arch    string `xml:"arch"`
	Version struct {
		Epoch string `xml:"epoch,attr"`
		Ver   string `xml:"ver,attr"`
		Rel   string `xml:"rel,attr"`
	} `xml:"version"`
	Checksum Checksum `xml:"checksum"`
	Size     struct {
		Package int64 `xml:"package,attr"`
	} `xml:"size"`
	Location struct {
		Href string `xml:"href,attr"`
		Base string `xml:"http://www.w3.org/XML/1998/namespace base,attr"`
	} `xml:"location"`
}

// Epoch returns the epoch as a number (0 when absent).
func (p *Package) Epoch() (int, error) {
	if p.Version.Epoch == "" {
		return 0, nil
	}
	e, err := strconv.Atoi(p.Version.Epoch)
	if err != nil || e < 0 {
		return 0, fmt.Errorf("%w: package %s: epoch %q", ErrFormat, p.Name, p.Version.Epoch)
	}
	return e, nil
}

// ParsePrimary streams primary.xml, calling fn for each package in order.
func ParsePrimary(r io.Reader, fn func(*Package) error) error {
	d := xml.NewDecoder(r)
	seenRoot := false
	for {
		tok, err := d.Token()
		if err == io.EOF {
			if !seenRoot {
				return fmt.Errorf("%w: primary.xml: no <metadata> element", ErrFormat)
			}
			return nil
		}
		if err != nil {
			return parseErr("primary.xml", d.InputOffset(), err)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		switch se.Name.Local {
		case "metadata":
			seenRoot = true
		case "package":
			if !seenRoot {
				return fmt.Errorf("%w: primary.xml: <package> outside <metadata>", ErrFormat)
			}
			var p Package
			off := d.InputOffset()
			if err := d.DecodeElement(&p, &se); err != nil {
				return parseErr("primary.xml package", off, err)
			}
			if p.Name == "" || p.Arch == "" || p.Version.Ver == "" || p.Version.Rel == "" || p.Location.Href == "" {
				return fmt.Errorf("%w: primary.xml package at byte %d: missing name, arch, version or location", ErrFormat, off)
			}
			if err := fn(&p); err != nil {
				return err
			}
		default:
			if !seenRoot {
				return fmt.Errorf("%w: primary.xml: root element <%s>, want <metadata>", ErrFormat, se.Name.Local)
			}
		}
	}
}

// parseErr names an error of the XML decoder at off: malformed XML, or
// malformed compressed data beneath it, is ErrFormat; a stream over a
// decompression limit is not malformed and is passed on.
func parseErr(what string, off int64, err error) error {
	if errors.Is(err, decompress.ErrTooLarge) {
		return fmt.Errorf("%s at byte %d: %w", what, off, err)
	}
	return fmt.Errorf("%w: %s at byte %d: %v", ErrFormat, what, off, err)
}

// Decompress opens metadata by its magic bytes: gzip, xz, zstd or bzip2,
// or as it is (XML). At most max decompressed bytes are read (0: no
// bound); more, or a stream asking for a larger xz dictionary or zstd
// window than decompress's defaults, fails with an error matching
// decompress.ErrTooLarge, before the decoder allocates anything for it.
// Malformed compressed data wraps ErrFormat.
func Decompress(r io.Reader, max int64) (io.ReadCloser, error) {
	z, err := decompress.NewReader(bufio.NewReaderSize(r, 128<<10), decompress.Config{
		Formats:   []decompress.Format{decompress.Gzip, decompress.XZ, decompress.Zstd, decompress.Bzip2},
		MaxOutput: max,
	})
	if errors.Is(err, decompress.ErrFormat) {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if err != nil {
		return nil, err
	}
	return z, nil
}
