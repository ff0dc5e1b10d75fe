package main

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"

	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/worker"
)

// Config is retraced's whole configuration: defaults, then the TOML file,
// then environment, then flags.
type Config struct {
	// Data is the data directory holding everything persistent.
	Data string `toml:"data"`
	// Listen is serve's HTTP address.
	Listen string `toml:"listen"`
	// AdminToken, when set, guards the API calls that change something
	// (Authorization: Bearer TOKEN); the CLI sends it to a running server.
	AdminToken string `toml:"admin_token"`
	// GCSchedule is when serve collects garbage (cron spec).
	GCSchedule string `toml:"gc_schedule"`
	// MinFree is the free space, in percent of the data directory's file
	// system, below which syncs pause and new retrace tasks get 507 (one
	// diskspace.Policy, store.space, answers for all of them); 0 sets no
	// minimum.
	MinFree float64 `toml:"min_free"`
	// MemoryLimitMB is serve's soft Go heap limit (GOMEMLIMIT wins).
	MemoryLimitMB int64 `toml:"memory_limit_mb"`
	// TaskTTL is how long gc keeps a finished retrace task, and
	// FailedTaskTTL a failed one when that is sooner (Go durations such
	// as "168h").
	TaskTTL       Duration `toml:"task_ttl"`
	FailedTaskTTL Duration `toml:"failed_task_ttl"`
	// CrashRetention is how long a crash signature not seen again is
	// kept in the crash reports, and their daily counts.
	CrashRetention Duration `toml:"crash_retention"`
	// IdleTimeout closes a keep-alive connection idle that long (a Go
	// duration). MinBodyRate (KiB/s) over each BodyRateWindow is the
	// slowest a request body may arrive (the [retrace] upload keys bound
	// /create). MaxConnections caps the connections served at once; 0
	// derives it from the file descriptor limit (half of what is left
	// after 64, so that downloads, blobs and gdb keep the other half).
	IdleTimeout Duration `toml:"idle_timeout"`
	// ReadHeaderTimeout is how long a client may take to send a
	// request's headers (a Go duration): one sending them a byte at a
	// time is cut then.
	ReadHeaderTimeout Duration `toml:"read_header_timeout"`
	MinBodyRate       int64    `toml:"min_body_rate"`
	BodyRateWindow    Duration `toml:"body_rate_window"`
	MaxConnections    int      `toml:"max_connections"`
	// UpstreamDebuginfod are debuginfod servers asked, in order, for the
	// executables and debug files the mirror lacks (federation; when
	// unset, DEBUGINFOD_URLS in serve's environment, space-separated, as
	// elfutils reads it). What they send is cached in DATA/federation, at
	// most UpstreamCacheMB and for UpstreamCacheTTL.
	UpstreamDebuginfod []string `toml:"upstream_debuginfod"`
	UpstreamCacheMB    int64    `toml:"upstream_cache_mb"`
	UpstreamCacheTTL   Duration `toml:"upstream_cache_ttl"`
	// TLSCert and TLSKey are PEM files: with both, serve speaks HTTPS
	// only, and reads them again on SIGHUP (a renewed certificate needs
	// no restart).
	TLSCert string `toml:"tls_cert"`
	TLSKey  string `toml:"tls_key"`
	// TrustedProxies are the addresses or CIDRs of reverse proxies in
	// front of serve: from them, the client is the last address in
	// X-Forwarded-For that is not itself a trusted proxy (for logs, the
	// status page, and the guess throttle). From anyone else the header
	// is ignored.
	TrustedProxies []string `toml:"trusted_proxies"`
	// APISources is what a source added over the API may name: "public"
	// (http(s) hosts with public addresses only, checked again at every
	// connection), "private" (any http(s) URL) or "local" (also local
	// paths and file:// URLs).
	APISources string `toml:"api_sources"`
	// InsecureOpenAdmin lets serve listen on a non-loopback address
	// without an admin token (flag --insecure-open-admin only).
	InsecureOpenAdmin bool          `toml:"-"`
	Mirror            MirrorConfig  `toml:"mirror"`
	Retrace           RetraceConfig `toml:"retrace"`
	Storage           StorageConfig `toml:"storage"`
}

