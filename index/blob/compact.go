package blob

import (
	"bufio"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/klauspost/compress/zstd"
)

// CompactOptions say how Compact rewrites one blob.
type CompactOptions struct {
	// ZstdCmd is the reference zstd binary for full blobs; empty: this
	// package's encoder (LevelBest from Level 10 up, else LevelBetter).
	// Below level 12, blobs stored in less than cliMin bytes use the
	// encoder anyway.
	ZstdCmd string
	// Level is the zstd level of full blobs (default 19).
	Level int
	// Base, when not zero, is a candidate base: the blob is also encoded
	// as a delta on it, and the smaller form that pays is kept (see
	// README.md). The base must be a compacted full blob; Size must be
	// the blob's content length.
	Base Digest
	Size int64
	// DeltaLevel is the encoder's level for deltas (default LevelBetter).
	DeltaLevel Level
	// Gate, when set, is held from checking that the base still exists
	// to the delta's rename into place: the index's Hold, which gc's
	// Quiesce waits for, so that gc plans with the delta in view and
	// keeps its base.
	Gate func() (release func(), err error)
}

// CompactResult says what Compact did with one blob.
type CompactResult struct {
	Before, After int64 // stored bytes before and after
	// Delta: the blob is now a delta on Base.
	Delta bool
	Base  Digest
	// DeltaErr says why a delta on the base given could not be made (the
	// blob then took its whole form); nil when one was made, or did not
	// pay.
	DeltaErr error
}

// A delta is kept without trying the full form when it is at most
// 1/deltaSure of the fresh blob, and otherwise only when it is smaller
// than deltaPays (9/10) of the full form.
const deltaSure = 4

// cliMin is the stored size from which a whole blob below level 12 goes
// through the zstd binary: under it, starting the process (about 10 ms
// of system time for this large process) costs more than compressing in
// process ("better", about level 7, a few percent larger).
const cliMin = 512 << 10

// Compact rewrites blob d with the strongest compression: the reference
// zstd binary at -19 when zstdCmd is set, else this package's best level.
// It returns the sizes before and after; a blob already compacted is
// left alone. CompactWith says more.
func (p *Pool) Compact(ctx context.Context, d Digest, zstdCmd string) (before, after int64, err error) {
	r, err := p.CompactWith(ctx, d, CompactOptions{ZstdCmd: zstdCmd})
	return r.Before, r.After, err
}

// CompactWith rewrites blob d in its final form: a full zstd frame at
// o.Level, or a delta on o.Base when that is smaller enough. The new
// form is decoded and checked against d before it replaces the blob
// (atomically; open readers keep the old file); a form no smaller than
// the stored one is not written, and the stored bytes become final. A
// blob already compacted is left alone.
func (p *Pool) CompactWith(ctx context.Context, d Digest, o CompactOptions) (CompactResult, error) {
	if o.Level == 0 {
		o.Level = 19
	}
	if o.DeltaLevel == 0 {
		o.DeltaLevel = LevelBetter
	}
	if p.cfg.Remote != nil {
		before, after, err := p.compactRemote(ctx, d, o)
		return CompactResult{Before: before, After: after}, err
	}
	final := p.Path(d)
	fi, err := os.Stat(final)
	if err != nil {
		return CompactResult{}, fmt.Errorf("compact %s: %w", d, err)
	}
	res := CompactResult{Before: fi.Size(), After: fi.Size()}
	if fi.Mode().Perm()&0o222 == 0 {
		return res, nil
	}
	var delta *os.File
	defer func() { dropTemp(delta) }()
	if !o.Base.IsZero() && o.Base != d && o.Size > 0 {
		// A delta that cannot be made (base gone, too large, not final)
		// is no error: the full form is.
		delta, res.DeltaErr = p.deltaTemp(ctx, d, o)
	}
	var dsize int64
	if delta != nil {
		dfi, err := delta.Stat()
		if err != nil {
			return res, err
		}
		dsize = dfi.Size()
		if dsize*deltaSure <= res.Before {
			if ok, err := p.commit(delta, final, modeDelta, o); err != nil || ok {
				if ok {
					delta = nil
					res.After, res.Delta, res.Base = dsize, true, o.Base
				}
				return res, err
			}
			dropTemp(delta) // the base went: the full form
			delta = nil
		}
	}
	src, err := p.Open(d)
	if err != nil {
		return res, err
	}
	if res.Before < cliMin && o.Level < 12 {
		// Starting a zstd process costs more CPU than compressing a small
		// blob in process, at a level that barely differs.
		o.ZstdCmd = ""
	}
	full, err := p.recompress(ctx, d, src, o)
	src.Close()
	if err != nil {
		return res, err
	}
	defer func() { dropTemp(full) }()
	ffi, err := full.Stat()
	if err != nil {
		return res, err
	}
	if delta != nil && dsize < ffi.Size()*9/10 && dsize < res.Before {
		if ok, err := p.commit(delta, final, modeDelta, o); err != nil || ok {
			if ok {
				delta = nil
				res.After, res.Delta, res.Base = dsize, true, o.Base
			}
			return res, err
		}
	}
	if ffi.Size() >= res.Before { // not worth it: keep the old bytes, mark them final
		return res, os.Chmod(final, modeCompacted)
	}
	if _, err := p.commit(full, final, modeCompacted, CompactOptions{}); err != nil {
		return res, err
	}
	full = nil
	res.After = ffi.Size()
	return res, nil
}

