package main

import (
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/pelletier/go-toml/v2"
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
	// system, below which syncs pause and new retrace tasks get 507.
	MinFree float64 `toml:"min_free"`
	// MemoryLimitMB is serve's soft Go heap limit (GOMEMLIMIT wins).
	MemoryLimitMB int64 `toml:"memory_limit_mb"`
	// TaskTTL is how long gc keeps a finished retrace task, and
	// FailedTaskTTL a failed one when that is sooner (Go durations such
	// as "168h").
	TaskTTL       string       `toml:"task_ttl"`
	FailedTaskTTL string       `toml:"failed_task_ttl"`
	Mirror        MirrorConfig `toml:"mirror"`
}

// retention returns TaskTTL and FailedTaskTTL, which loadConfig checked.
func (c Config) retention() (keep, failed time.Duration) {
	keep, _ = time.ParseDuration(c.TaskTTL)
	failed, _ = time.ParseDuration(c.FailedTaskTTL)
	return keep, failed
}

// MirrorConfig is the [mirror] table.
type MirrorConfig struct {
	Workers int      `toml:"workers"`
	Keep    []string `toml:"keep"`
	Drop    []string `toml:"drop"`
	// Compression is how a sync compresses stored files: s2 (fastest,
	// largest), or zstd at fastest, default, better or best. Compaction
	// recompresses them with zstd -19 either way.
	Compression string `toml:"compression"`
	// Fsync makes every stored file durable before it is indexed.
	Fsync *bool `toml:"fsync"`
}

func defaultConfig() Config {
	return Config{
		Data:          "./retraced-data",
		Listen:        "127.0.0.1:8080",
		GCSchedule:    "@daily",
		MinFree:       10,
		MemoryLimitMB: 200,
		TaskTTL:       "168h",
		FailedTaskTTL: "24h",
		Mirror:        MirrorConfig{Workers: runtime.NumCPU() + 1, Compression: "s2"},
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
		return c, fmt.Errorf("config %s: %w", path, err)
	}
	for _, v := range []struct{ key, val string }{{"task_ttl", c.TaskTTL}, {"failed_task_ttl", c.FailedTaskTTL}} {
		if d, err := time.ParseDuration(v.val); err != nil || d <= 0 {
			return c, fmt.Errorf("config %s: %s = %q: want a positive duration such as \"168h\"", path, v.key, v.val)
		}
	}
	return c, nil
}
