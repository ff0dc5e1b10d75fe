package main

import (
	"context"
	"path/filepath"
	"time"

	"github.com/retraced/retraced/retrace"
	"github.com/retraced/retraced/retrace/crashes"
)

// openCrashes opens the crash store, a Badger database of its own in
// DATA/crashes, with cfg's crash_retention.
func openCrashes(dir string, cfg Config) (*crashes.Store, error) {
	be, err := crashes.OpenBadger(filepath.Join(dir, "crashes"))
	if err != nil {
		return nil, err
	}
	cs, err := crashes.New(be, crashes.Options{Retention: cfg.CrashRetention.Duration, TaskTTL: cfg.TaskTTL.Duration})
	if err != nil {
		be.Close()
		return nil, err
	}
	return cs, nil
}

// recordLocal records a retrace that ran here, not as a task (`retraced
// retrace` without a server), when it gave a usable backtrace.
func recordLocal(ctx context.Context, dir string, cfg Config, res retrace.Result) error {
	if res.Package == "" || res.Backtrace == "" {
		return nil
	}
	cs, err := openCrashes(dir, cfg)
	if err != nil {
		return err
	}
	err = cs.RecordCrashes(ctx, []retrace.FinishedCrash{{Finished: time.Now(), Package: res.Package, Signal: res.Signal, Backtrace: res.Backtrace}})
	if cerr := cs.Close(); err == nil {
		err = cerr
	}
	return err
}
