package mirror

import (
	"net/http"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// Config tunes a Mirror. The zero value of each field picks its default.
type Config struct {
	// Workers ingest packages in parallel (default: the number of CPUs
	// plus one).
	Workers int
	// Keep and Drop are extra path globs (see Policy); Drop defaults to
	// DefaultDrop when nil.
	Keep, Drop []string
	// MaxPackageSize bounds one RPM (default 8 GiB).
	MaxPackageSize int64
	// MaxMetadataSize bounds repomd.xml and decompressed primary.xml
	// (default 4 GiB for primary, 16 MiB for repomd).
	MaxMetadataSize int64
	// InMemoryMax is the largest member held in memory while ingesting;
	// larger ones spill to a temp file in the pool (default 4 MiB).
	InMemoryMax int64
	// Client fetches http(s) sources (default: a client with a 30 s
	// header timeout and no overall timeout, for slow large downloads).
	Client *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time
	// XZCommand decompresses xz payloads (liblzma is about twice as fast
	// as the Go decoder, and runs beside the ingest on another core).
	// Empty: "xz" from PATH when there is one; "none": the Go decoder.
	XZCommand string
}

func (c *Config) defaults() {
	if c.Workers <= 0 {
		// One more than the CPUs: a worker waiting on a download or on
		// an xz process would otherwise leave a core idle.
		c.Workers = runtime.NumCPU() + 1
	}
	if c.Drop == nil {
		c.Drop = DefaultDrop
	}
	if c.MaxPackageSize <= 0 {
		c.MaxPackageSize = 8 << 30
	}
	if c.MaxMetadataSize <= 0 {
		c.MaxMetadataSize = 4 << 30
	}
	if c.InMemoryMax <= 0 {
		c.InMemoryMax = 4 << 20
	}
	if c.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 30 * time.Second
		t.MaxIdleConnsPerHost = 16
		c.Client = &http.Client{Transport: t}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch c.XZCommand {
	case "none":
		c.XZCommand = ""
	case "":
		if p, err := exec.LookPath("xz"); err == nil {
			c.XZCommand = p
		}
	}
}

// Mirror syncs sources into the index and the blob pool.
type Mirror struct {
	idx    *index.Store
	pool   *blob.Pool
	cfg    Config
	policy *Policy

	syncMu  sync.Mutex
	syncing map[string]bool
}

// New returns a Mirror writing to idx and pool.
func New(idx *index.Store, pool *blob.Pool, cfg Config) (*Mirror, error) {
	cfg.defaults()
	p, err := NewPolicy(cfg.Keep, cfg.Drop)
	if err != nil {
		return nil, err
	}
	return &Mirror{idx: idx, pool: pool, cfg: cfg, policy: p, syncing: map[string]bool{}}, nil
}
