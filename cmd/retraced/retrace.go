package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"
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
			if r != nil {
				// A server's retrace service takes crash directories over
				// its task protocol; this command is the local path.
				return fmt.Errorf("%w (%s)", errServing, r.base)
			}
			defer s.Close()
			log := io.Discard
			if verbose {
				log = cmd.ErrOrStderr()
			}
			w, err := openWorker(s, cfg, slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
			if err != nil {
				return err
			}
			defer w.Close()
			var logBuf logTail
			bt, err := w.RetraceCore(cmd.Context(), args[0], exe, io.MultiWriter(log, &logBuf))
			if err != nil {
				if !verbose {
					fmt.Fprint(cmd.ErrOrStderr(), logBuf.String())
				}
				return err
			}
			_, err = io.WriteString(cmd.OutOrStdout(), bt)
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

var errServing = errors.New("the data directory is held by a running server; submit the core with retrace-client batch -c CORE --url")
