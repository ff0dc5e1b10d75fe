package retrace

import (
	"log/slog"
	"time"

	"github.com/retraced/retraced/gc/diskspace"
)

// Config tunes a Server. The zero value of a field means its default.
type Config struct {
	// MaxRunningTasks is the number of workers: tasks retraced at once.
	// Default 2: a retrace is one GDB (single-threaded, CPU- and
	// memory-heavy) plus sysroot assembly (disk-heavy), so two keep both
	// cores of a small box busy without making every task slower.
	// Retrace Server's default, 5, assumes a larger machine.
	MaxRunningTasks int `toml:"max_running_tasks"`

	// MaxQueuedTasks bounds the tasks accepted and not finished: pending,
	// running and still uploading. A create beyond it is refused with 503
	// before its body is read. Default 10: with the default limits this
	// bounds the spool at about 10 GiB of crash directories, and a client
	// waits at most a few task times.
	MaxQueuedTasks int `toml:"max_queued_tasks"`

	// MaxPackedSize is the largest request body, in MiB. Default 256:
	// xz -2 (what abrt-retrace-client and retrace-client use) packs a
	// core 4 to 20 times, so 256 MiB admits every core that fits
	// MaxUnpackedSize except incompressible ones. Retrace Server's 50
	// turns away many cores of today's programs.
	MaxPackedSize int64 `toml:"max_packed_size"`

	// MaxUnpackedSize is the largest sum of the archive's file sizes, in
	// MiB. Default 1024, as Retrace Server.
	MaxUnpackedSize int64 `toml:"max_unpacked_size"`

	// MaxFiles bounds the archive's members, counting the "." entry.
	// Default 16: there are only len(AllowedFiles) names to send.
	MaxFiles int `toml:"max_files"`

	// MinFreeSpace is the space, in MiB, that must stay free on the
	// directory's file system after an upload; less is 507. Default 1024,
	// as Retrace Server's MinStorageLeft.
	MinFreeSpace int64 `toml:"min_free_space"`

	// Recorder, when set, is told of each task that finished with a
	// backtrace (serve passes the crash store).
	Recorder Recorder `toml:"-"`

	// Space, when set, is the free-space policy uploads are checked
	// against instead of MinFreeSpace: serve passes the one its syncs
	// pause by.
	Space *diskspace.Policy `toml:"-"`

	// TaskTimeout is the wall-clock time one retrace may take, sysroot
	// assembly included. Default 1h: GDB on a large program with all its
	// debuginfo takes minutes, not hours.
	TaskTimeout time.Duration `toml:"task_timeout"`

	// UploadTimeout bounds the time one upload may take. Default 15
	// minutes: 256 MiB at 300 KB/s.
	UploadTimeout time.Duration `toml:"upload_timeout"`

	// MinUploadRate, in KiB/s, is the slowest an upload may go, measured
	// over each UploadRateWindow: a slower one (a client trickling bytes
	// to hold the server's resources) is cut with 408. Default 8.
	MinUploadRate int64 `toml:"min_upload_rate"`

	// UploadRateWindow is how long MinUploadRate is measured over; an
	// upload that sends nothing at all is cut within two windows.
	// Default 10 s.
	UploadRateWindow time.Duration `toml:"upload_rate_window"`

	// MaxUploads bounds the uploads streaming at once. An upload takes
	// no queue slot (MaxQueuedTasks) until its body has arrived, so that
	// slow clients cannot fill the queue; this bounds what they can hold
	// instead. Default 4 × MaxQueuedTasks.
	MaxUploads int `toml:"max_uploads"`

	// DeleteAfter removes finished tasks (the core, the log, the
	// backtrace) that long after they finished; negative keeps them for
	// ever. Default 7 days: clients fetch the backtrace right away, and
	// cores are large and may hold secrets.
	DeleteAfter time.Duration `toml:"delete_after"`
	// DeleteFailedAfter removes failed tasks sooner: a failure's log is
	// read at once or never, and its core is as big as a success's.
	DeleteFailedAfter time.Duration `toml:"delete_failed_after"`

	// SupportedReleases is the supported_releases line of /settings,
	// release ids as abrt-retrace-client builds them
	// ("fedora-40-x86_64"). Default "any". abrt-retrace-client refuses to
	// upload a crash directory whose release is not listed, so a server
	// for ABRT clients should list what its mirror holds.
	SupportedReleases []string `toml:"supported_releases"`

	// Packages answers /checkpackage; nil knows no package (404).
	Packages PackageChecker `toml:"-"`

	// Now is the clock, for timestamps and expiry. Default time.Now.
	Now func() time.Time `toml:"-"`

	// Logger receives the server's own errors. Default slog.Default().
	Logger *slog.Logger `toml:"-"`
}

// Defaults of Config.
const (
	DefaultMaxRunningTasks   = 2
	DefaultMaxQueuedTasks    = 10
	DefaultMaxPackedSize     = 256  // MiB
	DefaultMaxUnpackedSize   = 1024 // MiB
	DefaultMaxFiles          = 16
	DefaultMinFreeSpace      = 1024 // MiB
	DefaultTaskTimeout       = time.Hour
	DefaultUploadTimeout     = 15 * time.Minute
	DefaultMinUploadRate     = 8 // KiB/s
	DefaultUploadRateWindow  = 10 * time.Second
	DefaultDeleteAfter       = 7 * 24 * time.Hour
	DefaultDeleteFailedAfter = 24 * time.Hour
)

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{}.withDefaults()
}

func (c Config) withDefaults() Config {
	if c.MaxRunningTasks <= 0 {
		c.MaxRunningTasks = DefaultMaxRunningTasks
	}
	if c.MaxQueuedTasks <= 0 {
		c.MaxQueuedTasks = DefaultMaxQueuedTasks
	}
	if c.MaxQueuedTasks < c.MaxRunningTasks {
		c.MaxQueuedTasks = c.MaxRunningTasks
	}
	if c.MaxPackedSize <= 0 {
		c.MaxPackedSize = DefaultMaxPackedSize
	}
	if c.MaxUnpackedSize <= 0 {
		c.MaxUnpackedSize = DefaultMaxUnpackedSize
	}
	if c.MaxFiles <= 0 {
		c.MaxFiles = DefaultMaxFiles
	}
	if c.MinFreeSpace == 0 {
		c.MinFreeSpace = DefaultMinFreeSpace
	}
	if c.MinFreeSpace < 0 {
		c.MinFreeSpace = 0
	}
	if c.TaskTimeout <= 0 {
		c.TaskTimeout = DefaultTaskTimeout
	}
	if c.UploadTimeout <= 0 {
		c.UploadTimeout = DefaultUploadTimeout
	}
	if c.MinUploadRate <= 0 {
		c.MinUploadRate = DefaultMinUploadRate
	}
	if c.UploadRateWindow <= 0 {
		c.UploadRateWindow = DefaultUploadRateWindow
	}
	if c.MaxUploads <= 0 {
		c.MaxUploads = 4 * c.MaxQueuedTasks
	}
	if c.DeleteFailedAfter == 0 {
		c.DeleteFailedAfter = DefaultDeleteFailedAfter
	}
	if c.DeleteAfter == 0 {
		c.DeleteAfter = DefaultDeleteAfter
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

const bytesPerMiB = 1 << 20
