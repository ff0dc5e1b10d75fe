package resolver

// GET|HEAD /buildid/ID/section/NAME, and the section tables of stored ELF
// files (also how /debuginfo tells an unstripped executable).

import (
	"debug/elf"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/elfnote"
)

// section serves ELF section NAME: from the debuginfo file when it has the
// section with contents, else from the executable, as elfutils does (a
// separate .debug file keeps the allocated sections only as SHT_NOBITS).
// The bytes are the section's as stored in the file: a compressed section
// comes compressed.
func (d *Debuginfod) section(c *gin.Context) {
	name := c.Param("name")
	switch {
	case name == "":
		plainError(c, http.StatusBadRequest, "empty section name")
		return
	case len(name) > MaxSectionName:
		plainError(c, http.StatusBadRequest, fmt.Sprintf("section name longer than %d bytes", MaxSectionName))
		return
	case strings.IndexByte(name, 0) >= 0:
		plainError(c, http.StatusBadRequest, "section name holds a NUL byte")
		return
	}
	id, ms, ok := d.lookup(c)
	if !ok {
		return
	}
	for _, k := range [...]index.Kind{index.KindDebuginfo, index.KindExecutable} {
		for i := range ms {
			m := &ms[i]
			if m.Kind != k {
				continue
			}
			served, err := d.serveSection(c, m, name)
			if errors.Is(err, blob.ErrNotFound) {
				continue // gc removed it: an older identical build may still be there
			}
			if err != nil {
				fail(c, err, "build-id "+id+" section "+name)
				return
			}
			if served {
				return
			}
			break // this kind's file lacks it: try the next kind
		}
	}
	plainError(c, http.StatusNotFound, "build-id "+id+" section "+name+": not found")
}

// serveSection serves section name of the file m when it has one with
// contents.
func (d *Debuginfod) serveSection(c *gin.Context, m *index.Match, name string) (served bool, err error) {
	meta, err := d.pkgMeta(m.NEVRA)
	if err != nil {
		return false, err
	}
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	secs, ok := d.sections.get(m.Blob)
	if !ok {
		if f, err = d.open(m.Blob); err != nil {
			return false, err
		}
		if secs, err = d.sectionsOf(m.Blob, f); err != nil {
			return false, err
		}
	}
	s, ok := secs[name]
	if !ok || s.nobits {
		return false, nil
	}
	bd := body{off: s.off}
	switch {
	case c.Request.Method == http.MethodHead:
	case s.size <= d.inMemory:
		if bd.mem, err = d.content(contentKey{m.Blob, name}, f, s.off, s.size); err != nil {
			return false, err
		}
	default:
		if f == nil {
			if f, err = d.open(m.Blob); err != nil {
				return false, err
			}
		}
		bd.f = f
	}
	send(c, meta, m.Path, s.size, bd)
	return true, nil
}

// hasDWARF reports whether the ELF file in blob b carries debug
// information of its own: a .debug_info section with contents.
func (d *Debuginfod) hasDWARF(b blob.Digest) (bool, error) {
	secs, err := d.sectionsOf(b, nil)
	if err != nil {
		return false, err
	}
	for _, name := range [...]string{".debug_info", ".zdebug_info"} {
		if s, ok := secs[name]; ok && !s.nobits && s.size > 0 {
			return true, nil
		}
	}
	return false, nil
}

// sectionsOf returns the section table of blob b, from the cache or read
// from f (opened from the plain copy when nil; the caller closes an f it
// passed).
func (d *Debuginfod) sectionsOf(b blob.Digest, f *os.File) (elfSections, error) {
	if secs, ok := d.sections.get(b); ok {
		return secs, nil
	}
	if f == nil {
		var err error
		if f, err = d.open(b); err != nil {
			return nil, err
		}
		defer f.Close()
	}
	secs := readSections(f)
	return d.sections.put(b, secs, int64(len(secs))+1), nil
}

// elfSections maps a section name to where its bytes are; the first
// section wins over later ones of the same name.
type elfSections map[string]elfSection

type elfSection struct {
	off, size int64
	nobits    bool
}

// readSections reads the section headers of an ELF file through
// elfnote.NewFile, which checks the header before debug/elf reads it and
// turns a panic of debug/elf into an error. A file that does not parse has
// no sections: it came from a package, so it is a file some tool wrote
// oddly (or a hostile one), not a request error. Sections reaching past
// the end of the file are left out.
func readSections(f *os.File) elfSections {
	fi, err := f.Stat()
	if err != nil {
		return elfSections{}
	}
	ef, err := elfnote.NewFile(f)
	if err != nil {
		return elfSections{}
	}
	secs := make(elfSections, len(ef.Sections))
	for _, s := range ef.Sections {
		if _, dup := secs[s.Name]; dup || s.Name == "" {
			continue
		}
		e := elfSection{off: int64(s.Offset), size: int64(s.FileSize), nobits: s.Type == elf.SHT_NOBITS}
		if !e.nobits && (e.off < 0 || e.size < 0 || e.off > fi.Size() || e.size > fi.Size()-e.off) {
			continue
		}
		secs[s.Name] = e
	}
	return secs
}
