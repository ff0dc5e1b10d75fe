package worker

import (
	"fmt"
	"io/fs"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// sysrootPlan is what goes into one sysroot, in creation order.
type sysrootPlan struct {
	packages []string
	dirs     []string // relative paths
	files    []sysrootPlanFile
	links    []sysrootPlanLink
	skipped  []string // "NEVRA PATH: why"
}

type sysrootPlanFile struct {
	rel  string
	blob blob.Digest
	size int64
}

type sysrootPlanLink struct {
	rel    string
	target string // relative, inside the sysroot
}

// planSysroot lists every file of pkgs, the first package (in NEVRA
// order) winning when two ship one path.
//
// aliases maps paths the core names (absolute) to the paths where a
// package ships the same file (by build-id): a library the crashed system
// had at /usr/lib/x86_64-linux-gnu/libc.so.6 that the mirror holds as
// /usr/lib64/libc.so.6. Each becomes a symbolic link, where no package
// put anything, so that gdb finds every object at the path the core
// gives, as debuginfod clients find it by build-id.
func planSysroot(pkgs []*index.Package, aliases map[string]string) *sysrootPlan {
	pl := &sysrootPlan{}
	sorted := slices.Clone(pkgs)
	slices.SortFunc(sorted, func(a, b *index.Package) int { return strings.Compare(a.NEVRA.String(), b.NEVRA.String()) })
	type entry struct {
		pkg string
		f   index.File
		rel string
	}
	seen := map[string]bool{}
	links := map[string]bool{}
	var all []entry
	for _, p := range sorted {
		n := p.NEVRA.String()
		pl.packages = append(pl.packages, n)
		for _, f := range p.Files {
			rel, ok := sysrootRel(f.Path)
			if !ok {
				pl.skipped = append(pl.skipped, fmt.Sprintf("%s %q: not a clean absolute path", n, f.Path))
				continue
			}
			if seen[rel] {
				continue
			}
			seen[rel] = true
			all = append(all, entry{pkg: n, f: f, rel: rel})
			if f.Mode&fs.ModeSymlink != 0 {
				links[rel] = true
			}
		}
	}
	underLink := func(rel string) bool {
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if links[d] {
				return true
			}
		}
		return false
	}
	for _, e := range all {
		if underLink(e.rel) {
			pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: below a symbolic link", e.pkg, e.f.Path))
			continue
		}
		switch {
		case e.f.Mode&fs.ModeSymlink != 0:
			t, ok := sysrootLinkTarget(e.rel, e.f.Link)
			if !ok {
				pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: bad link target %q", e.pkg, e.f.Path, e.f.Link))
				continue
			}
			pl.links = append(pl.links, sysrootPlanLink{rel: e.rel, target: t})
		case e.f.Mode.IsDir():
			pl.dirs = append(pl.dirs, e.rel)
		case e.f.Mode.IsRegular():
			if e.f.Blob.IsZero() {
				pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: no content stored", e.pkg, e.f.Path))
				continue
			}
			pl.files = append(pl.files, sysrootPlanFile{rel: e.rel, blob: e.f.Blob, size: e.f.Size})
		default:
			pl.skipped = append(pl.skipped, fmt.Sprintf("%s %s: mode %v", e.pkg, e.f.Path, e.f.Mode))
		}
	}
	for _, d := range []string{"bin", "sbin", "lib", "lib64"} {
		if !seen[d] && !links[d] {
			pl.links = append(pl.links, sysrootPlanLink{rel: d, target: "usr/" + d})
		}
	}
	linkTargets := map[string]string{}
	for _, l := range pl.links {
		linkTargets[l.rel] = path.Join(path.Dir(l.rel), l.target)
	}
	resolve := lexicalResolver(linkTargets)
	for _, from := range slices.Sorted(maps.Keys(aliases)) {
		rel, ok1 := sysrootRel(from)
		to, ok2 := sysrootRel(aliases[from])
		if !ok1 || !ok2 {
			pl.skipped = append(pl.skipped, fmt.Sprintf("alias %q -> %q: not a clean absolute path", from, aliases[from]))
			continue
		}
		// Placed through the links on its way (lib -> usr/lib), never
		// over anything planned.
		rel = path.Join(resolve(path.Dir(rel)), path.Base(rel))
		if seen[rel] || linkTargets[rel] != "" || resolve(rel) == to {
			continue
		}
		t, err := filepath.Rel(path.Dir(rel), to)
		if err != nil {
			continue
		}
		seen[rel] = true
		pl.links = append(pl.links, sysrootPlanLink{rel: rel, target: t})
		linkTargets[rel] = to
	}
	pl.links = append(pl.links, autoLoadLinks(pl.files, linkTargets, seen)...)
	return pl
}

