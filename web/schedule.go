package web

import (
	"log/slog"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// scheduler keeps one cron entry per source, following the sources'
// schedules as they are added, changed and removed.
type scheduler struct {
	mu      sync.Mutex
	cron    *cron.Cron
	entries map[string]cron.EntryID
	specs   map[string]string
}

func newScheduler() *scheduler {
	return &scheduler{cron: cron.New(), entries: map[string]cron.EntryID{}, specs: map[string]string{}}
}

// sync makes the entries match want (source name -> spec); run is called
// with a source's name when its time comes.
func (s *scheduler) sync(want map[string]string, run func(name string), log *slog.Logger) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, id := range s.entries {
		if spec, ok := want[name]; !ok || spec != s.specs[name] {
			s.cron.Remove(id)
			delete(s.entries, name)
			delete(s.specs, name)
		}
	}
	for name, spec := range want {
		if _, ok := s.entries[name]; ok {
			continue
		}
		id, err := s.cron.AddFunc(spec, func() { run(name) })
		if err != nil {
			log.Error("schedule", "source", name, "spec", spec, "err", err)
			continue
		}
		s.entries[name], s.specs[name] = id, spec
	}
}

// next returns when each source syncs next.
func (s *scheduler) next() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]time.Time, len(s.entries))
	for name, id := range s.entries {
		out[name] = s.cron.Entry(id).Next
	}
	return out
}
