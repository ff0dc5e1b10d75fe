package retrace

import (
	"strings"
	"testing"
	"time"
)

// TestEstimator: the retrace is the medians of cached and assembled
// sysroots weighted by the hit rate; the wait is that per round of tasks
// ahead and running per worker.
func TestEstimator(t *testing.T) {
	var e estimator
	if _, ok := e.estimate(0, 0, 2); ok {
		t.Fatal("an estimate without samples")
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, took := range []time.Duration{time.Second, 900 * time.Millisecond, 1100 * time.Millisecond, 4 * time.Second} {
		e.add(sample{finished: t0.Add(time.Duration(i) * time.Minute), took: took, stats: RetraceStats{Packages: 6, SysrootReused: i < 3}})
	}
	est, ok := e.estimate(3, 1, 2)
	if !ok || est.Retrace != 1750*time.Millisecond || est.Wait != 3500*time.Millisecond || est.Samples != 4 {
		t.Fatalf("estimate %+v", est)
	}
	want := "Estimated duration: about 5.2 s (3.5 s waiting, 1.8 s retracing); from the last 4 finished tasks: 75% reused a cached sysroot, median 1.0 s; assembling one, median 4.0 s"
	if est.String() != want {
		t.Errorf("%q\nwant %q", est.String(), want)
	}
	for i := range 2 * estimateSamples {
		e.add(sample{finished: t0.Add(time.Hour + time.Duration(i)*time.Second), took: 2 * time.Second, stats: RetraceStats{SysrootReused: true}})
	}
	if est, _ := e.estimate(0, 0, 1); est.Samples != estimateSamples || est.Retrace != 2*time.Second {
		t.Errorf("after many: %+v", est)
	}
}

// TestStatusEstimate: once tasks have finished (kept across a restart),
// a pending task's status body says its estimated duration with the
// wait, a running one without.
func TestStatusEstimate(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRunningTasks = 1
	ts := newTestServer(t, &crashRetracer{}, cfg)
	for range 2 {
		id, pw := ts.create(t, "application/x-tar", crashTar(t))
		ts.waitStatus(t, id, pw, StatusSuccess)
	}
	ts.stop()
	held := &crashRetracer{elfRetracer{gate: make(chan struct{})}}
	ts = startServer(t, ts.dir, held, cfg)
	defer close(held.gate)
	running, rpw := ts.create(t, "application/x-tar", crashTar(t))
	waitUntil(t, "the first task running", func() bool { return held.started.Load() == 1 })
	pending, ppw := ts.create(t, "application/x-tar", crashTar(t))
	_, body := ts.do(t, "GET", "/"+pending, ppw)
	if !strings.HasPrefix(body, stepQueued+"\nEstimated duration: about ") || !strings.Contains(body, " waiting, ") ||
		!strings.Contains(body, "from the last 2 finished tasks: 100% reused a cached sysroot") {
		t.Errorf("pending task's status:\n%s", body)
	}
	_, body = ts.do(t, "GET", "/"+running, rpw)
	if !strings.HasPrefix(body, stepRetracing+"\nEstimated duration: about ") || strings.Contains(body, "waiting") {
		t.Errorf("running task's status:\n%s", body)
	}
}