// Duration is the value of a duration key: a Go duration in the file
// ("168h", "500ms"), parsed once, when go-toml calls UnmarshalText. A
// value that does not parse is kept, with the parse error, for the key's
// check to report ([Duration.positive], or checkCrawl's range): go-toml's
// own error would name neither the key nor what is wanted. text is the
// value as the file wrote it, for those messages.
type Duration struct {
	time.Duration
	text string
	err  error
}

// duration is d as a default value.
func duration(d time.Duration) Duration { return Duration{Duration: d, text: d.String()} }

// UnmarshalText implements encoding.TextUnmarshaler; see [Duration] for
// why it returns no error.
func (d *Duration) UnmarshalText(b []byte) error {
	d.text = string(b)
	d.Duration, d.err = time.ParseDuration(d.text)
	return nil
}

// positive returns an error naming key unless d parsed and is above zero.
func (d Duration) positive(key, example string) error {
	if d.err != nil || d.Duration <= 0 {
		return fmt.Errorf("%s = %q: want a positive duration such as %q", key, d.text, example)
	}
	return nil
}

// MirrorConfig is the [mirror] table.
type MirrorConfig struct {
	Workers int      `toml:"workers"`
	Keep    []string `toml:"keep"`
	Drop    []string `toml:"drop"`
	// Compression is how a sync compresses stored files: s2 (fastest,
	// largest), or zstd at fastest, default, better or best. Compaction
	// rewrites them in their final form either way.
	Compression string `toml:"compression"`
	// CompactLevel is the zstd level compaction writes whole blobs at
	// (1-22; 19 is the strongest that stays fast to read, and costs
	// about six times the CPU of the default for a tenth fewer bytes).
	CompactLevel int `toml:"compact_level"`
	// CompactDeltas lets compaction store a file as a delta on the same
	// file of the package's nearest older version, when that pays.
	CompactDeltas *bool `toml:"compact_deltas"`
	// Fsync makes every stored file durable before it is indexed.
	Fsync *bool `toml:"fsync"`
	// The crawl of tree sources (mirror.CrawlConfig): directory levels
	// walked below the source URL, listings fetched per sync at most,
	// listings fetched at once, and the pause each of those fetchers
	// takes after a listing (a Go duration; with crawl_parallelism = 1,
	// the gap between two requests, as robots.txt's Crawl-delay), and
	// how long one listing may take, body included.
	CrawlMaxDepth       int      `toml:"crawl_max_depth"`
	CrawlMaxListings    int      `toml:"crawl_max_listings"`
	CrawlParallelism    int      `toml:"crawl_parallelism"`
	CrawlDelay          Duration `toml:"crawl_delay"`
	CrawlListingTimeout Duration `toml:"crawl_listing_timeout"`
	// Every download (packages, metadata, listings) is cut when its body
	// brings nothing for DownloadIdleTimeout, or fewer than
	// MinDownloadRate KiB/s over a DownloadRateWindow (Go durations).
	DownloadIdleTimeout Duration `toml:"download_idle_timeout"`
	MinDownloadRate     int64    `toml:"min_download_rate"`
	DownloadRateWindow  Duration `toml:"download_rate_window"`
}

func defaultMirrorConfig() MirrorConfig {
	return MirrorConfig{
		Workers: runtime.NumCPU() + 1, Compression: "s2", CompactLevel: mirror.DefaultCompactLevel,
		CrawlMaxDepth: mirror.DefaultCrawl.MaxDepth, CrawlMaxListings: mirror.DefaultCrawl.MaxListings,
		CrawlParallelism: mirror.DefaultCrawl.Parallelism, CrawlDelay: duration(mirror.DefaultCrawl.Delay),
		CrawlListingTimeout: duration(mirror.DefaultCrawl.ListingTimeout),
		DownloadIdleTimeout: duration(mirror.DefaultIdleTimeout), MinDownloadRate: mirror.DefaultMinRate >> 10,
		DownloadRateWindow: duration(mirror.DefaultRateWindow),
	}
}

// maxWorkers bounds [mirror] workers: each holds a download and a
// decompressor.
const maxWorkers = 256

// The bounds checkCrawl holds the crawl keys to.
const (
	maxCrawlDepth       = 100
	maxCrawlListings    = 10_000_000
	maxCrawlParallelism = 64
	maxCrawlDelay       = time.Minute // a sync's cancellation waits out one delay
)

