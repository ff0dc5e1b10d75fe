package rpmfile

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
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
	// HeaderSHA256 is the signature's digest of the main header (hex), ""
	// when absent; PayloadSHA256 the header's digest of the compressed
	// payload. With no repository checksum (tree sources), these are what
	// proves a download whole: see VerifyHeader and the payload digest.
	HeaderSHA256, PayloadSHA256 string
	// PayloadDigestAlgo is the header's PAYLOADDIGESTALGO (an OpenPGP
	// hash algorithm number; 8 is SHA-256), 0 when the header has none.
	PayloadDigestAlgo int
	// Size is the whole file's length as the signature gives it (lead
	// and signature, plus its header-and-payload size), 0 when absent.
	Size      int64
	headerSum string
	// main is the main header as the file has it (intro, index and
	// data): what rpm 4's header-only OpenPGP signatures sign.
	main []byte
	// sigs are the signature header's OpenPGP signatures over main.
	sigs []headerSig
	// legacy names the signature tags over header and payload (rpm 3's
	// PGP, GPG) present, which VerifySignature does not check.
	legacy []string
}

// ErrDigest reports an RPM whose bytes do not match its own digests.
var ErrDigest = errors.New("rpm digest mismatch")

// VerifyHeader checks the main header against the signature's SHA-256.
// It reports whether there was a digest to check.
func (h *Header) VerifyHeader() (bool, error) {
	if h.HeaderSHA256 == "" {
		return false, nil
	}
	if h.HeaderSHA256 != h.headerSum {
		return true, fmt.Errorf("%w: header is %s, signature says %s", ErrDigest, h.headerSum, h.HeaderSHA256)
	}
	return true, nil
}

// RPM header tags used here (rpmtag.h).
const (
	tagFileSizes         = 1028
	tagFileModes         = 1030
	tagFileLinkTos       = 1036
	tagFileFlags         = 1037
	tagFileInodes        = 1096
	tagDirIndexes        = 1116
	tagBaseNames         = 1117
	tagDirNames          = 1118
	tagFileClass         = 1141
	tagClassDict         = 1142
	tagLongFileSizes     = 5008
	tagBuildTime         = 1006
	tagSourceRPM         = 1044
	tagArch              = 1022
	tagSourcePackage     = 1106
	tagPayloadDigest     = 5092
	tagPayloadDigestAlgo = 5093
	sigTagSHA256         = 273
	sigTagDSA            = 267  // RPMSIGTAG_DSA: OpenPGP signature of the header (DSA, EdDSA, ECDSA)
	sigTagRSA            = 268  // RPMSIGTAG_RSA: OpenPGP signature of the header (RSA)
	sigTagPGP            = 1002 // RPMSIGTAG_PGP: rpm 3's RSA signature of header and payload
	sigTagGPG            = 1005 // RPMSIGTAG_GPG: rpm 3's DSA signature of header and payload
	sigTagOpenPGP        = 278  // RPMSIGTAG_OPENPGP: rpm 6's (v6) signatures
	sigTagLongSize       = 270  // header and payload bytes, int64
	sigTagSize           = 1000 // the same, int32
	pgpHashSHA256        = 8
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
	raw, mainStart, err := readRaw(r)
	if err != nil {
		return nil, err
	}
	mainSum := sha256.Sum256(raw[mainStart:])
	p, err := rpm.Read(bytes.NewReader(raw))
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
	h.HeaderSHA256 = strings.ToLower(p.Signature.GetTag(sigTagSHA256).String())
	size := p.Signature.GetTag(sigTagLongSize).Int64()
	if size <= 0 {
		size = p.Signature.GetTag(sigTagSize).Int64()
	}
	if size > 0 {
		h.Size = int64(mainStart) + size
	}
	h.headerSum = hex.EncodeToString(mainSum[:])
	if algo := p.Header.GetTag(tagPayloadDigestAlgo).Int64(); algo == pgpHashSHA256 {
		h.PayloadSHA256 = strings.ToLower(p.Header.GetTag(tagPayloadDigest).String())
	} else if algo > 0 && algo < 256 {
		h.PayloadDigestAlgo = int(algo)
	}
	if h.PayloadSHA256 != "" {
		h.PayloadDigestAlgo = pgpHashSHA256
	}
	h.main = raw[mainStart:]
	for _, tag := range []int{sigTagRSA, sigTagDSA} {
		if t := p.Signature.GetTag(tag); t != nil {
			h.sigs = append(h.sigs, headerSig{tag: tag, packet: t.Bytes()})
		}
	}
	for _, l := range []struct {
		tag  int
		name string
	}{{sigTagPGP, "PGP"}, {sigTagGPG, "GPG"}, {sigTagOpenPGP, "OPENPGP (rpm 6)"}} {
		if p.Signature.GetTag(l.tag) != nil {
			h.legacy = append(h.legacy, l.name)
		}
	}
	if h.Name == "" || h.Version == "" || h.Release == "" || h.Arch == "" {
		return nil, &FormatError{Off: -1, Msg: "header: missing name, version, release or arch"}
	}
	if h.Files, err = files(&p.Header); err != nil {
		return nil, err
	}
	return h, nil
}

