package retrace

import (
	"context"
	"errors"
	"io"
	"slices"
	"sync"
	"testing"
)

// crashRetracer is elfRetracer with the crash package and signal a
// worker reports.
type crashRetracer struct{ elfRetracer }

func (r *crashRetracer) Retrace(ctx context.Context, crashDir string, log io.Writer) (Result, error) {
	res, err := r.elfRetracer.Retrace(ctx, crashDir, log)
	res.Package, res.Signal = "crashme-1.0-1.x86_64", 11
	res.Stats = RetraceStats{Packages: 3, SysrootReused: true}
	return res, err
}

// listRecorder keeps what it is told; while failing is set it fails.
type listRecorder struct {
	mu      sync.Mutex
	failing bool
	got     []FinishedCrash
	calls   int
}

func (l *listRecorder) RecordCrashes(_ context.Context, cs []FinishedCrash) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		return errors.New("crash store down")
	}
	l.got = append(l.got, cs...)
	l.calls++
	return nil
}

func (l *listRecorder) recorded() []FinishedCrash {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]FinishedCrash(nil), l.got...)
}

// TestRecorderAfterRestart: a finished task is told to the Recorder with
// its package, signal and backtrace, once; tasks the Recorder failed to
// take are told again by the next server, all in one call, and not a
// third time.
func TestRecorderAfterRestart(t *testing.T) {
	rec := &listRecorder{failing: true}
	cfg := testConfig()
	cfg.Recorder = rec
	ts := newTestServer(t, &crashRetracer{}, cfg)
	id, pw := ts.create(t, "application/x-tar", crashTar(t))
	ts.waitStatus(t, id, pw, StatusSuccess)
	for range 2 {
		id, pw := ts.create(t, "application/x-tar", crashTar(t))
		ts.waitStatus(t, id, pw, StatusSuccess)
	}
	if got := rec.recorded(); len(got) != 0 {
		t.Fatalf("recorded while failing: %v", got)
	}
	ts.stop()
	rec.failing = false
	startServer(t, ts.dir, &crashRetracer{}, cfg).stop()
	got := rec.recorded()
	i := slices.IndexFunc(got, func(c FinishedCrash) bool { return c.TaskID == id })
	if len(got) != 3 || i < 0 || got[i].Package != "crashme-1.0-1.x86_64" || got[i].Signal != 11 ||
		got[i].Backtrace == "" || got[i].Finished.IsZero() {
		t.Fatalf("recorded after the restart: %+v", got)
	}
	if rec.calls != 1 {
		t.Errorf("the backlog of 3 took %d calls of the Recorder, want one", rec.calls)
	}
	startServer(t, ts.dir, &crashRetracer{}, cfg).stop()
	if n := len(rec.recorded()); n != 3 {
		t.Errorf("recorded %d times after a second restart, want the 3 once", n)
	}
	ts2 := startServer(t, ts.dir, &crashRetracer{}, cfg)
	id2, pw2 := ts2.create(t, "application/x-tar", crashTar(t))
	ts2.waitStatus(t, id2, pw2, StatusSuccess)
	waitUntil(t, "the new task recorded", func() bool { return len(rec.recorded()) == 4 })
}
