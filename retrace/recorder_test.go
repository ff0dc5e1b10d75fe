package retrace

import (
	"context"
	"errors"
	"io"
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
}

func (l *listRecorder) RecordCrash(_ context.Context, c FinishedCrash) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		return errors.New("crash store down")
	}
	l.got = append(l.got, c)
	return nil
}

func (l *listRecorder) recorded() []FinishedCrash {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]FinishedCrash(nil), l.got...)
}

// TestRecorderAfterRestart: a finished task is told to the Recorder with
// its package, signal and backtrace, once; a task the Recorder failed to
// take is told again by the next server, and not a third time.
func TestRecorderAfterRestart(t *testing.T) {
	rec := &listRecorder{failing: true}
	cfg := testConfig()
	cfg.Recorder = rec
	ts := newTestServer(t, &crashRetracer{}, cfg)
	id, pw := ts.create(t, "application/x-tar", crashTar(t))
	ts.waitStatus(t, id, pw, StatusSuccess)
	if got := rec.recorded(); len(got) != 0 {
		t.Fatalf("recorded while failing: %v", got)
	}
	ts.stop()
	rec.failing = false
	startServer(t, ts.dir, &crashRetracer{}, cfg).stop()
	got := rec.recorded()
	if len(got) != 1 || got[0].TaskID != id || got[0].Package != "crashme-1.0-1.x86_64" || got[0].Signal != 11 ||
		got[0].Backtrace == "" || got[0].Finished.IsZero() {
		t.Fatalf("recorded after the restart: %+v", got)
	}
	startServer(t, ts.dir, &crashRetracer{}, cfg).stop()
	if n := len(rec.recorded()); n != 1 {
		t.Errorf("recorded %d times after a second restart", n)
	}
	ts2 := startServer(t, ts.dir, &crashRetracer{}, cfg)
	id2, pw2 := ts2.create(t, "application/x-tar", crashTar(t))
	ts2.waitStatus(t, id2, pw2, StatusSuccess)
	waitUntil(t, "the second task recorded", func() bool { return len(rec.recorded()) == 2 })
}