// Header structure limits, as rpm's own hdrchkTags and a data bound
// generous for the largest real packages (kernel headers are a few MiB).
const (
	maxTags       = 0xffff
	maxHeaderData = 64 << 20
	leadSize      = 96
)

// readRaw reads the lead and both headers into memory and checks every
// index entry against the data it points into, so that the rpm library
// (which allocates by an entry's count before checking it) only ever sees
// consistent headers. Reading with io.ReadFull also shields it from short
// reads, which it does not handle.
func readRaw(r io.Reader) (raw []byte, mainStart int, err error) {
	raw = make([]byte, leadSize, 64<<10)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, 0, truncated("lead", err)
	}
	if !bytes.Equal(raw[:4], []byte{0xed, 0xab, 0xee, 0xdb}) {
		return nil, 0, &FormatError{Off: 0, Msg: "not an rpm (bad lead magic)"}
	}
	for i, name := range []string{"signature", "header"} {
		start := int64(len(raw))
		if i == 1 {
			mainStart = len(raw)
		}
		var intro [16]byte
		if _, err := io.ReadFull(r, intro[:]); err != nil {
			return nil, 0, truncated(name, err)
		}
		if !bytes.Equal(intro[:3], []byte{0x8e, 0xad, 0xe8}) {
			return nil, 0, &FormatError{Off: start, Msg: name + ": bad magic"}
		}
		tags := binary.BigEndian.Uint32(intro[8:12])
		size := binary.BigEndian.Uint32(intro[12:16])
		if tags > maxTags || size > maxHeaderData {
			return nil, 0, &FormatError{Off: start, Msg: fmt.Sprintf("%s: %d tags, %d bytes of data: over the limits", name, tags, size)}
		}
		n := int(tags)*16 + int(size)
		pad := 0
		if i == 0 {
			pad = (8 - int(size)%8) % 8
		}
		raw = append(raw, intro[:]...)
		body := len(raw)
		raw = append(raw, make([]byte, n+pad)...)
		if _, err := io.ReadFull(r, raw[body:]); err != nil {
			return nil, 0, truncated(name, err)
		}
		index, data := raw[body:body+int(tags)*16], raw[body+int(tags)*16:body+n]
		for t := 0; t < int(tags); t++ {
			e := index[t*16 : t*16+16]
			typ := binary.BigEndian.Uint32(e[4:8])
			off := uint64(binary.BigEndian.Uint32(e[8:12]))
			count := uint64(binary.BigEndian.Uint32(e[12:16]))
			width := uint64(1)
			switch typ {
			case 0:
				continue
			case 3:
				width = 2
			case 4:
				width = 4
			case 5:
				width = 8
			case 1, 2, 6, 7, 8, 9:
			default:
				return nil, 0, &FormatError{Off: int64(body + t*16), Msg: fmt.Sprintf("%s: tag %d has unknown type %d", name, binary.BigEndian.Uint32(e[:4]), typ)}
			}
			if count == 0 || off > uint64(len(data)) || count*width > uint64(len(data))-off {
				return nil, 0, &FormatError{Off: int64(body + t*16), Msg: fmt.Sprintf("%s: tag %d: %d values at %d overrun %d bytes of data",
					name, binary.BigEndian.Uint32(e[:4]), count, off, len(data))}
			}
		}
	}
	return raw, mainStart, nil
}

func truncated(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{Off: -1, Msg: what + ": truncated"}
	}
	return fmt.Errorf("read rpm %s: %w", what, err)
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
