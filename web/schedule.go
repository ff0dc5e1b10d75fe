package web

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// Clock is the scheduler's time. Tests pass one they advance by hand.
type Clock interface {
	Now() time.Time
	// At returns a channel that receives once the clock reaches t (at
	// once when it has).
	At(t time.Time) <-chan time.Time
}

// SystemClock is the wall clock.
var SystemClock Clock = systemClock{}

type systemClock struct{}

func (systemClock) Now() time.Time                  { return time.Now() }
func (systemClock) At(t time.Time) <-chan time.Time { return time.After(time.Until(t)) }

// Scheduler runs serve's timed work on cron schedules: each source's
// syncs (Ops keeps one job per source), gc and the expiry of retrace
// tasks. A job runs in its own goroutine, one run at a time: a run that
// comes due while the last one still runs is skipped.
//
// Specs are robfig/cron's standard ones: five fields, or a descriptor
// such as @daily or "@every 1h".
type Scheduler struct {
	clock Clock
	log   *slog.Logger
	wake  chan struct{}

	mu   sync.Mutex
	jobs map[string]*job
}

type job struct {
	spec     string
	schedule cron.Schedule
	next     time.Time
	run      func(context.Context)
	running  bool
}

// NewScheduler returns a scheduler on clock (SystemClock when nil); it
// starts nothing until Run.
func NewScheduler(clock Clock, log *slog.Logger) *Scheduler {
	if clock == nil {
		clock = SystemClock
	}
	if log == nil {
		log = slog.Default()
	}
	return &Scheduler{clock: clock, log: log, wake: make(chan struct{}, 1), jobs: map[string]*job{}}
}

// Set schedules run as job name on spec. A job of that name is replaced;
// its next time is kept when its spec did not change. It fails, changing
// nothing, when spec does not parse; the error is the parser's.
func (s *Scheduler) Set(name, spec string, run func(ctx context.Context)) error {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	j := s.jobs[name]
	if j == nil {
		j = &job{}
		s.jobs[name] = j
	}
	if j.spec != spec {
		j.spec, j.schedule, j.next = spec, sched, sched.Next(s.clock.Now())
	}
	j.run = run
	s.mu.Unlock()
	s.signal()
	return nil
}

// Trigger makes job name due now (no-op for an unknown name).
func (s *Scheduler) Trigger(name string) {
	s.mu.Lock()
	if j := s.jobs[name]; j != nil {
		j.next = s.clock.Now()
	}
	s.mu.Unlock()
	s.signal()
}

// Remove drops job name; a run under way finishes.
func (s *Scheduler) Remove(name string) {
	s.mu.Lock()
	delete(s.jobs, name)
	s.mu.Unlock()
	s.signal()
}

// Next returns when job name runs next.
func (s *Scheduler) Next(name string) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	j := s.jobs[name]
	if j == nil {
		return time.Time{}, false
	}
	return j.next, true
}

// Jobs returns each job's name and when it runs next.
func (s *Scheduler) Jobs() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.jobs))
	for name, j := range s.jobs {
		out[name] = j.next
	}
	return out
}

func (s *Scheduler) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Run runs the jobs as they come due until ctx ends, then waits for the
// runs under way (which get ctx). Run must be called at most once.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		now := s.clock.Now()
		var next time.Time
		s.mu.Lock()
		for name, j := range s.jobs {
			if j.next.IsZero() {
				continue // a spec with no time left
			}
			if !j.next.After(now) {
				if j.running {
					s.log.Warn("schedule: still running; this run is skipped", "job", name)
				} else {
					j.running = true
					wg.Add(1)
					go s.runJob(ctx, name, j, j.run, &wg)
				}
				j.next = j.schedule.Next(now)
			}
			if !j.next.IsZero() && (next.IsZero() || j.next.Before(next)) {
				next = j.next
			}
		}
		s.mu.Unlock()
		var due <-chan time.Time
		if !next.IsZero() {
			due = s.clock.At(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-due:
		case <-s.wake:
		}
	}
}

// runJob runs j (whose run function is run) once.
func (s *Scheduler) runJob(ctx context.Context, name string, j *job, run func(context.Context), wg *sync.WaitGroup) {
	defer wg.Done()
	defer func() {
		s.mu.Lock()
		j.running = false
		s.mu.Unlock()
	}()
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("schedule: job panicked", "job", name, "panic", p)
		}
	}()
	run(ctx)
}
