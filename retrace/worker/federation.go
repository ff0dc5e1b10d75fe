package worker

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// Federation fetches, from upstream debuginfod servers, the files of an
// object the index lacks (resolver/federate's Client, wired by cmd). Its
// files are bounded in size and carry the build-id asked for.
type Federation interface {
	// FetchOrigin returns the path of a local copy of the file of kind
	// ("executable" or "debuginfo") carrying build-id id (lowercase hex),
	// and the upstream it came from.
	FetchOrigin(ctx context.Context, id, kind string) (path, upstream string, err error)
}

// fedObject is an object of the core fetched from the federation.
type fedObject struct {
	rel, id          string // path in the sysroot, build-id
	exe, debug       string // local copies ("" when the upstreams lack it)
	exeFrom, dbgFrom string
}

// federate asks the federation for each object the index lacks (but the
// vDSO and the crashing executable, whose package the sysroot needs):
// its executable, placed at its path, and its debuginfo, placed where GDB
// looks by build-id. It logs what came from where.
func (w *Worker) federate(ctx context.Context, sl *stepLog, c *crash, unresolved []string) []fedObject {
	if w.cfg.Federation == nil {
		return nil
	}
	var out []fedObject
	for _, u := range unresolved {
		p, id, _ := strings.Cut(u, " ")
		rel, ok := sysrootRel(p)
		if !ok || p == c.exe || isVDSO(p) {
			continue
		}
		f := fedObject{rel: rel, id: id}
		var err error
		if f.exe, f.exeFrom, err = w.cfg.Federation.FetchOrigin(ctx, id, "executable"); err != nil {
			sl.printf("federation: %s %s: %v", p, id, err)
			continue
		}
		if f.debug, f.dbgFrom, err = w.cfg.Federation.FetchOrigin(ctx, id, "debuginfo"); err != nil {
			sl.printf("federation: %s %s: debuginfo: %v", p, id, err)
			sl.printf("federation: %s %s: executable from %s", p, id, f.exeFrom)
		} else {
			sl.printf("federation: %s %s: executable from %s, debuginfo from %s", p, id, f.exeFrom, f.dbgFrom)
		}
		out = append(out, f)
	}
	return out
}

// placeFederated copies the fetched files into the sysroot root and
// returns their bytes. A path the packages already fill is left alone.
func placeFederated(root string, objs []fedObject) (int64, error) {
	var n int64
	put := func(src, rel string) error {
		dst := filepath.Join(root, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		if _, err := os.Lstat(dst); err == nil {
			return nil
		}
		if err := copySysrootFile(src, dst); err != nil {
			return fmt.Errorf("federated %s: %w", rel, err)
		}
		if fi, err := os.Stat(dst); err == nil {
			n += fi.Size()
		}
		return nil
	}
	for _, f := range objs {
		if err := put(f.exe, f.rel); err != nil {
			return n, err
		}
		if err := sonameLink(root, f); err != nil {
			return n, err
		}
		if f.debug != "" && len(f.id) > 2 {
			if err := put(f.debug, path.Join("usr/lib/debug/.build-id", f.id[:2], f.id[2:]+".debug")); err != nil {
				return n, err
			}
		}
	}
	return n, nil
}

// sonameLink links a library's soname to it in its directory when the
// names differ: the core names the file (libx.so.1.0.0), GDB the soname
// the program loaded (libx.so.1), as a package's symbolic link would.
func sonameLink(root string, f fedObject) error {
	ef, err := elf.Open(f.exe)
	if err != nil {
		return nil // the federation checked it is ELF; nothing to link
	}
	names, _ := ef.DynString(elf.DT_SONAME)
	ef.Close()
	if len(names) != 1 || names[0] == path.Base(f.rel) || strings.ContainsAny(names[0], "/\x00") || names[0] == "." || names[0] == ".." {
		return nil
	}
	link := filepath.Join(root, filepath.FromSlash(path.Join(path.Dir(f.rel), names[0])))
	if _, err := os.Lstat(link); err == nil {
		return nil
	}
	if err := os.Symlink(path.Base(f.rel), link); err != nil {
		return fmt.Errorf("federated %s: soname link: %w", f.rel, err)
	}
	return nil
}
