package resolver

// What debuginfod answers read, cached: a package's header values, the
// plain copies of blobs, and small contents kept in memory.

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// pkgMeta is what answers need of a package, computed once.
type pkgMeta struct {
	archive      []string // X-DEBUGINFOD-ARCHIVE
	modTime      time.Time
	lastModified []string // modTime for Last-Modified; nil when unknown
	// debugsource is the -debugsource package of the same build; its
	// Name is empty when the source RPM is unknown.
	debugsource index.NEVRA
}

func (d *Debuginfod) pkgMeta(n index.NEVRA) (*pkgMeta, error) {
	if m, ok := d.meta.get(n); ok {
		return m, nil
	}
	p, err := d.idx.Package(n)
	if err != nil {
		return nil, err
	}
	m := newPkgMeta(p)
	return d.meta.put(n, m, 1), nil
}

func newPkgMeta(p *index.Package) *pkgMeta {
	m := &pkgMeta{archive: []string{p.FileName}}
	switch {
	case p.BuildTime > 0:
		m.modTime = time.Unix(p.BuildTime, 0).UTC()
	case !p.Added.IsZero():
		m.modTime = p.Added.UTC()
	}
	if !m.modTime.IsZero() {
		m.lastModified = []string{m.modTime.Format(http.TimeFormat)}
	}
	if p.FileName == "" {
		m.archive = []string{p.NEVRA.String() + ".rpm"}
	}
	// name-version-release.src.rpm: the -debugsource package is the
	// source package's name, version and release, with the binary's epoch
	// and arch (sub-packages may carry versions of their own).
	if src, err := index.ParseNEVRA(strings.TrimSuffix(p.SourceRPM, ".rpm")); err == nil {
		m.debugsource = index.NEVRA{
			Name: src.Name + "-debugsource", Epoch: p.NEVRA.Epoch,
			Version: src.Version, Release: src.Release, Arch: p.NEVRA.Arch,
		}
	}
	return m
}

// contentKey names small content kept in memory: a whole blob, or one
// section of it.
type contentKey struct {
	blob    blob.Digest
	section string
}

// content returns size bytes at off of blob k.blob, from memory or read
// from f (the blob's plain copy; opened here when nil).
func (d *Debuginfod) content(k contentKey, f *os.File, off, size int64) ([]byte, error) {
	if b, ok := d.contents.get(k); ok {
		return b, nil
	}
	if f == nil {
		var err error
		if f, err = d.open(k.blob); err != nil {
			return nil, err
		}
		defer f.Close()
	}
	b := make([]byte, size)
	if n, err := f.ReadAt(b, off); n < len(b) {
		return nil, fmt.Errorf("read %s at %d: %w", k.blob, off+int64(n), err)
	}
	return d.contents.put(k, b, size+int64(len(k.section))+64), nil
}

// open opens the plain copy of blob b, making it when needed. A copy
// removed since its path was cached is made again.
func (d *Debuginfod) open(b blob.Digest) (*os.File, error) {
	for attempt := 0; ; attempt++ {
		p, ok := d.plains.get(b)
		if !ok {
			var err error
			if p, err = d.plain(b); err != nil {
				return nil, err
			}
			d.plains.put(b, p, 1)
		}
		f, err := os.Open(p)
		if err == nil {
			return f, nil
		}
		d.plains.drop(b)
		if !errors.Is(err, fs.ErrNotExist) || attempt > 0 {
			return nil, fmt.Errorf("open plain copy of %s: %w", b, err)
		}
	}
}

func (d *Debuginfod) plain(b blob.Digest) (string, error) {
	path, err, _ := d.plainCopies.Do(b.String(), func() (any, error) { return d.pool.Plain(b) })
	if err != nil {
		return "", err
	}
	return path.(string), nil
}
