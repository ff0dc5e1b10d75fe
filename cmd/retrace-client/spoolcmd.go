package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
)

// spoolOptions are the options of watch, core-handler, list and retry.
type spoolOptions struct {
	spool  string
	config string
}

func (s *spoolOptions) flags(cmd *cobra.Command) *cobra.Command {
	cmd.Flags().StringVar(&s.spool, "spool", defaultSpool, "the spool directory (where core_pattern writes cores)")
	cmd.Flags().StringVar(&s.config, "config", "", "TOML config file (dump.quota, purge.age, submit, [[route]])")
	return cmd
}

func (o *options) spoolCommands() []*cobra.Command {
	s := &spoolOptions{}
	return []*cobra.Command{
		s.flags(&cobra.Command{Use: "watch", Short: "Watch a spool of cores, send each to a retrace server and keep its backtrace", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runWatch(cmd, s) }}),
		s.flags(&cobra.Command{Use: "core-handler [%e %p %t]", Short: "Write a core from stdin into the spool (core_pattern = |retrace-client core-handler %e %p %t)",
			Args: cobra.MaximumNArgs(3), RunE: func(cmd *cobra.Command, args []string) error { return s.runCoreHandler(cmd, args) }}),
		s.flags(&cobra.Command{Use: "list", Short: "List the cores of the spool: id, state, time, size, task, executable", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return s.runList(cmd) }}),
		s.flags(&cobra.Command{Use: "retry ID", Short: "Submit a failed core again", Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error { return s.runRetry(cmd, args[0]) }}),
	}
}

func (o *options) runWatch(cmd *cobra.Command, s *spoolOptions) error {
	cfg, err := loadWatchConfig(s.config)
	if err != nil {
		return err
	}
	url := o.url
	if !cmd.Flags().Changed("url") {
		switch {
		case os.Getenv("RETRACE_SERVER_URI") != "":
			url = os.Getenv("RETRACE_SERVER_URI")
		case cfg.URL != "":
			url = cfg.URL
		}
	}
	if os.Getenv("RETRACE_SERVER_INSECURE") == "insecure" {
		o.insecure = true
	}
	return newWatcher(s.spool, url, o.insecure, cfg, cmd.ErrOrStderr()).run(cmd.Context())
}

// runCoreHandler writes the core on stdin into the spool as
// core_%e_%p_%t, atomically, so that watch never sees it half-written;
// it refuses it below dump.quota and beyond dump.max_size.
func (s *spoolOptions) runCoreHandler(cmd *cobra.Command, args []string) error {
	cfg, err := loadWatchConfig(s.config)
	if err != nil {
		return err
	}
	comm, pid, t := "unknown", "0", fmt.Sprint(time.Now().Unix())
	for i, v := range args {
		v = strings.Map(func(r rune) rune {
			if r == '/' || r == '_' && i > 0 || r < ' ' {
				return '-'
			}
			return r
		}, v)
		switch i {
		case 0:
			comm = strings.TrimLeft(v, ".")
		case 1:
			pid = v
		case 2:
			t = v
		}
	}
	if comm == "" {
		comm = "unknown"
	}
	if err := os.MkdirAll(s.spool, 0o700); err != nil {
		return err
	}
	free, err := freePercent(s.spool)
	if err != nil {
		return err
	}
	if free < cfg.Dump.Quota {
		return fmt.Errorf("core of %s (pid %s) refused: %.1f%% free in %s, below dump.quota %v%%", comm, pid, free, s.spool, cfg.Dump.Quota)
	}
	path := filepath.Join(s.spool, "core_"+comm+"_"+pid+"_"+t)
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("%s exists", path)
	}
	return writeAtomicFrom(path, func(w io.Writer) error {
		n, err := io.Copy(w, io.LimitReader(cmd.InOrStdin(), cfg.Dump.MaxSize+1))
		if err != nil {
			return fmt.Errorf("read the core: %w", err)
		}
		if n > cfg.Dump.MaxSize {
			return fmt.Errorf("core of %s (pid %s) refused: larger than dump.max_size %d", comm, pid, cfg.Dump.MaxSize)
		}
		return nil
	})
}

func (s *spoolOptions) runList(cmd *cobra.Command) error {
	items, err := loadItems(s.spool)
	tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATE\tTIME\tSIZE\tTASK\tEXECUTABLE\tREASON")
	for _, it := range items {
		task := it.TaskID
		if task == "" {
			task = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", it.ID, it.State, it.Time.Local().Format(time.DateTime), it.Size, task, it.Executable, it.Reason)
	}
	return errors.Join(tw.Flush(), err)
}

// runRetry puts a failed item back to found, its attempts forgotten, and
// tells a running watcher with the kick file.
func (s *spoolOptions) runRetry(cmd *cobra.Command, id string) error {
	if id == "" || strings.ContainsAny(id, "/") || strings.HasPrefix(id, ".") {
		return fmt.Errorf("no item %q", id)
	}
	it, err := loadItem(s.spool, id)
	if err != nil {
		return fmt.Errorf("no item %q in %s: %w", id, s.spool, err)
	}
	if it.State != stateFailed {
		return fmt.Errorf("%s is %s: only a failed item is retried", id, it.State)
	}
	// A new key: the task the old one named (if any) failed; retry makes another.
	it.State, it.Attempts, it.Reason, it.TaskID, it.Password, it.Key, it.Finished = stateFound, 0, "", "", "", "", time.Time{}
	if err := it.save(s.spool); err != nil {
		return err
	}
	if err := writeAtomic(filepath.Join(s.spool, kickFile), []byte(id+"\n")); err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "%s: queued again\n", id)
	return nil
}
