package resolver

import (
	"errors"
	"maps"
	"slices"
	"sort"
	"strings"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/resolver/corefile"
)

// Packager is what coredump2packages needs of the index.
type Packager interface {
	// Lookup returns every file carrying id, newest package first, or an
	// error wrapping index.ErrNotFound.
	Lookup(id index.BuildID) ([]index.Match, error)
	// HasPackage reports whether the index holds package n.
	HasPackage(n index.NEVRA) (bool, error)
}

var _ Packager = (*index.Store)(nil)

// Object is one mapped object of a core: its path and build-id (zero when
// the core does not show one).
type Object struct {
	Path    string
	BuildID index.BuildID
}

// CoreToPackages resolves a core's objects to the packages needed to
// retrace it. exe is the crashing executable's path.
//
// When a build-id matches several versions (identical rebuilds), the
// version chosen is the one most of the core's other build-ids agree on:
// a program and its libraries come from one build of a source package far
// more often than not. Ties go to the newest.
func CoreToPackages(idx Packager, exe string, objs []Object) (*Report, error) {
	rep := &Report{Packages: []index.NEVRA{}, DebuginfoPackages: []index.NEVRA{}, Unresolved: []Unresolved{}, UnresolvedAltLinks: []Unresolved{}}
	found, v, err := lookUpObjects(idx, objs, rep)
	if err != nil {
		return nil, err
	}
	pkgs, dbgs := map[index.NEVRA]bool{}, map[index.NEVRA]bool{}
	var alts []index.Match // chosen debug files that point at a dwz multifile
	for _, c := range found {
		bin := v.pick(c.exec)
		if bin != nil {
			pkgs[bin.NEVRA] = true
			if c.obj.Path == exe {
				crash := bin.NEVRA
				rep.CrashPackage = &crash
			}
		}
		switch dbg := v.debugFile(c, bin); {
		case dbg != nil:
			dbgs[dbg.NEVRA] = true
			if !dbg.AltLink.IsZero() {
				alts = append(alts, *dbg)
			}
		case bin != nil:
			guess := bin.NEVRA
			guess.Name += "-debuginfo"
			ok, err := idx.HasPackage(guess)
			if err != nil {
				return nil, err
			}
			if ok {
				dbgs[guess] = true
			}
		}
	}
	if err := addMultifiles(idx, alts, dbgs, rep); err != nil {
		return nil, err
	}
	rep.Packages = append(rep.Packages, sortedNEVRAs(pkgs)...)
	rep.DebuginfoPackages = append(rep.DebuginfoPackages, sortedNEVRAs(dbgs)...)
	sort.Slice(rep.Unresolved, func(i, j int) bool { return rep.Unresolved[i].Path < rep.Unresolved[j].Path })
	sort.Slice(rep.UnresolvedAltLinks, func(i, j int) bool { return rep.UnresolvedAltLinks[i].Path < rep.UnresolvedAltLinks[j].Path })
	return rep, nil
}

// candidates are the files of the index that carry one object's
// build-id, newest package first.
type candidates struct {
	obj  Object
	exec []index.Match // executable-kind matches
	dbg  []index.Match // debuginfo-kind matches
}

// votes counts, for each EVR.arch, how many of the core's objects a
// build of that version and arch carries.
type votes map[string]int