// checkCrawl rejects crawl and download values out of range.
func (m MirrorConfig) checkCrawl() error {
	for _, v := range []struct {
		key      string
		val, max int
	}{
		{"crawl_max_depth", m.CrawlMaxDepth, maxCrawlDepth},
		{"crawl_max_listings", m.CrawlMaxListings, maxCrawlListings},
		{"crawl_parallelism", m.CrawlParallelism, maxCrawlParallelism},
	} {
		if v.val < 1 || v.val > v.max {
			return fmt.Errorf("%s = %d: want 1 to %d", v.key, v.val, v.max)
		}
	}
	if d := m.CrawlDelay; d.err != nil || d.Duration < 0 || d.Duration > maxCrawlDelay {
		return fmt.Errorf("crawl_delay = %q: want a duration from \"0s\" to %q, such as \"500ms\"", d.text, maxCrawlDelay)
	}
	if err := m.CrawlListingTimeout.positive("crawl_listing_timeout", "5m"); err != nil {
		return err
	}
	if m.MinDownloadRate <= 0 {
		return fmt.Errorf("min_download_rate = %d: want a positive number of KiB/s", m.MinDownloadRate)
	}
	if err := m.DownloadIdleTimeout.positive("download_idle_timeout", "60s"); err != nil {
		return err
	}
	return m.DownloadRateWindow.positive("download_rate_window", "60s")
}

// crawl returns the crawl keys as the mirror takes them.
func (m MirrorConfig) crawl() mirror.CrawlConfig {
	return mirror.CrawlConfig{
		MaxDepth: m.CrawlMaxDepth, MaxListings: m.CrawlMaxListings,
		Parallelism: m.CrawlParallelism, Delay: m.CrawlDelay.Duration, ListingTimeout: m.CrawlListingTimeout.Duration,
	}
}

func defaultConfig() Config {
	return Config{
		Data:              "./retraced-data",
		Listen:            "127.0.0.1:8080",
		APISources:        "public",
		GCSchedule:        "@daily",
		MinFree:           10,
		MemoryLimitMB:     200,
		TaskTTL:           duration(168 * time.Hour),
		IdleTimeout:       duration(60 * time.Second),
		ReadHeaderTimeout: duration(10 * time.Second),
		MinBodyRate:       8,
		BodyRateWindow:    duration(10 * time.Second),
		FailedTaskTTL:     duration(24 * time.Hour),
		CrashRetention:    duration(90 * 24 * time.Hour),
		UpstreamCacheMB:   1024,
		UpstreamCacheTTL:  duration(24 * time.Hour),
		Mirror:            defaultMirrorConfig(),
		Retrace:           defaultRetraceConfig(),
	}
}

