package worker

import (
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// stepLog writes a retrace's steps to its log: a timestamp as the task
// log writes it, the time since the retrace began, and what happened.
type stepLog struct {
	w    io.Writer
	now  func() time.Time
	mono time.Time
	// hidden are absolute paths shown by a name instead, longest first.
	hidden []hiddenPath
}

type hiddenPath struct{ path, name string }

// hide makes the log and the errors it fails with say name for the
// directory dir (and what is below it).
func (l *stepLog) hide(dir, name string) {
	if abs, err := filepath.Abs(dir); err == nil && abs != "/" {
		l.hidden = append(l.hidden, hiddenPath{abs, name})
		slices.SortFunc(l.hidden, func(a, b hiddenPath) int { return len(b.path) - len(a.path) })
	}
}

func (l *stepLog) scrub(s string) string {
	for _, h := range l.hidden {
		s = strings.ReplaceAll(s, h.path, h.name)
	}
	return s
}

// scrubbedError is an error whose message hides the log's paths; it
// still unwraps to the original.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }

func (e *scrubbedError) Unwrap() error { return e.err }

func (w *Worker) newStepLog(log io.Writer) *stepLog {
	if log == nil {
		log = io.Discard
	}
	return &stepLog{w: log, now: w.cfg.Now, mono: time.Now()}
}

// printf writes one line. A log that fails to write does not stop the
// retrace: the log is for people, the outcome is the return value.
func (l *stepLog) printf(format string, args ...any) {
	msg := l.scrub(fmt.Sprintf(format, args...))
	msg = strings.ReplaceAll(msg, "\n", " ")
	fmt.Fprintf(l.w, "%s +%.3fs %s\n", l.now().UTC().Format("2006-01-02 15:04:05"), time.Since(l.mono).Seconds(), msg)
}

// fail logs err and returns it, its message without the hidden paths.
func (l *stepLog) fail(err error) error {
	l.printf("failed: %v", err)
	if msg := l.scrub(err.Error()); msg != err.Error() {
		return &scrubbedError{msg, err}
	}
	return err
}