// lookUpObjects looks up each object's build-id: those the index does not
// know go to rep.Unresolved, the others come back with their candidates,
// and each version that carries one gets its vote (by its binary
// packages, or by its debug files when only those carry it).
func lookUpObjects(idx Packager, objs []Object, rep *Report) ([]candidates, votes, error) {
	var found []candidates
	v := votes{}
	for _, o := range objs {
		if o.BuildID.IsZero() {
			continue
		}
		ms, err := idx.Lookup(o.BuildID)
		if errors.Is(err, index.ErrNotFound) {
			rep.Unresolved = append(rep.Unresolved, Unresolved{BuildID: o.BuildID.String(), Path: o.Path})
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		c := candidates{obj: o}
		seen := map[string]bool{}
		for _, m := range ms {
			if m.Kind == index.KindDebuginfo {
				c.dbg = append(c.dbg, m)
				continue
			}
			c.exec = append(c.exec, m)
			if k := evrArch(m.NEVRA); !seen[k] {
				seen[k] = true
				v[k]++
			}
		}
		if len(c.exec) == 0 {
			// Only a debug file carries it: the binary package is not
			// mirrored, but its debuginfo still helps.
			for _, m := range c.dbg {
				if k := evrArch(m.NEVRA); !seen[k] {
					seen[k] = true
					v[k]++
				}
			}
		}
		found = append(found, c)
	}
	return found, v, nil
}

// pick returns the match of the version most objects agree on, nil when
// there is none. ms is newest first, so ties keep the newest.
func (v votes) pick(ms []index.Match) *index.Match {
	var best *index.Match
	for i := range ms {
		if best == nil || v[evrArch(ms[i].NEVRA)] > v[evrArch(best.NEVRA)] {
			best = &ms[i]
		}
	}
	return best
}

// debugFile chooses c's debug file: the one of the chosen binary bin's
// version, else the best-agreed one; nil when the index has none.
func (v votes) debugFile(c candidates, bin *index.Match) *index.Match {
	if bin != nil {
		for i := range c.dbg {
			if evrArch(c.dbg[i].NEVRA) == evrArch(bin.NEVRA) {
				return &c.dbg[i]
			}
		}
	}
	// Another build's debug file with the same build-id (an identical
	// rebuild) fits the binary as well.
	return v.pick(c.dbg)
}

// addMultifiles adds to dbgs the packages of the dwz multifiles that the
// chosen debug files alts point at: by build-id, whatever package ships
// them (with _debuginfo_subpackages, the main NAME-debuginfo, which no
// object of the core may need otherwise). Those the index lacks go to
// rep.UnresolvedAltLinks, once each.
func addMultifiles(idx Packager, alts []index.Match, dbgs map[index.NEVRA]bool, rep *Report) error {
	missing := map[index.BuildID]bool{}
	for _, d := range alts {
		ms, err := idx.Lookup(d.AltLink)
		if errors.Is(err, index.ErrNotFound) {
			if !missing[d.AltLink] {
				missing[d.AltLink] = true
				rep.UnresolvedAltLinks = append(rep.UnresolvedAltLinks, Unresolved{BuildID: d.AltLink.String(), Path: d.Path})
			}
			continue
		}
		if err != nil {
			return err
		}
		if m := multifile(ms, d.NEVRA); m != nil {
			dbgs[m.NEVRA] = true
		}
	}
	return nil
}

// multifile picks, among the matches of a multifile's build-id, the file
// from the build of the debug package that needs it (same EVR and arch),
// else the newest debug file, else the newest match of any kind.
func multifile(ms []index.Match, of index.NEVRA) *index.Match {
	var first, dbg *index.Match
	for i := range ms {
		m := &ms[i]
		if m.Kind == index.KindDebuginfo && evrArch(m.NEVRA) == evrArch(of) {
			return m
		}
		if dbg == nil && m.Kind == index.KindDebuginfo {
			dbg = m
		}
		if first == nil {
			first = m
		}
	}
	if dbg != nil {
		return dbg
	}
	return first
}

func evrArch(n index.NEVRA) string { return n.EVR() + "." + n.Arch }

// sortedNEVRAs lists the set's NEVRAs in the order of their string
// forms, the order the text and JSON outputs have always had.
func sortedNEVRAs(set map[index.NEVRA]bool) []index.NEVRA {
	out := slices.Collect(maps.Keys(set))
	slices.SortFunc(out, compareNEVRAStrings)
	return out
}

func compareNEVRAStrings(a, b index.NEVRA) int { return strings.Compare(a.String(), b.String()) }

// ObjectsOf turns a parsed core into the objects coredump2packages looks
// up, and names its executable.
func ObjectsOf(c *corefile.Core) (exe string, objs []Object) {
	for _, m := range c.Modules {
		o := Object{Path: m.Path}
		if id, err := index.BuildIDFromBytes(m.BuildID); err == nil {
			o.BuildID = id
		}
		objs = append(objs, o)
	}
	return c.Executable, objs
}

// CoreFileToPackages reads the core at path and resolves it.
func CoreFileToPackages(idx Packager, path string) (*Report, error) {
	c, err := corefile.Open(path)
	if err != nil {
		return nil, err
	}
	exe, objs := ObjectsOf(c)
	return CoreToPackages(idx, exe, objs)
}