// loadConfig reads path (if not empty) over the defaults. Unknown keys are
// an error: a typo should not silently fall back to a default.
func loadConfig(path string) (Config, error) {
	c := defaultConfig()
	if path == "" {
		return c, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	d := toml.NewDecoder(f).DisallowUnknownFields()
	if err := d.Decode(&c); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			// go-toml's own message names no key.
			var keys []string
			for _, e := range strict.Errors {
				row, _ := e.Position()
				keys = append(keys, fmt.Sprintf("%s (line %d)", strings.Join(e.Key(), "."), row))
			}
			return c, fmt.Errorf("config %s: unknown key %s", path, strings.Join(keys, ", "))
		}
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	if c.MinFree < 0 || c.MinFree > 100 {
		return c, fmt.Errorf("config %s: min_free = %g: want a percentage from 0 to 100", path, c.MinFree)
	}
	if c.MemoryLimitMB < 0 {
		return c, fmt.Errorf("config %s: memory_limit_mb = %d: want a number of MiB, or 0 for no limit", path, c.MemoryLimitMB)
	}
	if c.Mirror.CompactLevel < 1 || c.Mirror.CompactLevel > 22 {
		return c, fmt.Errorf("config %s: [mirror] compact_level = %d: want 1 to 22", path, c.Mirror.CompactLevel)
	}
	if c.Mirror.Workers < 1 || c.Mirror.Workers > maxWorkers {
		return c, fmt.Errorf("config %s: [mirror] workers = %d: want 1 to %d", path, c.Mirror.Workers, maxWorkers)
	}
	if c.MinBodyRate <= 0 {
		return c, fmt.Errorf("config %s: min_body_rate = %d: want a positive number of KiB/s", path, c.MinBodyRate)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, fmt.Errorf("config %s: tls_cert and tls_key go together: give both, or neither", path)
	}
	switch c.APISources {
	case "public", "private", "local":
	default:
		return c, fmt.Errorf("config %s: api_sources = %q: want \"public\", \"private\" or \"local\"", path, c.APISources)
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				return c, fmt.Errorf("config %s: trusted_proxies: %q is neither an address nor a CIDR", path, p)
			}
		}
	}
	if c.MaxConnections < 0 {
		return c, fmt.Errorf("config %s: max_connections = %d: want a positive number, or 0 to derive it from the file descriptor limit", path, c.MaxConnections)
	}
	for _, v := range []struct {
		key string
		val Duration
	}{{"task_ttl", c.TaskTTL}, {"failed_task_ttl", c.FailedTaskTTL}, {"crash_retention", c.CrashRetention},
		{"idle_timeout", c.IdleTimeout}, {"read_header_timeout", c.ReadHeaderTimeout}, {"body_rate_window", c.BodyRateWindow}, {"upstream_cache_ttl", c.UpstreamCacheTTL}} {
		if err := v.val.positive(v.key, "168h"); err != nil {
			return c, fmt.Errorf("config %s: %w", path, err)
		}
	}
	for _, u := range c.UpstreamDebuginfod {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return c, fmt.Errorf("config %s: upstream_debuginfod: %q is not an http:// or https:// URL", path, u)
		}
	}
	if c.UpstreamCacheMB <= 0 {
		return c, fmt.Errorf("config %s: upstream_cache_mb = %d: want a positive number of MiB", path, c.UpstreamCacheMB)
	}
	if err := c.Mirror.checkCrawl(); err != nil {
		return c, fmt.Errorf("config %s: [mirror] %w", path, err)
	}
	if err := c.Retrace.check(); err != nil {
		return c, fmt.Errorf("config %s: [retrace] %w", path, err)
	}
	return c, nil
}

// RetraceConfig is the [retrace] table: the task server's limits (the
// names /settings reports them by) and the worker's (sysroot cache, gdb).
// Every key is optional; its default is in defaultRetraceConfig.
type RetraceConfig struct {
	// MaxRunningTasks is the tasks retraced at once (Retrace Server's
	// MaxParallelTasks); MaxQueuedTasks bounds those accepted and not
	// finished, beyond which /create answers 503.
	MaxRunningTasks int `toml:"max_running_tasks"`
	MaxQueuedTasks  int `toml:"max_queued_tasks"`
	// MaxPackedSize is the largest upload and MaxUnpackedSize the largest
	// unpacked crash directory, in MiB (Retrace Server's MaxPackedSize,
	// MaxUnpackedSize).
	MaxPackedSize   int64 `toml:"max_packed_size"`
	MaxUnpackedSize int64 `toml:"max_unpacked_size"`
	// TaskTimeout bounds one retrace, sysroot assembly included;
	// UploadTimeout one upload; GDBTimeout the gdb run (Go durations).
	TaskTimeout   Duration `toml:"task_timeout"`
	UploadTimeout Duration `toml:"upload_timeout"`
	GDBTimeout    Duration `toml:"gdb_timeout"`
	// Federate lets the worker ask the federation (upstream_debuginfod,
	// or DEBUGINFOD_URLS) for the executables and debuginfo of a core's
	// objects the index lacks; off by default.
	Federate bool `toml:"federate"`
	// MinUploadRate (KiB/s) over each UploadRateWindow (a Go duration)
	// is the slowest an upload may go; MaxUploads bounds the uploads
	// streaming at once (they take no queue slot until they arrive).
	MinUploadRate    int64    `toml:"min_upload_rate"`
	UploadRateWindow Duration `toml:"upload_rate_window"`
	MaxUploads       int      `toml:"max_uploads"`
	// GDBMemoryMB is gdb's address-space limit in MiB; 0 means none.
	GDBMemoryMB int64 `toml:"gdb_memory_mb"`
	// SysrootBudgetMB bounds the cached sysroots; the least recently used
	// idle ones beyond it are removed.
	SysrootBudgetMB int64 `toml:"sysroot_budget_mb"`
	// Network is gdb's network: "none" (its own network namespace with
	// no interface up; start-up fails when that is impossible) or
	// "host". Unset, gdb gets none when it can, else the host's, with a
	// warning.
	Network string `toml:"network"`
	// SupportedReleases is /settings' supported_releases (empty: "any").
	SupportedReleases []string `toml:"supported_releases"`
}

