package rpmfile

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/cavaliergopher/rpm"
)

// ErrFormat is wrapped by every error about malformed package bytes.
var ErrFormat = errors.New("malformed rpm")

// FormatError says what is wrong and where.
type FormatError struct {
	// Member is the cpio member (or header field) concerned, if any.
	Member string
	// Off is the byte offset in the decompressed payload, or -1.
	Off int64
	Msg string
}

func (e *FormatError) Error() string {
	var b strings.Builder
	b.WriteString("rpm")
	if e.Member != "" {
		fmt.Fprintf(&b, " member %q", e.Member)
	}
	if e.Off >= 0 {
		fmt.Fprintf(&b, " at payload byte %d", e.Off)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

func (e *FormatError) Unwrap() error { return ErrFormat }

// File flags from rpm's rpmfileAttrs.
const (
	FlagConfig   = 1 << 0
	FlagDoc      = 1 << 1
	FlagGhost    = 1 << 6
	FlagLicense  = 1 << 7
	FlagReadme   = 1 << 8
	FlagArtifact = 1 << 12
)

// Unix file type bits of Entry.Mode.
const (
	ModeType    = 0o170000
	ModeRegular = 0o100000
	ModeDir     = 0o040000
	ModeSymlink = 0o120000
)

// Entry is one file as the header lists it.
type Entry struct {
	Path  string
	Mode  uint32 // st_mode: type and permission bits
	Size  int64
	Link  string // symlink target
	Class string // libmagic's description at build time, "" if unknown
	Flags int64
	Inode int64
}

// IsRegular reports a regular file.
func (e *Entry) IsRegular() bool { return e.Mode&ModeType == ModeRegular }

// IsSymlink reports a symbolic link.
func (e *Entry) IsSymlink() bool { return e.Mode&ModeType == ModeSymlink }

// Header is what retraced needs of an RPM header.
type Header struct {
	Name, Version, Release, Arch string
	Epoch                        int
	SourceRPM                    string
	BuildTime                    int64
	// Compressor is the payload compression ("gzip", "xz", "zstd",
	// "bzip2", "lzma", or "" for none).
	Compressor string
	// Format is the payload archive format; only "cpio" is supported.
	Format string
	// Files in header order, which is the payload's order.
	Files []Entry
}

// RPM header tags used here (rpmtag.h).
const (
	tagFileSizes     = 1028
	tagFileModes     = 1030
	tagFileLinkTos   = 1036
	tagFileFlags     = 1037
	tagFileInodes    = 1096
	tagDirIndexes    = 1116
	tagBaseNames     = 1117
	tagDirNames      = 1118
	tagFileClass     = 1141
	tagClassDict     = 1142
	tagLongFileSizes = 5008
	tagBuildTime     = 1006
	tagSourceRPM     = 1044
	tagArch          = 1022
	tagSourcePackage = 1106
)

// MaxFiles bounds the file list of one header.
const MaxFiles = 1 << 20

// ReadHeader reads the lead, signature and header from r, leaving r at the
// start of the payload. r should be buffered.
func ReadHeader(r io.Reader) (h *Header, err error) {
	defer func() {
		// The rpm library indexes header arrays without checking them
		// against each other; a hostile header must not crash a sync.
		if p := recover(); p != nil {
			h, err = nil, &FormatError{Off: -1, Msg: fmt.Sprintf("header: %v", p)}
		}
	}()
	p, err := rpm.Read(fullReader{r})
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, &FormatError{Off: -1, Msg: "header: truncated"}
		}
		return nil, &FormatError{Off: -1, Msg: "header: " + err.Error()}
	}
	if p.Header.GetTag(tagSourcePackage) != nil {
		return nil, &FormatError{Off: -1, Msg: "header: a source package, not a binary one"}
	}
	h = &Header{
		Name:       p.Name(),
		Version:    p.Version(),
		Release:    p.Release(),
		Epoch:      p.Epoch(),
		Arch:       p.Architecture(),
		SourceRPM:  p.SourceRPM(),
		BuildTime:  p.BuildTime().Unix(),
		Compressor: p.PayloadCompression(),
		Format:     p.PayloadFormat(),
	}
	if h.Format == "" {
		h.Format = "cpio"
	}
	if h.Name == "" || h.Version == "" || h.Release == "" || h.Arch == "" {
		return nil, &FormatError{Off: -1, Msg: "header: missing name, version, release or arch"}
	}
	if h.Files, err = files(&p.Header); err != nil {
		return nil, err
	}
	return h, nil
}

