package mirror

import (
	"fmt"
	"path"
	"strings"

	"github.com/retraced/retraced/mirror/rpmfile"
)

// DefaultKeep lists what retracing needs beyond ELF objects: separate debug
// files and their build-id links, debug sources, gdb auto-load scripts,
// and the Python modules of libstdc++'s pretty-printers, which its
// auto-load script imports from a path relative to the library (Fedora's
// /usr/share/gcc-N/python, Debian's /usr/share/gcc/python).
var DefaultKeep = []string{
	"/usr/lib/debug/**",
	"/usr/src/debug/**",
	"/usr/share/gdb/auto-load/**",
	"/usr/share/gcc*/python/**",
	"/usr/lib/debug",
}

// DefaultDrop lists what is never kept, even if it is ELF.
var DefaultDrop = []string{
	"/usr/share/doc/**",
	"/usr/share/man/**",
	"/usr/share/info/**",
	"/usr/share/locale/**",
	"/usr/share/licenses/**",
	"/usr/share/gtk-doc/**",
	"/usr/share/help/**",
}

// Policy decides which files of a package the mirror keeps. Globs match
// absolute paths with path.Match syntax per component; a trailing "/**"
// matches everything below. Drop wins over Keep.
type Policy struct {
	keep, drop []string
}

// NewPolicy checks the globs.
func NewPolicy(keep, drop []string) (*Policy, error) {
	for _, g := range append(append([]string(nil), keep...), drop...) {
		if !strings.HasPrefix(g, "/") {
			return nil, fmt.Errorf("glob %q: must be an absolute path pattern", g)
		}
		if _, err := path.Match(strings.TrimSuffix(g, "/**"), "/"); err != nil {
			return nil, fmt.Errorf("glob %q: %w", g, err)
		}
	}
	return &Policy{keep: keep, drop: drop}, nil
}

func matchAny(globs []string, p string) bool {
	for _, g := range globs {
		if matchGlob(g, p) {
			return true
		}
	}
	return false
}

func matchGlob(g, p string) bool {
	if pre, ok := strings.CutSuffix(g, "/**"); ok {
		gp := strings.Split(pre, "/")
		pp := strings.Split(p, "/")
		if len(pp) <= len(gp) {
			return false
		}
		for i := range gp {
			if ok, _ := path.Match(gp[i], pp[i]); !ok {
				return false
			}
		}
		return true
	}
	ok, _ := path.Match(g, p)
	return ok
}

// verdict says what to do with one header entry.
type verdict uint8

const (
	skip  verdict = iota
	keep          // keep whatever it is
	probe         // keep only if its content is ELF
)

// plan is the policy applied to one package's file list.
type plan struct {
	// regular maps each wanted regular file to its verdict.
	regular map[string]verdict
	// size is the header's size of every regular file, wanted or not (a
	// hardlinked member carries its data on one path only).
	size map[string]int64
	// links are the symlinks kept when their target is.
	links []rpmfile.Entry
}

func (p *Policy) plan(files []rpmfile.Entry) *plan {
	pl := &plan{regular: map[string]verdict{}, size: map[string]int64{}}
	classes := false
	for i := range files {
		if files[i].Class != "" {
			classes = true
			break
		}
	}
	for i := range files {
		e := &files[i]
		if e.Flags&rpmfile.FlagGhost != 0 {
			continue
		}
		if e.IsRegular() {
			pl.size[e.Path] = e.Size
		}
		if e.Flags&(rpmfile.FlagDoc|rpmfile.FlagLicense) != 0 || matchAny(p.drop, e.Path) {
			continue
		}
		switch {
		case e.IsSymlink():
			pl.links = append(pl.links, *e)
		case !e.IsRegular():
		case matchAny(DefaultKeep, e.Path) || matchAny(p.keep, e.Path):
			pl.regular[e.Path] = keep
		case classes && isELFClass(e.Class):
			pl.regular[e.Path] = probe
		case !classes && e.Size >= 52: // no FILECLASS: look at every file big enough to be ELF
			pl.regular[e.Path] = probe
		}
	}
	return pl
}

// keptLinks returns the symlinks worth keeping once the kept regular
// files are known: those under kept trees, those whose target is a kept
// file of the package, and library and program names whose target lies in
// another package.
func (p *Policy) keptLinks(pl *plan, kept map[string]bool) []rpmfile.Entry {
	var out []rpmfile.Entry
	for _, l := range pl.links {
		target := l.Link
		if !strings.HasPrefix(target, "/") {
			target = path.Join(path.Dir(l.Path), target)
		}
		_, inPkg := pl.size[target]
		switch {
		case matchAny(DefaultKeep, l.Path) || matchAny(p.keep, l.Path):
		case kept[target]:
		case !inPkg && looksLikeObject(l.Path):
		default:
			continue
		}
		out = append(out, l)
	}
	return out
}

func looksLikeObject(p string) bool {
	base := path.Base(p)
	if strings.HasSuffix(base, ".so") || strings.Contains(base, ".so.") {
		return true
	}
	dir := path.Dir(p)
	switch dir {
	case "/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/libexec":
		return true
	}
	return false
}

// isELFClass reads libmagic's description: "ELF 64-bit LSB ...", and for
// set-id files "setuid ELF ...", "setuid, setgid ELF ...".
func isELFClass(class string) bool {
	return strings.HasPrefix(class, "ELF ") || strings.Contains(class, " ELF ")
}
