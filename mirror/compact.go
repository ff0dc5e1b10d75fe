package mirror

import (
	"context"
	"fmt"
	"os/exec"
	"sync"

	"github.com/retraced/retraced/index/blob"
)

// CompactResult says what a compaction did.
type CompactResult struct {
	Blobs         int   // blobs recompressed
	Before, After int64 // their bytes before and after
}

// Compact recompresses every blob not yet compacted at the strongest level
// (the reference zstd -19 when installed), in parallel, then recounts the
// sources' stored bytes. Ingest stores blobs at a fast level so that syncs
// are quick; compaction trades CPU, off the sync path, for disk.
func (m *Mirror) Compact(ctx context.Context) (*CompactResult, error) {
	zstdCmd, _ := exec.LookPath("zstd") // absent: the Go encoder's best level
	var todo []blob.Digest
	if err := m.pool.Walk(func(d blob.Digest, _ int64) error {
		if done, err := m.pool.IsCompacted(d); err == nil && !done {
			todo = append(todo, d)
		}
		return ctx.Err()
	}); err != nil {
		return nil, err
	}
	res := &CompactResult{}
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan blob.Digest)
	var wg sync.WaitGroup
	for range m.cfg.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range jobs {
				before, after, err := m.pool.Compact(ctx, d, zstdCmd)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					res.Blobs++
					res.Before += before
					res.After += after
				}
				mu.Unlock()
			}
		}()
	}
	var paused error
	for i, d := range todo {
		if ctx.Err() != nil {
			break
		}
		// Each blob is rewritten beside itself before the old one goes:
		// on a disk short of space compaction stops, as a sync does,
		// rather than fill it (every 64 blobs: a statfs each is cheap,
		// but not free).
		if m.cfg.Pause != nil && i%64 == 0 {
			if paused = m.cfg.Pause(); paused != nil {
				break
			}
		}
		jobs <- d
	}
	close(jobs)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr == nil && paused != nil {
		firstErr = fmt.Errorf("compaction %w", paused)
	}
	if err := m.recountStored(); err != nil && firstErr == nil {
		firstErr = err
	}
	return res, firstErr
}

// recountStored sets each source's stored bytes to what its packages'
// distinct blobs take on disk now.
func (m *Mirror) recountStored() error {
	srcs, err := m.Sources()
	if err != nil {
		return err
	}
	for _, s := range srcs {
		if err := m.countSource(s); err != nil {
			return err
		}
		if err := m.saveSource(s); err != nil {
			return err
		}
	}
	return nil
}
