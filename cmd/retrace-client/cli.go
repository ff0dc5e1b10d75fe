package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/retraced/retraced/retrace/taskclient"
)

// defaultURL is `retraced serve`'s default address.
const defaultURL = "http://127.0.0.1:8080"

// options are abrt-retrace-client's options; like it, every option is
// accepted before or after the operation.
type options struct {
	url        string
	insecure   bool
	noPkgcheck bool
	headers    bool
	dir        string
	core       string
	delay      int // seconds between status polls; 0: back off from 250ms to 10s
	noUnlink   bool
	task       string
	password   string
}

func newRoot() *cobra.Command {
	o := &options{}
	root := &cobra.Command{
		Use:   "retrace-client <operation> [options]",
		Short: "Send crashes to a retrace server and fetch their backtraces",
		Long: "Send crashes to a retrace server (retraced serve, or Retrace Server) and fetch their backtraces,\n" +
			"as ABRT's abrt-retrace-client does. Operations: create/status/backtrace/log/batch/exploitable.",
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
	}
	f := root.PersistentFlags()
	f.StringVar(&o.url, "url", defaultURL, "retrace server URL; --uri is the same (env RETRACE_SERVER_URI)")
	f.BoolVarP(&o.insecure, "insecure", "k", false, "allow insecure connection to retrace server (env RETRACE_SERVER_INSECURE=insecure)")
	f.BoolVar(&o.noPkgcheck, "no-pkgcheck", false, "do not check whether retrace server is able to process given package before uploading the archive")
	f.BoolVar(&o.headers, "headers", false, "(debug) show received HTTP headers")
	f.StringVarP(&o.dir, "dir", "d", "", "read data from ABRT problem directory (create, batch)")
	f.StringVarP(&o.core, "core", "c", "", "read data from coredump (create, batch)")
	f.IntVarP(&o.delay, "status-delay", "l", 0, "seconds between status polls (batch; env ABRT_STATUS_DELAY); default: back off up to 10")
	f.BoolVar(&o.noUnlink, "no-unlink", false, "accepted for compatibility: no temporary archive is made")
	f.StringVarP(&o.task, "task", "t", "", "id of your task on server (status, backtrace, log)")
	f.StringVarP(&o.password, "password", "p", "", "password of your task on server (status, backtrace, log)")
	if err := f.MarkHidden("no-unlink"); err != nil {
		panic(err)
	}
	// --uri is abrt-retrace-client's name for --url.
	root.SetGlobalNormalizationFunc(func(_ *pflag.FlagSet, name string) pflag.NormalizedName {
		if name == "uri" {
			name = "url"
		}
		return pflag.NormalizedName(name)
	})
	root.AddCommand(
		&cobra.Command{Use: "create", Short: "Upload a crash; print the task's id and password", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runCreate(cmd) }},
		&cobra.Command{Use: "status", Short: "Print a task's status", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runStatus(cmd) }},
		&cobra.Command{Use: "log", Short: "Print a task's log", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runResult(cmd, "log") }},
		&cobra.Command{Use: "backtrace", Short: "Print a task's backtrace", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runResult(cmd, "backtrace") }},
		&cobra.Command{Use: "exploitable", Short: "Print a task's exploitability rating", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runExploitable(cmd) }},
		&cobra.Command{Use: "batch", Short: "Upload a crash, wait, print the backtrace (or the log when it failed)", Args: cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error { return o.runBatch(cmd) }},
	)
	root.AddCommand(o.spoolCommands()...)
	return root
}

// client applies the environment (under the flags) and connects.
func (o *options) client(cmd *cobra.Command) (*taskclient.Client, error) {
	flags := cmd.Flags()
	if env := os.Getenv("RETRACE_SERVER_URI"); env != "" && !flags.Changed("url") {
		o.url = env
	}
	if env := os.Getenv("RETRACE_SERVER_INSECURE"); env == "insecure" {
		o.insecure = true
	}
	if env := os.Getenv("ABRT_STATUS_DELAY"); env != "" && !flags.Changed("status-delay") {
		d, err := strconv.ParseUint(env, 10, 31)
		if err != nil {
			return nil, fmt.Errorf("ABRT_STATUS_DELAY: expected a number of seconds: %q", env)
		}
		o.delay = int(d)
	}
	var headers io.Writer
	if o.headers {
		headers = cmd.ErrOrStderr()
	}
	return taskclient.New(o.url, o.insecure, headers)
}

