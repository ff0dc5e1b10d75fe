package mirror

import (
	"net/http"
	"os/exec"
	"runtime"
	"sync"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
	"github.com/retraced/retraced/mirror/rpmfile"
)

// The defaults of Config's download bounds.
const (
	DefaultIdleTimeout = 60 * time.Second
	DefaultMinRate     = 8 << 10 // bytes a second
	DefaultRateWindow  = 60 * time.Second
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
	// IdleTimeout cuts a download whose body makes no progress for this
	// long (default 60 s): an upstream that sends headers and then
	// nothing must not hold a sync, and its source, for ever.
	IdleTimeout time.Duration
	// MinRate (bytes a second) over each RateWindow is the slowest a
	// download's body may arrive (default 8 KiB/s over 60 s): an
	// upstream that trickles a byte every few seconds would otherwise
	// hold a sync as long as the package's size allows.
	MinRate    int64
	RateWindow time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// XZ decompresses xz payloads, as rpmfile.Options.XZ names them:
	// "go", "liblzma" or an xz binary. Empty picks the fastest there is:
	// liblzma in process when this build has it, else "xz" from PATH
	// (liblzma in another process, about twice the Go decoder's speed),
	// else the Go decoder.
	XZ string
	// Crawl bounds and paces the crawl of tree sources; its zero fields
	// take DefaultCrawl's values.
	Crawl CrawlConfig
	// Compact says how compaction rewrites what syncs stored.
	Compact CompactConfig
	// Pause, when set, is asked before each package a sync ingests: an
	// error stops the sync with that error, keeping what has landed, so
	// that the next sync goes on from there (serve stops syncs so when
	// the disk runs low).
	Pause func() error
}

// CrawlConfig bounds and paces the walk of a tree source's directory
// listings. Package downloads are not paced by it: Workers bounds them.
type CrawlConfig struct {
	// MaxDepth is how many directory levels below the source URL are
	// walked. A Koji tree (packages/NAME/VERSION/RELEASE/ARCH/) needs 5.
	MaxDepth int
	// MaxListings is how many directory listings one sync fetches at most.
	MaxListings int
	// Parallelism is how many listings are fetched at once.
	Parallelism int
	// Delay is how long each of the Parallelism fetchers waits after a
	// listing before it asks for the next: at most Parallelism requests per
	// Delay. With Parallelism 1 it is the pause between two requests, as
	// robots.txt's Crawl-delay means it. Zero: no pause.
	Delay time.Duration
	// ListingTimeout bounds one listing request, or CHECKSUM file, from
	// the request to the body's last byte: a server that trickles a body
	// forever cannot hold the sync.
	ListingTimeout time.Duration
}

// DefaultCrawl is the crawl of a tree source unless configured otherwise.
var DefaultCrawl = CrawlConfig{MaxDepth: 10, MaxListings: 200_000, Parallelism: 4, ListingTimeout: 5 * time.Minute}

func (c *CrawlConfig) defaults() {
	if c.MaxDepth <= 0 {
		c.MaxDepth = DefaultCrawl.MaxDepth
	}
	if c.MaxListings <= 0 {
		c.MaxListings = DefaultCrawl.MaxListings
	}
	if c.Parallelism <= 0 {
		c.Parallelism = DefaultCrawl.Parallelism
	}
	c.Delay = max(c.Delay, 0)
	if c.ListingTimeout <= 0 {
		c.ListingTimeout = DefaultCrawl.ListingTimeout
	}
}

func (c *Config) defaults() {
	c.Crawl.defaults()
	if c.Workers <= 0 {
		// One more than the CPUs: a worker waiting on a download, a
		// disk write or an xz process would otherwise leave a core idle.
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
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.MinRate <= 0 {
		c.MinRate = DefaultMinRate
	}
	if c.RateWindow <= 0 {
		c.RateWindow = DefaultRateWindow
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Compact.Level == 0 {
		c.Compact.Level = DefaultCompactLevel
	}
	if c.XZ == "" {
		c.XZ = rpmfile.XZGo
		if rpmfile.HaveLiblzma {
			c.XZ = rpmfile.XZLiblzma
		} else if p, err := exec.LookPath("xz"); err == nil {
			c.XZ = p
		}
	}
}

// Mirror syncs sources into the index and the blob pool.
type Mirror struct {
	idx    *index.Store
	pool   *blob.Pool
	cfg    Config
	policy *Policy

	// public fetches for sources marked PublicOnly.
	public *http.Client

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
	return &Mirror{idx: idx, pool: pool, cfg: cfg, policy: p, public: publicOnlyClient(), syncing: map[string]bool{}}, nil
}
