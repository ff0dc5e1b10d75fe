package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/retraced/retraced/gc/diskspace"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/index/blob/s3blob"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/resolver/federate"
	"github.com/retraced/retraced/web"
)

// ErrInUse reports a data directory another process has open.
var ErrInUse = errors.New("data directory in use")

// store is an opened data directory:
//
//	DATA/LOCK     flock held by the process that has the directory open
//	DATA/index/   Badger database (package index)
//	DATA/blobs/   content-addressed file pool (index/blob)
type store struct {
	dir    string
	lock   *os.File
	idx    *index.Store
	pool   *blob.Pool
	mirror *mirror.Mirror
	// space is min_free: syncs pause, serve refuses syncs and retrace
	// tasks, while less is free.
	space *diskspace.Policy
	// node names this process in the leases of a shared index.
	node string
	// objects is the [storage] blobs object store; nil for the data
	// directory's blobs/.
	objects *s3blob.Store
	// fed is the federation (upstream_debuginfod), one client for the
	// debuginfod handlers and the retrace worker, so that they share
	// in-flight downloads and its counts; upstreams makes it once.
	fed     *federate.Client
	fedOnce sync.Once
}

// indexReserve is the free space no min_free can go below. Badger writes
// its memtables and value log through memory-mapped files: when the file
// system fills under them the process dies of SIGBUS (reproduced on a
// full tmpfs: serve crashed mid-sync, and the sync's caller got no
// answer). Two memtables and a value-log file are 96 MiB; the rest is
// room for the sync that is already writing when the check says low.
const indexReserve = 256 << 20

// storePolicy is the data directory's free-space policy: min_free
// percent of the file system, and never less than indexReserve.
func storePolicy(dir string, minFree float64) *diskspace.Policy {
	return &diskspace.Policy{Dir: dir, MinPercent: minFree, MinBytes: indexReserve}
}

// openStore takes the directory's lock and opens everything in it.
func openStore(cfg Config) (*store, error) {
	dir := cfg.Data
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	s := &store{dir: dir, lock: lock, space: storePolicy(dir, cfg.MinFree), node: nodeName(cfg.Storage)}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	bc, err := parseCompression(cfg.Mirror.Compression)
	if err != nil {
		return nil, err
	}
	bc.NoSync = cfg.Mirror.Fsync != nil && !*cfg.Mirror.Fsync
	if cfg.Storage.Blobs != "" {
		if s.objects, err = openObjectStore(cfg.Storage.Blobs); err != nil {
			return nil, err
		}
		bc.Remote = s.objects
	}
	if s.pool, err = blob.Open(filepath.Join(dir, "blobs"), bc); err != nil {
		return nil, err
	}
	// We hold the lock: whatever is in the pool's tmp/ was left by a
	// process that died mid-write.
	if err := s.pool.CleanTemp(); err != nil {
		return nil, err
	}
	if s.idx, err = openIndex(dir, cfg.Storage); err != nil {
		return nil, err
	}
	if s.mirror, err = mirror.New(s.idx, s.pool, mirror.Config{
		Workers: cfg.Mirror.Workers, Keep: cfg.Mirror.Keep, Drop: cfg.Mirror.Drop,
		Crawl:       cfg.Mirror.crawl(),
		IdleTimeout: cfg.Mirror.DownloadIdleTimeout.Duration, MinRate: cfg.Mirror.MinDownloadRate << 10,
		RateWindow: cfg.Mirror.DownloadRateWindow.Duration,
		Compact: mirror.CompactConfig{
			Level:    cfg.Mirror.CompactLevel,
			NoDeltas: cfg.Mirror.CompactDeltas != nil && !*cfg.Mirror.CompactDeltas,
		},
		// Checked before each package: a sync that fills the disk stops
		// at min_free, and the next goes on from there.
		Pause: s.space.Pause,
	}); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

func (s *store) Close() error {
	var errs []error
	if s.idx != nil {
		errs = append(errs, s.idx.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close())
	}
	return errors.Join(errs...)
}

func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "LOCK")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		holder := "another process"
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
			holder = "process " + strconv.Itoa(pid)
		}
		return nil, fmt.Errorf("%w: %s is held by %s (another retraced command or server); "+
			"wait for it, or talk to the running server", ErrInUse, dir, holder)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock data directory: %w", err)
	}
	return f, nil
}

// parseCompression maps mirror.compression to the pool's codec and level.
func parseCompression(s string) (blob.Config, error) {
	switch s {
	case "", "s2":
		return blob.Config{Codec: blob.CodecS2}, nil
	case "fastest":
		return blob.Config{Level: blob.LevelFastest}, nil
	case "default":
		return blob.Config{Level: blob.LevelDefault}, nil
	case "better":
		return blob.Config{Level: blob.LevelBetter}, nil
	case "best":
		return blob.Config{Level: blob.LevelBest}, nil
	}
	return blob.Config{}, fmt.Errorf("mirror.compression %q: want s2, fastest, default, better or best", s)
}

// openObjectStore connects to the [storage] blobs object store, creating
// its bucket when it has none.
func openObjectStore(raw string) (*s3blob.Store, error) {
	c, err := s3blob.ParseURL(raw)
	if err != nil {
		return nil, fmt.Errorf("[storage] %w", err)
	}
	st, err := s3blob.Open(c)
	if err != nil {
		return nil, fmt.Errorf("[storage] blobs: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := st.EnsureBucket(ctx); err != nil {
		return nil, fmt.Errorf("[storage] blobs: %w", err)
	}
	return st, nil
}

// openIndex opens the [storage] index: Badger in dir/index, or the
// PostgreSQL database it names.
func openIndex(dir string, sc StorageConfig) (*index.Store, error) {
	o := index.Options{Node: nodeName(sc)}
	switch {
	case sc.Index == "":
		return index.Open(filepath.Join(dir, "index"), o)
	case strings.HasPrefix(sc.Index, "postgres://"), strings.HasPrefix(sc.Index, "postgresql://"):
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return index.OpenPostgres(ctx, sc.Index, o)
	}
	return nil, fmt.Errorf("[storage] index = %q: want \"\" (Badger in the data directory) or a postgres:// URL", sc.Index)
}

// nodeName is this process's name where leases are shown: [storage] node,
// or HOSTNAME:PID.
func nodeName(sc StorageConfig) string {
	if sc.Node != "" {
		return sc.Node
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s:%d", host, os.Getpid())
}

// nodeSummary is the status page's list of who holds which lease.
func nodeSummary(s *store) func() *web.NodeSummary {
	return func() *web.NodeSummary {
		n := &web.NodeSummary{Self: s.node}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		held, err := s.idx.Holders(ctx)
		if err != nil {
			n.Err = err.Error()
		}
		for name, node := range held {
			n.Leases = append(n.Leases, web.LeaseLine{Name: name, Node: node, Self: node == s.node})
		}
		slices.SortFunc(n.Leases, func(a, b web.LeaseLine) int { return strings.Compare(a.Name, b.Name) })
		return n
	}
}