// taskClient is the client for a command about an existing task, which
// needs its id and password.
func (o *options) taskClient(cmd *cobra.Command) (*taskclient.Client, error) {
	if o.task == "" {
		return nil, errors.New("Task id is needed.")
	}
	if o.password == "" {
		return nil, errors.New("Task password is needed.")
	}
	return o.client(cmd)
}

func (o *options) runCreate(cmd *cobra.Command) error {
	c, err := o.client(cmd)
	if err != nil {
		return err
	}
	id, password, err := o.create(cmd, c)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Task Id: %s\nTask Password: %s\n", id, password)
	return nil
}

// create checks the server's settings (and the package, unless
// --no-pkgcheck), then streams the crash as tar.xz.
func (o *options) create(cmd *cobra.Command, c *taskclient.Client) (id, password string, err error) {
	dir := o.dir
	switch {
	case o.dir != "" && o.core != "":
		return "", "", errors.New("Give either a problem directory (-d) or a coredump (-c), not both.")
	case o.core != "":
		d, cleanup, err := taskclient.CoreCrashDir(o.core)
		if err != nil {
			return "", "", err
		}
		defer func() {
			if err := cleanup(); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "retrace-client: remove the temporary crash directory:", err)
			}
		}()
		dir = d
	case o.dir == "":
		return "", "", errors.New("Either problem directory or coredump is needed.")
	}
	cd, err := taskclient.OpenCrashDir(dir)
	if err != nil {
		return "", "", err
	}
	ctx := cmd.Context()
	s, err := c.Settings(ctx)
	if err != nil {
		return "", "", err
	}
	if cd.Size > s.MaxUnpackedSize {
		fmt.Fprintln(cmd.ErrOrStderr(), "Retrace server can not be used, because the crash is too large. Try local retracing.")
		return "", "", fmt.Errorf("The size of your crash is %s, but the retrace server only accepts crashes smaller or equal to %s.",
			iec(cd.Size), iec(s.MaxUnpackedSize))
	}
	if !slices.Contains(s.Formats, "application/x-xz-compressed-tar") {
		return "", "", errors.New("The server does not support xz-compressed tarballs.")
	}
	if !o.noPkgcheck {
		if err := o.checkPackage(ctx, cmd, c, cd); err != nil {
			return "", "", err
		}
	}
	// Packed first, as abrt-retrace-client does, so that the upload has a
	// Content-Length (a Retrace Server behind mod_wsgi needs one) and an
	// archive over the server's limit is not sent at all.
	f, err := os.CreateTemp("", "retrace-client-*.tar.xz")
	if err != nil {
		return "", "", err
	}
	defer func() {
		f.Close()
		if rerr := os.Remove(f.Name()); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := cd.Pack(f); err != nil {
		return "", "", fmt.Errorf("pack the crash: %w", err)
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return "", "", err
	}
	if s.MaxPackedSize > 0 && size > s.MaxPackedSize {
		return "", "", fmt.Errorf("The size of your archive is %s, but the retrace server only accepts archives smaller or equal to %s.",
			iec(size), iec(s.MaxPackedSize))
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", "", err
	}
	return c.Create(ctx, f, "application/x-xz-compressed-tar", size)
}

