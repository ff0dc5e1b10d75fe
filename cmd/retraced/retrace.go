package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/retraced/retraced/retrace/taskclient"
)

func retraceCmd(g *globals) *cobra.Command {
	var exe string
	var verbose bool
	c := &cobra.Command{
		Use:   "retrace CORE",
		Short: "Retrace a core file locally from the mirror and print the backtrace",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load(cmd)
			if err != nil {
				return err
			}
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			log := io.Discard
			if verbose {
				log = cmd.ErrOrStderr()
			}
			if r != nil {
				// The server holds the mirror: it retraces through its
				// task protocol, on its own worker.
				return retraceRemote(cmd.Context(), r, args[0], exe, log, cmd.OutOrStdout(), cmd.ErrOrStderr())
			}
			defer s.Close()
			w, err := openWorker(s, cfg)
			if err != nil {
				return err
			}
			defer w.Close()
			var logBuf logTail
			res, err := w.RetraceCore(cmd.Context(), args[0], exe, io.MultiWriter(log, &logBuf))
			if err != nil {
				if !verbose {
					fmt.Fprint(cmd.ErrOrStderr(), logBuf.String())
				}
				// An unusable backtrace is still shown: it is all there is.
				if res.Backtrace != "" {
					fmt.Fprint(cmd.OutOrStdout(), res.Backtrace)
				}
				return err
			}
			if !verbose {
				// The log (with -v) says these already.
				fmt.Fprintf(cmd.ErrOrStderr(), "Backtrace rating: %s\n", res.Rating)
				for _, m := range res.Missing {
					fmt.Fprintf(cmd.ErrOrStderr(), "Missing: %s\n", m)
				}
			}
			_, err = io.WriteString(cmd.OutOrStdout(), res.Backtrace)
			return err
		},
	}
	c.Flags().StringVar(&exe, "executable", "", "path of the crashing executable, when the core does not name it")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the retrace log (steps, times, unresolved build-ids) to stderr")
	return c
}

// logTail keeps the last 64 KiB of a log, to show when a retrace fails.
type logTail struct{ b []byte }

func (l *logTail) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 64<<10 {
		l.b = l.b[len(l.b)-64<<10:]
	}
	return len(p), nil
}

func (l *logTail) String() string { return string(l.b) }

// Polls of a task the server retraces: the first after 50 ms, then twice
// as long each time, up to a second.
const (
	firstTaskPoll = 50 * time.Millisecond
	maxTaskPoll   = time.Second
)

// retraceRemote sends the core to the server holding the data directory as
// a retrace task (a plain tar: the server is on this machine), waits for
// it, prints the backtrace to out, and deletes the task. On failure the
// task's log goes to errOut; with -v it always goes to log.
func retraceRemote(ctx context.Context, r *remote, core, exe string, log, out, errOut io.Writer) (err error) {
	dir, cleanup, err := taskclient.CoreCrashDir(core)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	if exe != "" {
		if err := os.WriteFile(filepath.Join(dir, "executable"), []byte(exe), 0o644); err != nil {
			return err
		}
	}
	cd, err := taskclient.OpenCrashDir(dir)
	if err != nil {
		return err
	}
	c, err := taskclient.New(r.base, false, nil)
	if err != nil {
		return err
	}
	pr, pw := io.Pipe()
	packed := make(chan struct{})
	go func() {
		defer close(packed)
		pw.CloseWithError(cd.PackTar(pw))
	}()
	id, password, err := c.Create(ctx, pr, "application/x-tar", -1)
	pr.Close() // stops the packer if the server stopped reading
	<-packed   // before the crash directory is removed
	if err != nil {
		return fmt.Errorf("retrace through the server at %s: %w", r.base, err)
	}
	defer func() {
		if derr := c.Delete(context.WithoutCancel(ctx), id, password); derr != nil {
			fmt.Fprintf(errOut, "retraced: delete task %s: %v\n", id, derr)
		}
	}()
	fmt.Fprintf(log, "task %s on %s\n", id, r.base)
	status := ""
	for wait := firstTaskPoll; !strings.HasPrefix(status, "FINISHED"); wait = min(2*wait, maxTaskPoll) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if status, _, err = c.Status(ctx, id, password); err != nil {
			return err
		}
	}
	taskLog, err := c.Result(ctx, id, password, "log")
	if err != nil {
		return err
	}
	io.WriteString(log, taskLog)
	if status != "FINISHED_SUCCESS" {
		if log == io.Discard {
			io.WriteString(errOut, taskLog)
		}
		return fmt.Errorf("retrace task %s: %s", id, status)
	}
	bt, err := c.Result(ctx, id, password, "backtrace")
	if err != nil {
		return err
	}
	_, err = io.WriteString(out, bt)
	return err
}