// dropTemp closes and removes a temp file, if any.
func dropTemp(f *os.File) {
	if f != nil {
		f.Close()
		os.Remove(f.Name())
	}
}

// commit makes tmp durable and renames it to final with mode. For a delta
// (o.Base set) it first checks, under o.Gate, that the base is still
// stored, and reports false, renaming nothing, when it is not. On
// success tmp is closed and belongs to the pool.
func (p *Pool) commit(tmp *os.File, final string, mode fs.FileMode, o CompactOptions) (bool, error) {
	if !p.cfg.NoSync {
		if err := tmp.Sync(); err != nil {
			return false, err
		}
	}
	if err := tmp.Chmod(mode); err != nil {
		return false, err
	}
	if !o.Base.IsZero() {
		if o.Gate != nil {
			release, err := o.Gate()
			if err != nil {
				return false, err
			}
			defer release()
		}
		if _, err := os.Stat(p.Path(o.Base)); err != nil {
			return false, nil
		}
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return false, err
	}
	tmp.Close()
	return true, nil
}

// deltaTemp writes blob d as a delta on o.Base to a temp file and checks
// that it decodes to d. It fails when the base may not be one: missing,
// not compacted (a fresh blob may still become a delta), a delta itself,
// or too small or large.
func (p *Pool) deltaTemp(ctx context.Context, d Digest, o CompactOptions) (*os.File, error) {
	info, err := p.Info(o.Base)
	switch {
	case err != nil:
		return nil, err
	case info.Delta || !info.Compacted:
		return nil, fmt.Errorf("%w: %s", ErrNotDeltaBase, o.Base)
	}
	path, err := p.Plain(o.Base)
	if err != nil {
		return nil, err
	}
	pfi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if pfi.Size() < minDeltaBase || pfi.Size()+o.Size > MaxDeltaSpan {
		return nil, fmt.Errorf("%w: %s: %d bytes", ErrNotDeltaBase, o.Base, pfi.Size())
	}
	base, err := p.mapBase(o.Base, pfi.Size())
	if err != nil {
		return nil, err
	}
	defer base.close()
	src, err := p.Open(d)
	if err != nil {
		return nil, err
	}
	defer src.Close()
	tmp, err := p.TempFile("delta-*.tmp")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			dropTemp(tmp)
		}
	}()
	bw := bufio.NewWriterSize(tmp, 256<<10)
	if err := encodeDelta(bw, o.Base, base.b, src, o.Size, o.DeltaLevel); err != nil {
		return nil, fmt.Errorf("delta %s on %s: %w", d, o.Base, err)
	}
	if err := bw.Flush(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	rc, err := p.openDelta(d, io.NopCloser(nil), bufio.NewReaderSize(tmp, 128<<10))
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, rc) // the reader checks the digest at EOF
	rc.Close()
	if err != nil {
		return nil, fmt.Errorf("delta %s on %s: %w", d, o.Base, err)
	}
	ok = true
	return tmp, nil
}

