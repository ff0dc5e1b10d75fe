package retrace

import (
	"errors"
	"os"
	"sync"
)

// taskLog is a task's log file as the Retracer and the worker write it:
// appended, safe for concurrent use, and deaf once closed, so that a
// Retracer abandoned after its timeout cannot write into a finished log.
type taskLog struct {
	now    func() string
	mu     sync.Mutex
	f      *os.File
	closed bool
	err    error // the first failed write
}

const logTimeFormat = "2006-01-02 15:04:05"

func (s *Server) openLog(path string) (*taskLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	return &taskLog{f: f, now: func() string { return s.cfg.Now().UTC().Format(logTimeFormat) }}, nil
}

// appendLog adds one line to a task's log.
func (s *Server) appendLog(t task, msg string) {
	lw, err := s.openLog(t.path(logFile))
	if err != nil {
		s.log.Error("retrace: task log", "task", t.id, "err", err)
		return
	}
	lw.line(msg)
	if err := lw.Close(); err != nil {
		s.log.Error("retrace: task log", "task", t.id, "err", err)
	}
}

var errLogClosed = errors.New("task log closed")

func (l *taskLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, errLogClosed
	}
	return l.f.Write(p)
}

// line writes msg with a timestamp. A failed write does not stop the
// task (the log is for people; the outcome is recorded in task.json):
// Close reports it.
func (l *taskLog) line(msg string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	if _, err := l.f.WriteString(l.now() + " " + msg + "\n"); err != nil && l.err == nil {
		l.err = err
	}
}

func (l *taskLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	l.closed = true
	return errors.Join(l.err, l.f.Close())
}
