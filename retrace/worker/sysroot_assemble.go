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
// contents from pool.
func assembleSysroot(ctx context.Context, root string, pl *sysrootPlan, pool BlobSource, now time.Time) (*sysrootManifest, error) {
	m := &sysrootManifest{Packages: pl.packages, Skipped: slices.Clone(pl.skipped), Built: now.UTC()}
	made := map[string]bool{".": true}
	var mkdir func(rel string) error
	mkdir = func(rel string) error {
		if made[rel] {
			return nil
		}
		if err := mkdir(path.Dir(rel)); err != nil {
			return err
		}
		p := filepath.Join(root, rel)
		if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// 0755 whatever the umask: GDB may run as another user.
		if err := os.Chmod(p, 0o755); err != nil {
			return err
		}
		made[rel] = true
		return nil
	}
	// A path that is a file in one package and a directory in another
	// cannot be both: directories are made first, and the file is
	// skipped.
	skip := func(rel string, err error) error {
		switch {
		case errors.Is(err, fs.ErrExist):
			m.Skipped = append(m.Skipped, fmt.Sprintf("/%s: another package's directory or file is there", rel))
		case errors.Is(err, syscall.ENOTDIR):
			m.Skipped = append(m.Skipped, fmt.Sprintf("/%s: another package's file is where its directory goes", rel))
		default:
			return fmt.Errorf("assemble sysroot: /%s: %w", rel, err)
		}
		return nil
	}
	for _, d := range pl.dirs {
		if err := mkdir(d); err != nil {
			if err := skip(d, err); err != nil {
				return nil, err
			}
		}
	}
	var files []sysrootPlanFile
	for _, f := range pl.files {
		if err := mkdir(path.Dir(f.rel)); err != nil {
			if err := skip(f.rel, err); err != nil {
				return nil, err
			}
			continue
		}
		files = append(files, f)
	}
	var links []sysrootPlanLink
	for _, l := range pl.links {
		if err := mkdir(path.Dir(l.rel)); err != nil {
			if err := skip(l.rel, err); err != nil {
				return nil, err
			}
			continue
		}
		links = append(links, l)
	}

	// Regular files, in parallel: a plain copy made on first use is a
	// decompression.
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan sysrootPlanFile)
	workers := max(2, min(8, runtime.GOMAXPROCS(0)))
	for range workers {
		wg.Go(func() {
			for f := range jobs {
				copied, err := placeSysrootFile(pool, f, filepath.Join(root, f.rel))
				mu.Lock()
				switch {
				case err != nil:
					if err := skip(f.rel, err); err != nil && firstErr == nil {
						firstErr = err
					}
				default:
					m.Files++
					m.Bytes += f.size
					if copied {
						m.Copied++
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
		return nil, firstErr
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, l := range links {
		if err := os.Symlink(l.target, filepath.Join(root, l.rel)); err != nil {
			if err := skip(l.rel, err); err != nil {
				return nil, err
			}
			continue
		}
		m.Links++
	}
	return m, nil
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