// recompress writes the content read from src (blob d, uncompressed) to
// a new temp file as one zstd frame at o.Level and checks it decodes to
// d. The caller removes the file.
func (p *Pool) recompress(ctx context.Context, d Digest, src io.Reader, o CompactOptions) (*os.File, error) {
	tmp, err := p.TempFile("compact-*.tmp")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			dropTemp(tmp)
		}
	}()
	if o.ZstdCmd != "" {
		args := []string{"-" + strconv.Itoa(o.Level), "-q", "-c", "--no-progress", "-T1"}
		if o.Level > 19 {
			args = append(args, "--ultra")
		}
		cmd := exec.CommandContext(ctx, o.ZstdCmd, args...)
		cmd.Stdin = src
		cmd.Stdout = tmp
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Start()
		if err == nil {
			// Compaction is background work (serve runs it after each
			// sync): the lowest priority, so that requests come first.
			// Best effort; zstd runs either way.
			_ = syscall.Setpriority(syscall.PRIO_PROCESS, cmd.Process.Pid, 19)
			err = cmd.Wait()
		}
		if err != nil {
			return nil, fmt.Errorf("compact %s: zstd: %v: %s", d, err, strings.TrimSpace(stderr.String()))
		}
	} else {
		level := LevelBetter
		if o.Level >= 10 {
			level = LevelBest
		}
		bw := bufio.NewWriterSize(tmp, 256<<10)
		enc := getWholeEncoder(bw, level)
		_, err := io.Copy(enc, src)
		if cerr := enc.Close(); err == nil {
			err = cerr
		}
		putWholeEncoder(enc, level)
		if err != nil {
			return nil, fmt.Errorf("compact %s: %w", d, err)
		}
		if err := bw.Flush(); err != nil {
			return nil, err
		}
	}
	if err := p.verifyFile(tmp, d); err != nil {
		return nil, fmt.Errorf("compact %s: %w", d, err)
	}
	ok = true
	return tmp, nil
}

// verifyFile decodes a compressed full blob and checks its digest.
func (p *Pool) verifyFile(f *os.File, d Digest) error {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	dec, err := decode(bufio.NewReaderSize(f, 128<<10))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	defer dec.Close()
	h := sha256.New()
	if _, err := io.Copy(h, dec); err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if got := Digest(h.Sum(nil)); got != d {
		return fmt.Errorf("%w: decodes to %s", ErrCorrupt, got)
	}
	return nil
}

// Whole-blob encoders are reused too (see deltaEncoders): most kept files
// are small, and a new encoder's history is several MB to zero.
var wholeEncoders sync.Map // Level -> *sync.Pool of *zstd.Encoder

func getWholeEncoder(w io.Writer, level Level) *zstd.Encoder {
	pl, _ := wholeEncoders.LoadOrStore(level, new(sync.Pool))
	if enc, ok := pl.(*sync.Pool).Get().(*zstd.Encoder); ok {
		enc.Reset(w)
		return enc
	}
	enc, err := zstd.NewWriter(w, zstd.WithEncoderLevel(level), zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(true))
	if err != nil {
		panic(fmt.Sprintf("zstd writer with static options: %v", err))
	}
	return enc
}

func putWholeEncoder(enc *zstd.Encoder, level Level) {
	enc.Reset(nil)
	pl, _ := wholeEncoders.Load(level)
	pl.(*sync.Pool).Put(enc)
}
