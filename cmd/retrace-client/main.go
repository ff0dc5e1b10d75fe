// Command retrace-client sends crashes to a retrace server — `retraced
// serve`, or Fedora's Retrace Server — and fetches their backtraces. It
// takes the operations, options and environment of ABRT's
// abrt-retrace-client and prints what it prints:
//
//	retrace-client create -d CRASHDIR | -c COREFILE
//	retrace-client status|log|backtrace -t ID -p PASSWORD
//	retrace-client batch -d CRASHDIR | -c COREFILE
//
// It also collects: watch keeps a spool of cores (written there by the
// kernel's core_pattern, or by core-handler for a piped core_pattern),
// sends each to a server and keeps its backtrace, surviving a kill at any
// point (see spool.go); list and retry show and requeue its items:
//
//	retrace-client watch --spool DIR [--url URL] [--config FILE]
//	retrace-client core-handler --spool DIR %e %p %t < core
//	retrace-client list|retry ID --spool DIR
//
// Where it differs: the archive is streamed as it is packed (no temporary
// file, so no Content-Length and no upload percentage); create does not
// refuse up front when every worker is busy, since retraced queues tasks
// (a full queue answers 503); batch prints its progress on stderr and the
// backtrace on stdout, also for -d (abrt-retrace-client saves it into the
// crash directory instead).
//
// Of retraced, it may import only retrace/taskclient and index/elfnote:
// the task protocol's client, and the checked ELF reader for the cores
// the watcher looks at.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRoot().ExecuteContext(ctx)
	stop()
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "retrace-client:", err)
		os.Exit(1)
	}
}

// exitCode ends the process with a status and no further message (the
// command already printed what went wrong).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }
