package web

import (
	"context"
	"sync"
	"testing"
	"time"
)

// fakeClock is a Clock the test advances.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []fakeWaiter
}

type fakeWaiter struct {
	at time.Time
	ch chan time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) At(t time.Time) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if !t.After(c.now) {
		ch <- c.now
		return ch
	}
	c.waiters = append(c.waiters, fakeWaiter{at: t, ch: ch})
	return ch
}

// advance moves the clock on by d and fires the waits that came due.
func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.waiters[:0]
	for _, w := range c.waiters {
		if w.at.After(c.now) {
			kept = append(kept, w)
			continue
		}
		w.ch <- c.now
	}
	c.waiters = kept
}

// runs counts a job's runs and tells the test of each.
type runs struct {
	mu   sync.Mutex
	n    int
	ran  chan struct{}
	gate chan struct{} // when not nil, each run waits for it
}

func newRuns() *runs { return &runs{ran: make(chan struct{}, 100)} }

func (r *runs) job(ctx context.Context) {
	r.mu.Lock()
	r.n++
	r.mu.Unlock()
	r.ran <- struct{}{}
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
		}
	}
}

func (r *runs) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// await waits for the next run.
func (r *runs) await(t *testing.T, what string) {
	t.Helper()
	select {
	case <-r.ran:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not run", what)
	}
}

// quiet checks that no run comes within a short while.
func (r *runs) quiet(t *testing.T, what string) {
	t.Helper()
	select {
	case <-r.ran:
		t.Fatalf("%s ran when it was not due", what)
	case <-time.After(100 * time.Millisecond):
	}
}

// idle waits until job name's run has returned: a run signals the test
// before it returns, and a clock advanced before then finds it running
// and skips the run that came due.
func idle(t *testing.T, s *Scheduler, name string) {
	t.Helper()
	waitFor(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return !s.jobs[name].running
	})
}

// startScheduler runs s until the test ends, and checks that Run returns
// when its context does.
func startScheduler(t *testing.T, s *Scheduler) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// TestSchedulerRunsJobsWhenDue: by the injected clock, a daily job (gc)
// runs at midnight only, an hourly one (task expiry) each hour, and a
// triggered one at once; Next says when each runs.
func TestSchedulerRunsJobsWhenDue(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 30, 0, 0, time.Local)}
	s := NewScheduler(clock, nil)
	gc, expire := newRuns(), newRuns()
	if err := s.Set("gc", "@daily", gc.job); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("expire tasks", "@every 1h", expire.job); err != nil {
		t.Fatal(err)
	}
	if err := s.Set("bad", "every day", gc.job); err == nil {
		t.Error("Set took a malformed spec")
	}
	if next, ok := s.Next("gc"); !ok || !next.Equal(time.Date(2026, 1, 2, 0, 0, 0, 0, time.Local)) {
		t.Errorf("gc next %v %v, want midnight", next, ok)
	}
	s.Trigger("expire tasks")
	startScheduler(t, s)
	expire.await(t, "the triggered expiry")
	idle(t, s, "expire tasks")

	clock.advance(time.Hour)
	expire.await(t, "the hourly expiry")
	idle(t, s, "expire tasks")
	gc.quiet(t, "gc")
	clock.advance(22 * time.Hour) // 23:30
	expire.await(t, "the expiry at 23:30")
	gc.quiet(t, "gc")
	clock.advance(31 * time.Minute) // 00:01 the next day
	gc.await(t, "the daily gc")
	if next, _ := s.Next("gc"); !next.Equal(time.Date(2026, 1, 3, 0, 0, 0, 0, time.Local)) {
		t.Errorf("gc next after its run: %v", next)
	}
	if n := gc.count(); n != 1 {
		t.Errorf("gc ran %d times in a day, want 1", n)
	}
}

// TestSchedulerSkipsARunningJob: a job still running when it comes due
// again is not started twice; it runs again once it finished.
func TestSchedulerSkipsARunningJob(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)}
	s := NewScheduler(clock, nil)
	slow := newRuns()
	slow.gate = make(chan struct{})
	if err := s.Set("slow", "@every 1m", slow.job); err != nil {
		t.Fatal(err)
	}
	startScheduler(t, s)
	clock.advance(time.Minute)
	slow.await(t, "the first run")
	clock.advance(time.Minute)
	clock.advance(time.Minute)
	slow.quiet(t, "a second run while the first runs")
	slow.gate <- struct{}{}
	idle(t, s, "slow")
	clock.advance(time.Minute)
	slow.await(t, "the run after the first finished")
	if n := slow.count(); n != 2 {
		t.Errorf("%d runs, want 2", n)
	}
}

// TestSchedulerSetAndRemove: a job added while Run waits is picked up; a
// changed spec moves its next time, an unchanged one keeps it; a removed
// job no longer runs.
func TestSchedulerSetAndRemove(t *testing.T) {
	clock := &fakeClock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.Local)}
	s := NewScheduler(clock, nil)
	startScheduler(t, s)
	r := newRuns()
	if err := s.Set("sync a", "@every 10m", r.job); err != nil {
		t.Fatal(err)
	}
	clock.advance(5 * time.Minute)
	if err := s.Set("sync a", "@every 10m", r.job); err != nil {
		t.Fatal(err)
	}
	if next, _ := s.Next("sync a"); !next.Equal(time.Date(2026, 1, 1, 12, 10, 0, 0, time.Local)) {
		t.Errorf("next after the same spec again: %v, want 12:10", next)
	}
	clock.advance(5 * time.Minute)
	r.await(t, "the job added while Run waited")
	if err := s.Set("sync a", "@every 1h", r.job); err != nil {
		t.Fatal(err)
	}
	if next, _ := s.Next("sync a"); !next.Equal(time.Date(2026, 1, 1, 13, 10, 0, 0, time.Local)) {
		t.Errorf("next after a new spec: %v, want 13:10", next)
	}
	if jobs := s.Jobs(); len(jobs) != 1 {
		t.Errorf("jobs %v", jobs)
	}
	s.Remove("sync a")
	clock.advance(2 * time.Hour)
	r.quiet(t, "the removed job")
	if _, ok := s.Next("sync a"); ok {
		t.Error("Next knows a removed job")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
	}
}