func defaultRetraceConfig() RetraceConfig {
	return RetraceConfig{
		MaxRunningTasks:  retrace.DefaultMaxRunningTasks,
		MaxQueuedTasks:   retrace.DefaultMaxQueuedTasks,
		MaxPackedSize:    retrace.DefaultMaxPackedSize,
		MaxUnpackedSize:  retrace.DefaultMaxUnpackedSize,
		TaskTimeout:      duration(retrace.DefaultTaskTimeout),
		UploadTimeout:    duration(retrace.DefaultUploadTimeout),
		MinUploadRate:    retrace.DefaultMinUploadRate,
		UploadRateWindow: duration(retrace.DefaultUploadRateWindow),
		MaxUploads:       4 * retrace.DefaultMaxQueuedTasks,
		GDBTimeout:       duration(worker.DefaultGDBTimeout),
		GDBMemoryMB:      worker.DefaultGDBMemory >> 20,
		SysrootBudgetMB:  worker.DefaultSysrootBudget >> 20,
	}
}

// check rejects values the task server or the worker would otherwise
// quietly replace with a default.
func (r RetraceConfig) check() error {
	for _, v := range []struct {
		key string
		val int64
	}{
		{"max_running_tasks", int64(r.MaxRunningTasks)}, {"max_queued_tasks", int64(r.MaxQueuedTasks)},
		{"max_packed_size", r.MaxPackedSize}, {"max_unpacked_size", r.MaxUnpackedSize},
		{"sysroot_budget_mb", r.SysrootBudgetMB},
		{"min_upload_rate", r.MinUploadRate},
	} {
		if v.val <= 0 {
			return fmt.Errorf("%s = %d: want a positive number", v.key, v.val)
		}
	}
	if r.MaxQueuedTasks < r.MaxRunningTasks {
		return fmt.Errorf("max_queued_tasks = %d is below max_running_tasks = %d: running tasks count as queued", r.MaxQueuedTasks, r.MaxRunningTasks)
	}
	if r.MaxUploads < 0 {
		return fmt.Errorf("max_uploads = %d: want a positive number, or 0 for 4 x max_queued_tasks", r.MaxUploads)
	}
	if r.GDBMemoryMB < 0 {
		return fmt.Errorf("gdb_memory_mb = %d: want a number of MiB, or 0 for no limit", r.GDBMemoryMB)
	}
	for _, v := range []struct {
		key string
		val Duration
	}{{"task_timeout", r.TaskTimeout}, {"upload_timeout", r.UploadTimeout}, {"gdb_timeout", r.GDBTimeout}, {"upload_rate_window", r.UploadRateWindow}} {
		if err := v.val.positive(v.key, "10m"); err != nil {
			return err
		}
	}
	if r.GDBTimeout.Duration > r.TaskTimeout.Duration {
		return fmt.Errorf("gdb_timeout = %q exceeds task_timeout = %q: the task would be killed first", r.GDBTimeout.text, r.TaskTimeout.text)
	}
	if r.Network != "" && r.Network != "none" && r.Network != "host" {
		return fmt.Errorf("network = %q: want \"none\" (no network for gdb) or \"host\"", r.Network)
	}
	return nil
}

// StorageConfig is the [storage] table: where the blobs and the index
// live. Blobs is "" (the data directory's blobs/, the default) or
// "s3://BUCKET/PREFIX" (an S3-compatible object store; endpoint, region
// and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID
// and AWS_SECRET_ACCESS_KEY, as every S3 tool reads them). Index is ""
// (Badger in the data directory's index/, the default) or a PostgreSQL
// URL, "postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...", which any
// number of nodes share (the password may also come from PGPASSWORD or
// ~/.pgpass, as libpq reads them). Node names this process on the status
// page's list of who syncs what ("" picks HOSTNAME:PID).
type StorageConfig struct {
	Blobs string `toml:"blobs"`
	Index string `toml:"index"`
	Node  string `toml:"node"`
}
