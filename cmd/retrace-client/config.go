package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// defaultSpool is where watch, core-handler, list and retry keep cores.
const defaultSpool = "/var/spool/retrace-client"

// watchConfig is the --config file of watch and core-handler (TOML):
//
//	url = "https://retrace.example.org"   # the default server (--url wins)
//	settle = "250ms"      # an ELF core as long as its program headers
//	                      # say is taken once unwritten this long
//	settle_other = "2s"   # any other file once unwritten this long (an
//	                      # ELF core still short waits, up to 10 minutes)
//
//	[dump]
//	quota = 10            # percent of the spool's file system kept free:
//	                      # below it, new cores are refused
//	max_size = 4294967296 # bytes core-handler takes of a core
//
//	[purge]
//	age = "720h"          # finished items are deleted after this
//
//	[submit]
//	attempts = 10         # failed submissions before an item fails
//	backoff = "5s"        # the first wait after a failure, doubling
//	max_backoff = "30m"
//
//	[[route]]             # first match of the executable wins
//	executable = "^/usr/bin/firefox$"
//	url = "https://retrace.mozilla.example"
type watchConfig struct {
	URL         string   `toml:"url"`
	Settle      duration `toml:"settle"`
	SettleOther duration `toml:"settle_other"`
	Dump        struct {
		Quota   float64 `toml:"quota"`
		MaxSize int64   `toml:"max_size"`
	} `toml:"dump"`
	Purge struct {
		Age duration `toml:"age"`
	} `toml:"purge"`
	Submit struct {
		Attempts   int      `toml:"attempts"`
		Backoff    duration `toml:"backoff"`
		MaxBackoff duration `toml:"max_backoff"`
	} `toml:"submit"`
	Routes []route `toml:"route"`
}

// route sends the cores of matching executables to a server.
type route struct {
	Executable string `toml:"executable"`
	URL        string `toml:"url"`
	re         *regexp.Regexp
}

// duration is a Go duration in the file ("2s", "720h").
type duration struct{ time.Duration }

func (d *duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("want a duration such as \"30s\": %w", err)
	}
	d.Duration = v
	return nil
}

func defaultWatchConfig() *watchConfig {
	c := &watchConfig{}
	// The kernel writes a core's program headers first and its end last:
	// a core as long as they say is whole, and a short quiet time is
	// enough (issue 14: a backtrace within 2 s of the crash).
	c.Settle.Duration = 250 * time.Millisecond
	c.SettleOther.Duration = 2 * time.Second
	c.Dump.Quota = 10
	c.Dump.MaxSize = 4 << 30
	c.Purge.Age.Duration = 30 * 24 * time.Hour
	c.Submit.Attempts = 10
	c.Submit.Backoff.Duration = 5 * time.Second
	c.Submit.MaxBackoff.Duration = 30 * time.Minute
	return c
}

// loadWatchConfig reads path over the defaults; "" is the defaults.
func loadWatchConfig(path string) (*watchConfig, error) {
	c := defaultWatchConfig()
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		d := toml.NewDecoder(bytes.NewReader(b))
		d.DisallowUnknownFields()
		if err := d.Decode(c); err != nil {
			return nil, fmt.Errorf("config %s: %w", path, err)
		}
	}
	switch {
	case c.Dump.Quota < 0 || c.Dump.Quota >= 100:
		return nil, fmt.Errorf("config: dump.quota = %v: want a percentage in [0, 100)", c.Dump.Quota)
	case c.Dump.MaxSize <= 0:
		return nil, fmt.Errorf("config: dump.max_size = %d: want a positive number of bytes", c.Dump.MaxSize)
	case c.Settle.Duration <= 0 || c.SettleOther.Duration <= 0 || c.Purge.Age.Duration <= 0 || c.Submit.Backoff.Duration <= 0 || c.Submit.MaxBackoff.Duration <= 0:
		return nil, errors.New("config: settle, settle_other, purge.age, submit.backoff and submit.max_backoff must be positive")
	case c.Submit.Attempts <= 0:
		return nil, fmt.Errorf("config: submit.attempts = %d: want at least 1", c.Submit.Attempts)
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		re, err := regexp.Compile(r.Executable)
		if err != nil {
			return nil, fmt.Errorf("config: route %d: executable: %w", i+1, err)
		}
		if r.URL == "" {
			return nil, fmt.Errorf("config: route %d: no url", i+1)
		}
		r.re = re
	}
	return c, nil
}

// serverFor returns the URL of the first route matching the executable,
// else def.
func (c *watchConfig) serverFor(executable, def string) string {
	for _, r := range c.Routes {
		if r.re.MatchString(executable) {
			return r.URL
		}
	}
	return def
}
