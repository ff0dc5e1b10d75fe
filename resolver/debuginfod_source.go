package resolver

// GET|HEAD /buildid/ID/source/PATH: source paths checked and resolved
// lexically, and looked up in the file trees of the packages that ship a
// build's sources.

import (
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// source serves a source file for the build-id: PATH as the DWARF of the
// build-id's debuginfo names it (comp_dir joined with the file name, as
// debugedit rewrote them), looked up in the package that ships the
// sources of that build: the -debugsource package of the same source RPM,
// version and arch as the package holding the debuginfo (or the
// executable), then the -debuginfo package itself, as rpm did before
// -debugsource existed.
//
// Like elfutils, the path is resolved lexically first: clients send
// DWARF's "dir/../file" and "//" as they are. A ".." climbing above "/" is
// a malformed path.
func (d *Debuginfod) source(c *gin.Context) {
	raw := c.Param("path")
	p, err := cleanSourcePath(raw)
	if err != nil {
		plainError(c, http.StatusBadRequest, err.Error())
		return
	}
	id, ms, ok := d.lookup(c)
	if !ok {
		return
	}
	var tried [8]index.NEVRA
	seen := tried[:0]
	for _, k := range [...]index.Kind{index.KindDebuginfo, index.KindExecutable} {
		for i := range ms {
			m := &ms[i]
			if m.Kind != k {
				continue
			}
			meta, err := d.pkgMeta(m.NEVRA)
			if errors.Is(err, index.ErrNotFound) {
				continue
			}
			if err != nil {
				fail(c, err, "build-id "+id+" source")
				return
			}
			cands := [2]index.NEVRA{meta.debugsource, m.NEVRA}
			nc := 2
			if k == index.KindExecutable { // the binary package ships no sources
				nc = 1
			}
			for _, n := range cands[:nc] {
				if n.Name == "" || containsNEVRA(seen, n) {
					continue
				}
				seen = append(seen, n)
				served, err := d.serveSource(c, n, p)
				if err != nil {
					fail(c, err, "build-id "+id+" source "+p)
					return
				}
				if served {
					return
				}
			}
		}
	}
	plainError(c, http.StatusNotFound, "build-id "+id+" source "+p+": not found")
}

// serveSource serves path from package n when n ships it. A missing
// package or file is not an error: served is false.
func (d *Debuginfod) serveSource(c *gin.Context, n index.NEVRA, p string) (served bool, err error) {
	for attempt := 0; attempt < 2; attempt++ {
		tree, err := d.pkgTree(n)
		if errors.Is(err, index.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		e, file, ok := tree.resolve(p)
		if !ok {
			return false, nil
		}
		err = d.serveFile(c, n, file, e.blob, e.size)
		if !errors.Is(err, blob.ErrNotFound) {
			return err == nil, err
		}
		// gc removed the blob: the package is gone or was stored again.
		d.trees.drop(n)
		d.meta.drop(n)
	}
	return false, nil
}

func containsNEVRA(ns []index.NEVRA, n index.NEVRA) bool {
	for i := range ns {
		if ns[i] == n {
			return true
		}
	}
	return false
}

// cleanSourcePath checks a requested source path and resolves "//", "."
// and ".." lexically. It returns the path unchanged, without allocating,
// when it is already clean.
func cleanSourcePath(p string) (string, error) {
	switch {
	case len(p) > MaxSourcePath:
		return "", fmt.Errorf("source path longer than %d bytes", MaxSourcePath)
	case p == "" || p[0] != '/':
		return "", errors.New("source path must be absolute")
	case strings.IndexByte(p, 0) >= 0:
		return "", errors.New("source path holds a NUL byte")
	}
	depth := 0
	for i := 0; i < len(p); {
		j := strings.IndexByte(p[i+1:], '/') // p[i] is '/'
		if j < 0 {
			j = len(p) - i - 1
		}
		seg := p[i+1 : i+1+j]
		i += 1 + j
		switch seg {
		case "", ".":
		case "..":
			if depth == 0 {
				return "", errors.New("source path climbs above /")
			}
			depth--
		default:
			depth++
		}
	}
	return path.Clean(p), nil
}

// pkgTree is a package's files by path.
type pkgTree map[string]treeEntry

type treeEntry struct {
	blob blob.Digest
	size int64
	link string // symlink target; blob is zero
	mode fs.FileMode
}

func (d *Debuginfod) pkgTree(n index.NEVRA) (pkgTree, error) {
	if t, ok := d.trees.get(n); ok {
		return t, nil
	}
	p, err := d.idx.Package(n)
	if err != nil {
		return nil, err
	}
	t := make(pkgTree, len(p.Files))
	for _, f := range p.Files {
		t[f.Path] = treeEntry{blob: f.Blob, size: f.Size, link: f.Link, mode: f.Mode}
	}
	return d.trees.put(n, t, int64(len(t))+1), nil
}

// resolve finds the regular file at p, following symlinks that stay
// inside the package. file is the path the content was found at.
func (t pkgTree) resolve(p string) (e treeEntry, file string, ok bool) {
	for range maxLinkHops + 1 {
		e, ok = t[p]
		switch {
		case !ok:
			return e, "", false
		case e.mode&fs.ModeSymlink != 0:
			target := e.link
			if !path.IsAbs(target) {
				target = path.Join(path.Dir(p), target)
			}
			p = path.Clean(target)
		case e.mode.IsRegular() && !e.blob.IsZero():
			return e, p, true
		default:
			return e, "", false
		}
	}
	return e, "", false
}
