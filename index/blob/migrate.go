package blob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// CopyTo copies every blob of p that dst lacks into dst, as stored (the
// compressed bytes and the compacted mark, unchanged), and returns how
// many blobs and bytes it copied. Each copy lands whole (a local file is
// renamed into place, an object PUT is atomic), so an interrupted copy
// run again goes on where it stopped: `retraced migrate` moves a data
// directory's pool into an object store this way, and back.
func (p *Pool) CopyTo(ctx context.Context, dst *Pool, progress func(copied int, bytes int64)) (int, int64, error) {
	var n int
	var total int64
	err := p.WalkInfo(func(d Digest, fi fs.FileInfo) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if dst.Has(d) {
			return nil
		}
		size, err := p.copyStored(ctx, dst, d)
		if err != nil {
			return fmt.Errorf("copy blob %s: %w", d, err)
		}
		n++
		total += size
		if progress != nil {
			progress(n, total)
		}
		return nil
	})
	return n, total, err
}

// copyStored copies blob d's stored bytes from p to dst. A delta going
// into an object store goes whole: the store's pools keep whole blobs
// only (gc there learns no delta's base without reading every object).
func (p *Pool) copyStored(ctx context.Context, dst *Pool, d Digest) (int64, error) {
	info, err := p.Info(d)
	if err != nil {
		return 0, err
	}
	if info.Delta && dst.cfg.Remote != nil {
		return p.copyWhole(dst, d)
	}
	compacted := info.Compacted
	var r io.ReadCloser
	var size int64
	if p.cfg.Remote != nil {
		if r, size, err = p.cfg.Remote.Open(ctx, d); err != nil {
			return 0, err
		}
	} else {
		f, err := os.Open(p.Path(d))
		if err != nil {
			return 0, err
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return 0, err
		}
		r, size = f, fi.Size()
	}
	defer r.Close()
	if dst.cfg.Remote != nil {
		err := dst.cfg.Remote.Put(ctx, d, r, size, compacted)
		if errors.Is(err, fs.ErrExist) {
			return 0, nil // the destination has it already
		}
		if err != nil {
			return 0, err
		}
		dst.known.set(d, RemoteStat{Size: size, Compacted: compacted})
		return size, nil
	}
	tmp, err := dst.TempFile("copy-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	n, err := io.Copy(tmp, r)
	if err == nil && n != size {
		err = fmt.Errorf("%d bytes read, %d stored", n, size)
	}
	if err == nil && !dst.cfg.NoSync {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	mode := fs.FileMode(modeFresh)
	if compacted {
		mode = modeCompacted
	}
	if err := os.Chmod(tmp.Name(), mode); err != nil {
		return 0, err
	}
	path := dst.Path(d)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return 0, err
	}
	return size, nil
}

// copyWhole stores blob d's content in dst as a fresh whole blob (digest
// checked as it is read).
func (p *Pool) copyWhole(dst *Pool, d Digest) (int64, error) {
	r, err := p.Open(d)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	w, err := dst.NewWriter()
	if err != nil {
		return 0, err
	}
	defer w.Abort()
	if _, err := io.Copy(w, r); err != nil {
		return 0, err
	}
	return w.Commit(d)
}