// lexicalResolver follows the planned symbolic links (link -> target,
// both relative to the sysroot) through a path, as the sysroot will lay
// them out: the path itself and the directories on its way (lib64 ->
// usr/lib64), at most 16 links deep.
func lexicalResolver(links map[string]string) func(rel string) string {
	step := func(rel string) (string, bool) {
		if t, ok := links[rel]; ok {
			return t, true
		}
		for d := path.Dir(rel); d != "."; d = path.Dir(d) {
			if t, ok := links[d]; ok {
				return path.Join(t, strings.TrimPrefix(rel, d+"/")), true
			}
		}
		return rel, false
	}
	return func(rel string) string {
		for range 16 {
			next, ok := step(rel)
			if !ok {
				break
			}
			rel = next
		}
		return rel
	}
}

// gdb auto-load scripts, as packages ship them: for an object file
// /usr/lib64/libX.so.1.0.0, /usr/share/gdb/auto-load/usr/lib64/libX.so.1.0.0-gdb.py
// (or -gdb.gdb, -gdb.scm).
const autoLoadDir = "usr/share/gdb/auto-load/"

var autoLoadSuffixes = []string{"-gdb.py", "-gdb.gdb", "-gdb.scm"}

// autoLoadLinks places each auto-load script of the sysroot beside its
// object file as well (OBJFILE-gdb.py, a symbolic link to the script),
// and beside each symbolic link that leads to that object file.
//
// GDB looks for an object file's script in two places: beside the file
// itself, under the name its real path has, and under each
// "auto-load scripts-directory" with the object file's whole path
// appended. With "set sysroot S" that whole path is S/usr/lib64/...,
// so the second place becomes S/usr/share/gdb/auto-loadS/usr/lib64/...,
// which never exists: pretty-printers never load. Beside the object file
// is where GDB finds them. When GDB cannot resolve the object's real path
// (a sysroot reached through /proc/self/fd), it looks beside the name the
// core gave, usually the soname link: hence the links' names too.
//
// files are the sysroot's regular files; links maps each symbolic link to
// its target, both relative to the sysroot; taken holds every path
// already planned, and the new links never replace one.
func autoLoadLinks(files []sysrootPlanFile, links map[string]string, taken map[string]bool) []sysrootPlanLink {
	resolve := lexicalResolver(links)
	scripts := map[string][]string{} // object file -> its scripts
	for _, f := range files {
		rest, ok := strings.CutPrefix(f.rel, autoLoadDir)
		if !ok {
			continue
		}
		for _, suf := range autoLoadSuffixes {
			if obj, ok := strings.CutSuffix(rest, suf); ok && obj != "" {
				scripts[resolve(obj)] = append(scripts[resolve(obj)], f.rel)
			}
		}
	}
	if len(scripts) == 0 {
		return nil
	}
	names := map[string][]string{} // object file -> names that lead to it
	for obj := range scripts {
		names[obj] = append(names[obj], obj)
	}
	for l := range links {
		if obj := resolve(l); obj != l {
			if _, ok := scripts[obj]; ok {
				names[obj] = append(names[obj], l)
			}
		}
	}
	var out []sysrootPlanLink
	for obj, ss := range scripts {
		for _, name := range names[obj] {
			for _, script := range ss {
				rel := name + script[strings.LastIndexByte(script, '-'):]
				if taken[rel] || strings.HasPrefix(resolve(path.Dir(rel)), autoLoadDir) {
					continue
				}
				if _, isLink := links[path.Dir(rel)]; isLink {
					continue // placed through the real directory
				}
				t, err := filepath.Rel(path.Dir(rel), script)
				if err != nil {
					continue
				}
				taken[rel] = true
				out = append(out, sysrootPlanLink{rel: rel, target: t})
			}
		}
	}
	slices.SortFunc(out, func(a, b sysrootPlanLink) int { return strings.Compare(a.rel, b.rel) })
	return out
}

// sysrootRel turns a package path into a path relative to the sysroot,
// refusing anything but a clean absolute path below /.
func sysrootRel(p string) (string, bool) {
	if len(p) < 2 || len(p) > 4096 || p[0] != '/' || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return "", false
	}
	rel := p[1:]
	for _, el := range strings.Split(rel, "/") {
		if el == ".." || el == "." || el == "" {
			return "", false
		}
	}
	return rel, true
}

// sysrootLinkTarget resolves a link's target lexically against the
// sysroot's root (an absolute target, or ".." past the root, stays inside
// as in a chroot) and writes it relative to the link's directory.
func sysrootLinkTarget(rel, target string) (string, bool) {
	if target == "" || len(target) > 4096 || strings.ContainsRune(target, 0) {
		return "", false
	}
	dir := path.Dir("/" + rel)
	abs := path.Clean(target)
	if !path.IsAbs(target) {
		abs = path.Join(dir, target)
	}
	t, err := filepath.Rel(dir, abs)
	if err != nil {
		return "", false
	}
	return t, true
}