// checkPackage asks the server whether it knows the crash's package, as
// abrt-retrace-client does; a crash directory without package and
// architecture files is not checked.
func (o *options) checkPackage(ctx context.Context, cmd *cobra.Command, c *taskclient.Client, cd *taskclient.CrashDir) error {
	nvr, arch := cd.Item("package"), cd.Item("architecture")
	if nvr == "" || arch == "" {
		return nil
	}
	known, err := c.CheckPackage(ctx, nvr, arch)
	if err != nil {
		return err
	}
	if !known {
		fmt.Fprintf(cmd.ErrOrStderr(), "Retrace server is unable to process package '%s.%s'.\nIs it a part of official repositories?\n", nvr, arch)
		return errors.New("Unknown package sent to Retrace server.")
	}
	return nil
}

func (o *options) runStatus(cmd *cobra.Command) error {
	c, err := o.taskClient(cmd)
	if err != nil {
		return err
	}
	status, msg, err := c.Status(cmd.Context(), o.task, o.password)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "Task Status: %s\n%s\n", status, msg)
	return nil
}

func (o *options) runResult(cmd *cobra.Command, what string) error {
	c, err := o.taskClient(cmd)
	if err != nil {
		return err
	}
	text, err := c.Result(cmd.Context(), o.task, o.password, what)
	if err != nil {
		return err
	}
	if what == "log" {
		fmt.Fprintln(cmd.OutOrStdout(), text) // puts()
	} else {
		fmt.Fprint(cmd.OutOrStdout(), text)
	}
	return nil
}

func (o *options) runExploitable(cmd *cobra.Command) error {
	c, err := o.taskClient(cmd)
	if err != nil {
		return err
	}
	text, err := c.Exploitable(cmd.Context(), o.task, o.password)
	if err != nil {
		return err
	}
	if text == "" {
		text = "No exploitability information available."
	}
	fmt.Fprintln(cmd.OutOrStdout(), text)
	return nil
}

// Polling of batch without -l: from firstPoll, doubling, up to maxPoll
// (abrt-retrace-client's fixed default).
var (
	firstPoll = 250 * time.Millisecond
	maxPoll   = 10 * time.Second
)

// maxDots is how many dots batch prints on one line while the status
// message stays the same.
const maxDots = 80

func (o *options) runBatch(cmd *cobra.Command) error {
	c, err := o.client(cmd)
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	id, password, err := o.create(cmd, c)
	if err != nil {
		return err
	}
	out, progress := cmd.OutOrStdout(), cmd.ErrOrStderr()
	fmt.Fprintf(progress, "Task Id: %s\nTask Password: %s\n", id, password)
	wait := firstPoll
	if o.delay > 0 {
		wait = time.Duration(o.delay) * time.Second
	}
	status, previous, dots := "", "", 0
	for !strings.HasPrefix(status, "FINISHED") {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		if o.delay == 0 {
			wait = min(2*wait, maxPoll)
		}
		var msg string
		status, msg, err = c.Status(ctx, id, password)
		if err != nil {
			return err
		}
		if msg != previous {
			if dots > 0 {
				fmt.Fprintln(progress)
				dots = 0
			}
			fmt.Fprintln(progress, msg)
			previous = msg
			continue
		}
		if dots >= maxDots {
			fmt.Fprintln(progress)
			dots = 0
		}
		fmt.Fprint(progress, ".")
		dots++
	}
	if dots > 0 {
		fmt.Fprintln(progress)
	}
	if status == "FINISHED_SUCCESS" {
		bt, err := c.Result(ctx, id, password, "backtrace")
		if err != nil {
			return err
		}
		fmt.Fprintln(out, bt)
		return nil
	}
	fmt.Fprintln(progress, "Retrace failed. Try again later and if the problem persists report this issue please.")
	log, err := c.Result(ctx, id, password, "log")
	if err != nil {
		return err
	}
	fmt.Fprintln(out, log)
	return exitCode(1)
}

// iec formats a size as GLib's g_format_size_full with IEC units does.
func iec(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d bytes", n)
	}
	f := float64(n)
	for _, u := range []string{"KiB", "MiB", "GiB", "TiB"} {
		f /= unit
		if f < unit || u == "TiB" {
			return fmt.Sprintf("%.1f %s", f, u)
		}
	}
	return ""
}
