package worker

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/resolver"
)

// aliases maps each object the core names at a path where the chosen
// packages do not ship it to the path where one of them ships the same
// build-id (see planSysroot).
func (w *Worker) aliases(objs []resolver.Object, inSet map[index.NEVRA]bool) (map[string]string, error) {
	out := map[string]string{}
	for _, o := range objs {
		if o.BuildID.IsZero() || !strings.HasPrefix(o.Path, "/") || strings.HasSuffix(o.Path, " (deleted)") {
			continue
		}
		ms, err := w.idx.Lookup(o.BuildID)
		if errors.Is(err, index.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("look up %s: %w", o.Path, err)
		}
		var at string
		for _, m := range ms {
			if m.Kind != index.KindExecutable || !inSet[m.NEVRA] {
				continue
			}
			if m.Path == o.Path {
				at = ""
				break
			}
			if at == "" {
				at = m.Path
			}
		}
		if at != "" {
			out[o.Path] = at
		}
	}
	return out, nil
}

// withDebugsource returns the binary and debuginfo packages of rep and
// the -debugsource packages of the same builds: NAME-debugsource-EVR.ARCH
// for the binary package's name and for its source package's name.
func (w *Worker) withDebugsource(rep *resolver.Report, sl *stepLog) ([]*index.Package, error) {
	var out []*index.Package
	seen := map[index.NEVRA]bool{}
	get := func(n index.NEVRA) (*index.Package, error) {
		p, err := w.idx.Package(n)
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", n, err)
		}
		if !seen[n] {
			seen[n] = true
			out = append(out, p)
		}
		return p, nil
	}
	var bins []*index.Package
	for i, n := range slices.Concat(rep.Packages, rep.DebuginfoPackages) {
		p, err := get(n)
		if err != nil {
			return nil, err
		}
		if i < len(rep.Packages) {
			bins = append(bins, p)
		}
	}
	var srcs []string
	for _, p := range bins {
		names := []string{p.NEVRA.Name}
		if sn := srpmName(p.SourceRPM); sn != "" && sn != p.NEVRA.Name {
			names = append(names, sn)
		}
		found := false
		for _, name := range names {
			ds := p.NEVRA
			ds.Name = name + "-debugsource"
			if seen[ds] {
				found = true
				continue
			}
			ok, err := w.idx.HasPackage(ds)
			if err != nil {
				return nil, fmt.Errorf("package %s: %w", ds, err)
			}
			if !ok {
				continue
			}
			if _, err := get(ds); err != nil {
				return nil, err
			}
			found = true
			srcs = append(srcs, ds.String())
		}
		if !found {
			sl.printf("no debugsource package for %s", p.NEVRA)
		}
	}
	if len(srcs) > 0 {
		sl.printf("debugsource: %s", strings.Join(srcs, " "))
	}
	return out, nil
}

// srpmName is the name of a source RPM file name NAME-VERSION-RELEASE.src.rpm.
func srpmName(file string) string {
	s, ok := strings.CutSuffix(file, ".src.rpm")
	if !ok {
		if s, ok = strings.CutSuffix(file, ".nosrc.rpm"); !ok {
			return ""
		}
	}
	for range 2 {
		i := strings.LastIndexByte(s, '-')
		if i <= 0 {
			return ""
		}
		s = s[:i]
	}
	return s
}

// packagePath is where package nevra ships the executable with build-id
// id.
func (w *Worker) packagePath(id index.BuildID, nevra index.NEVRA) (string, error) {
	ms, err := w.idx.Lookup(id)
	if err != nil {
		return "", fmt.Errorf("look up the executable: %w", err)
	}
	for _, m := range ms {
		if m.Kind == index.KindExecutable && m.NEVRA == nevra {
			return m.Path, nil
		}
	}
	return "", fmt.Errorf("look up the executable: %s ships no file with build-id %s", nevra, id)
}
