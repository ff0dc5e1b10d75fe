// Command retraced mirrors RPM repositories, indexes every ELF build-id to
// the package that ships it, and answers lookups. See docs/spec.md for the
// commands and README.md for a first run.
//
// Of retraced, it may import only fixtures/bundled, gc, gc/diskspace, index/blob/s3blob,
// index, index/blob, internal/httpbound, internal/throttle, mirror, mirror/rpmfile,
// resolver, resolver/federate, retrace, retrace/crashes, retrace/taskclient, retrace/taskdb, retrace/worker and web. It wires them into one
// service; package fixtures is not among them, since the binary must not
// link test code (TestNoTestCodeLinked).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	stopProfile := startProfile(os.Getenv("RETRACED_CPUPROFILE"))
	err := newRoot().ExecuteContext(ctx)
	stopProfile()
	stop()
	if err != nil {
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		fmt.Fprintln(os.Stderr, "retraced:", err)
		os.Exit(1)
	}
}

// exitCode ends the process with a status and no further message (the
// command already printed what went wrong).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// startProfile writes a CPU profile to path (for measuring ingest) when
// path is set.
func startProfile(path string) (stop func()) {
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "retraced: cpu profile:", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fmt.Fprintln(os.Stderr, "retraced: cpu profile:", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
