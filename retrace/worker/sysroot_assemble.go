package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// assembleSysroot lays pl out in the empty directory root, taking file
// contents from pool: directories first, then the regular files, then
// the symbolic links.
func assembleSysroot(ctx context.Context, root string, pl *sysrootPlan, pool BlobSource, now time.Time) (*sysrootManifest, error) {
	a := &assembly{root: root, made: map[string]bool{".": true},
		m: &sysrootManifest{Packages: pl.packages, Skipped: slices.Clone(pl.skipped), Built: now.UTC()}}
	files, links, err := a.mkdirs(pl)
	if err != nil {
		return nil, err
	}
	if err := a.placeFiles(ctx, pool, files); err != nil {
		return nil, err
	}
	if err := a.symlinks(links); err != nil {
		return nil, err
	}
	return a.m, nil
}

// assembly is one sysroot being laid out.
type assembly struct {
	root string
	m    *sysrootManifest
	made map[string]bool // directories made, relative to root
}

// mkdir makes the directory rel and those above it, 0755.
func (a *assembly) mkdir(rel string) error {
	if a.made[rel] {
		return nil
	}
	if err := a.mkdir(path.Dir(rel)); err != nil {
		return err
	}
	p := filepath.Join(a.root, rel)
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	// 0755 whatever the umask: GDB may run as another user.
	if err := os.Chmod(p, 0o755); err != nil {
		return err
	}
	a.made[rel] = true
	return nil
}

// skip records in the manifest that entry rel could not be placed
// because err says another package's entry is in the way; any other
// error ends the assembly. A path that is a file in one package and a
// directory in another cannot be both: directories are made first, and
// the file is skipped.
func (a *assembly) skip(rel string, err error) error {
	switch {
	case errors.Is(err, fs.ErrExist):
		a.m.Skipped = append(a.m.Skipped, fmt.Sprintf("/%s: another package's directory or file is there", rel))
	case errors.Is(err, syscall.ENOTDIR):
		a.m.Skipped = append(a.m.Skipped, fmt.Sprintf("/%s: another package's file is where its directory goes", rel))
	default:
		return fmt.Errorf("assemble sysroot: /%s: %w", rel, err)
	}
	return nil
}

// mkdirs makes the planned directories and those the files and links go
// in. It returns the files and links whose directory it could make.
func (a *assembly) mkdirs(pl *sysrootPlan) ([]sysrootPlanFile, []sysrootPlanLink, error) {
	for _, d := range pl.dirs {
		if err := a.mkdir(d); err != nil {
			if err := a.skip(d, err); err != nil {
				return nil, nil, err
			}
		}
	}
	var files []sysrootPlanFile
	for _, f := range pl.files {
		if err := a.mkdir(path.Dir(f.rel)); err != nil {
			if err := a.skip(f.rel, err); err != nil {
				return nil, nil, err
			}
			continue
		}
		files = append(files, f)
	}
	var links []sysrootPlanLink
	for _, l := range pl.links {
		if err := a.mkdir(path.Dir(l.rel)); err != nil {
			if err := a.skip(l.rel, err); err != nil {
				return nil, nil, err
			}
			continue
		}
		links = append(links, l)
	}
	return files, links, nil
}

// placeFiles places the regular files, in parallel: a plain copy made on
// first use is a decompression. It stops at the first error that is not
// a skip, or when ctx ends.
func (a *assembly) placeFiles(ctx context.Context, pool BlobSource, files []sysrootPlanFile) error {
	var (
		mu       sync.Mutex // guards a.m and firstErr
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan sysrootPlanFile)
	workers := max(2, min(8, runtime.GOMAXPROCS(0)))
	for range workers {
		wg.Go(func() {
			for f := range jobs {
				copied, err := placeSysrootFile(pool, f, filepath.Join(a.root, f.rel))
				mu.Lock()
				switch {
				case err != nil:
					if err := a.skip(f.rel, err); err != nil && firstErr == nil {
						firstErr = err
					}
				default:
					a.m.Files++
					a.m.Bytes += f.size
					if copied {
						a.m.Copied++
					}
				}
				mu.Unlock()
			}
		})
	}
	for _, f := range files {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		jobs <- f
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// symlinks makes the symbolic links.
func (a *assembly) symlinks(links []sysrootPlanLink) error {
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(a.root, l.rel)); err != nil {
			if err := a.skip(l.rel, err); err != nil {
				return err
			}
			continue
		}
		a.m.Links++
	}
	return nil
}

// placeSysrootFile hard-links the plain copy of f to dst, or copies it
// when linking is impossible. It reports whether it copied.
func placeSysrootFile(pool BlobSource, f sysrootPlanFile, dst string) (bool, error) {
	var lerr error
	for range 2 { // a plain copy may be removed (gc) between Plain and Link
		src, err := pool.Plain(f.blob)
		if err != nil {
			return false, err
		}
		lerr = os.Link(src, dst)
		if lerr == nil {
			return false, nil
		}
		if errors.Is(lerr, fs.ErrExist) {
			return false, lerr
		}
		if errors.Is(lerr, fs.ErrNotExist) {
			continue
		}
		return true, copySysrootFile(src, dst)
	}
	return false, lerr
}

// copySysrootFile copies src to a new, read-only dst. io.Copy between
// files uses copy_file_range, which shares extents where the file system
// can (reflink).
func copySysrootFile(src, dst string) error {
	return copyNew(src, dst, 0o444, func(out *os.File) error { return out.Chmod(0o444) })
}

// copyNew copies src to dst, which must not exist, created with mode
// (before the umask); then finish adjusts the copy before it is closed.
// io.Copy between files uses copy_file_range.
func copyNew(src, dst string, mode os.FileMode, finish func(*os.File) error) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close() // read-only
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := finish(out); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