// fullReader makes every Read fill its buffer (or fail): the rpm library
// reads fixed-size structures with a single Read call, which a network
// stream may answer short.
type fullReader struct{ r io.Reader }

func (f fullReader) Read(p []byte) (int, error) {
	n, err := io.ReadFull(f.r, p)
	if err == io.ErrUnexpectedEOF {
		err = io.EOF
	}
	return n, err
}

func files(hdr *rpm.Header) ([]Entry, error) {
	names := strs(hdr, tagBaseNames)
	n := len(names)
	if n == 0 {
		return nil, nil
	}
	if n > MaxFiles {
		return nil, &FormatError{Off: -1, Msg: fmt.Sprintf("header: %d files, more than %d", n, MaxFiles)}
	}
	dirs := strs(hdr, tagDirNames)
	dirIdx := ints(hdr, tagDirIndexes)
	modes := ints(hdr, tagFileModes)
	sizes := ints(hdr, tagLongFileSizes)
	if sizes == nil {
		sizes = ints(hdr, tagFileSizes)
	}
	links := strs(hdr, tagFileLinkTos)
	flags := ints(hdr, tagFileFlags)
	inodes := ints(hdr, tagFileInodes)
	classIdx := ints(hdr, tagFileClass)
	dict := strs(hdr, tagClassDict)
	for _, a := range []struct {
		tag string
		n   int
	}{{"DIRINDEXES", len(dirIdx)}, {"FILEMODES", len(modes)}, {"FILESIZES", len(sizes)}} {
		if a.n != n {
			return nil, &FormatError{Off: -1, Msg: fmt.Sprintf("header: %s has %d entries for %d files", a.tag, a.n, n)}
		}
	}
	opt := func(name string, l int) error {
		if l != 0 && l != n {
			return &FormatError{Off: -1, Msg: fmt.Sprintf("header: %s has %d entries for %d files", name, l, n)}
		}
		return nil
	}
	for _, e := range []error{opt("FILELINKTOS", len(links)), opt("FILEFLAGS", len(flags)),
		opt("FILEINODES", len(inodes)), opt("FILECLASS", len(classIdx))} {
		if e != nil {
			return nil, e
		}
	}
	out := make([]Entry, n)
	for i := range out {
		di := dirIdx[i]
		if di < 0 || di >= int64(len(dirs)) {
			return nil, &FormatError{Off: -1, Msg: fmt.Sprintf("header: file %d: dir index %d out of range", i, di)}
		}
		e := Entry{
			Path: dirs[di] + names[i],
			Mode: uint32(modes[i]),
			Size: sizes[i],
		}
		if links != nil {
			e.Link = links[i]
		}
		if flags != nil {
			e.Flags = flags[i]
		}
		if inodes != nil {
			e.Inode = inodes[i]
		}
		if classIdx != nil {
			if ci := classIdx[i]; ci >= 0 && ci < int64(len(dict)) {
				e.Class = dict[ci]
			}
		}
		if e.Size < 0 {
			return nil, &FormatError{Member: e.Path, Off: -1, Msg: "header: negative size"}
		}
		out[i] = e
	}
	return out, nil
}

func strs(h *rpm.Header, tag int) []string {
	t := h.GetTag(tag)
	if t == nil {
		return nil
	}
	return t.StringSlice()
}

func ints(h *rpm.Header, tag int) []int64 {
	t := h.GetTag(tag)
	if t == nil {
		return nil
	}
	return t.Int64Slice()
}

// CleanPath turns a cpio member name ("./usr/bin/x") into the absolute path
// the header uses ("/usr/bin/x"). It rejects names that are absolute
// without the "./" prefix rpm writes, and names that climb with "..".
func CleanPath(name string) (string, error) {
	rel, ok := strings.CutPrefix(name, "./")
	if !ok {
		if strings.HasPrefix(name, "/") {
			return "", fmt.Errorf("absolute path")
		}
		rel = name
	}
	if rel == "" || rel == "." {
		return "", fmt.Errorf("empty path")
	}
	for _, el := range strings.Split(rel, "/") {
		if el == ".." {
			return "", fmt.Errorf("path climbs out with ..")
		}
	}
	if strings.HasPrefix(rel, "/") {
		return "", fmt.Errorf("absolute path")
	}
	if strings.ContainsRune(rel, 0) {
		return "", fmt.Errorf("NUL in path")
	}
	return path.Clean("/" + rel), nil
}
