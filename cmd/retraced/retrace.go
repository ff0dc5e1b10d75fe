package main

import (
	"fmt"
	"io"

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
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			// With -v the log goes to stderr as it comes; without, only
			// its tail, when the retrace fails.
			var tail logTail
			log := io.Writer(&tail)
			if verbose {
				log = cmd.ErrOrStderr()
			}
			res, err := b.Retrace(cmd.Context(), args[0], exe, log)
			if err != nil {
				if !verbose {
					fmt.Fprint(cmd.ErrOrStderr(), tail.String())
				}
				// An unusable backtrace is still shown: it is all there is.
				if res.Backtrace != "" {
					fmt.Fprint(cmd.OutOrStdout(), res.Backtrace)
				}
				return err
			}
			if !verbose {
				// The log (with -v) says these already; through a
				// server, only the log has them.
				if res.Rating != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "Backtrace rating: %s\n", res.Rating)
				}
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
