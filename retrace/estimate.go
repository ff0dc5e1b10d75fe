package retrace

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// estimateSamples is how many of the last successful tasks the duration
// estimate is made of.
const estimateSamples = 100

// sample is one finished task's retrace: how long it ran and its work.
type sample struct {
	finished time.Time
	took     time.Duration
	stats    RetraceStats
}

// estimator estimates task durations from the last successful tasks, as
// Retrace Server plans to: a pending task's packages and sysroot are not
// known before its retrace resolves its core, so its retrace is estimated
// as the median of the finished tasks with a cached sysroot and of those
// that assembled one, weighted by how often the cache was hit; its wait
// from the tasks ahead of it and the workers.
type estimator struct {
	mu      sync.Mutex
	samples []sample // oldest first, at most estimateSamples
}

func (e *estimator) add(s sample) {
	if s.took <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	i, _ := slices.BinarySearchFunc(e.samples, s.finished, func(a sample, t time.Time) int { return a.finished.Compare(t) })
	e.samples = slices.Insert(e.samples, i, s)
	if len(e.samples) > estimateSamples {
		e.samples = e.samples[len(e.samples)-estimateSamples:]
	}
}

// Estimate is a task's expected duration.
type Estimate struct {
	Wait, Retrace time.Duration
	// Hit is the share of the samples that reused a cached sysroot;
	// Samples how many there are.
	Hit     float64
	Samples int
	// CachedMedian and BuildMedian are the medians of the retraces that
	// reused a sysroot and of those that assembled one (0: none).
	CachedMedian, BuildMedian time.Duration
}

// retrace estimates one retrace; false without samples.
func (e *estimator) retrace() (Estimate, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.samples) == 0 {
		return Estimate{}, false
	}
	var hit, miss []time.Duration
	for _, s := range e.samples {
		if s.stats.SysrootReused {
			hit = append(hit, s.took)
		} else {
			miss = append(miss, s.took)
		}
	}
	est := Estimate{Samples: len(e.samples), Hit: float64(len(hit)) / float64(len(e.samples)),
		CachedMedian: median(hit), BuildMedian: median(miss)}
	est.Retrace = time.Duration(est.Hit*float64(est.CachedMedian) + (1-est.Hit)*float64(est.BuildMedian))
	return est, true
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// estimate is the duration of a task with ahead tasks pending before it,
// running tasks running and workers workers: it waits for a worker as
// many rounds of retraces as there are tasks ahead of it and running per
// worker, then retraces.
func (e *estimator) estimate(ahead, running, workers int) (Estimate, bool) {
	est, ok := e.retrace()
	if !ok {
		return est, false
	}
	if workers < 1 {
		workers = 1
	}
	rounds := (ahead + running) / workers
	est.Wait = time.Duration(rounds) * est.Retrace
	return est, true
}

// String says the estimate as the status body's line.
func (est Estimate) String() string {
	s := "Estimated duration: about " + roundDuration(est.Wait+est.Retrace)
	if est.Wait > 0 {
		s += fmt.Sprintf(" (%s waiting, %s retracing)", roundDuration(est.Wait), roundDuration(est.Retrace))
	}
	s += fmt.Sprintf("; from the last %d finished tasks: %.0f%% reused a cached sysroot", est.Samples, 100*est.Hit)
	if est.CachedMedian > 0 {
		s += ", median " + roundDuration(est.CachedMedian)
	}
	if est.BuildMedian > 0 {
		s += "; assembling one, median " + roundDuration(est.BuildMedian)
	}
	return s
}

// roundDuration writes d for people: "0.4 s", "12 s", "3 min".
func roundDuration(d time.Duration) string {
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d < 2*time.Minute:
		return fmt.Sprintf("%.0f s", d.Seconds())
	}
	return fmt.Sprintf("%.0f min", d.Minutes())
}
