package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/mirror/rpmfile"
	"github.com/retraced/retraced/resolver"
	"github.com/retraced/retraced/web"
)

// globals are the flags every command shares.
type globals struct {
	data, config string
}

func (g *globals) load(cmd *cobra.Command) (Config, error) {
	path := g.config
	if path == "" {
		path = os.Getenv("RETRACED_CONFIG")
	}
	cfg, err := loadConfig(path)
	if err != nil {
		return cfg, err
	}
	if env := os.Getenv("RETRACED_DATA"); env != "" {
		cfg.Data = env
	}
	if cmd.Flags().Changed("data") {
		cfg.Data = g.data
	}
	return cfg, nil
}

func (g *globals) open(cmd *cobra.Command) (*store, Config, error) {
	cfg, err := g.load(cmd)
	if err != nil {
		return nil, cfg, err
	}
	s, err := openStore(cfg)
	return s, cfg, err
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "retraced",
		Short:         "Mirror RPM repositories and index build-ids for crash retracing",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.data, "data", "./retraced-data", "data directory (env RETRACED_DATA)")
	root.PersistentFlags().StringVar(&g.config, "config", "", "TOML config file (env RETRACED_CONFIG)")
	root.AddCommand(mirrorCmd(g), lookupCmd(g), coredump2packagesCmd(g), retraceCmd(g), gcCmd(g), serveCmd(g), migrateCmd(g), versionCmd(), genDocsCmd())
	return root
}

func mirrorCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "mirror", Short: "Manage and sync package sources"}
	c.AddCommand(mirrorAddCmd(g), mirrorListCmd(g), mirrorSyncCmd(g), mirrorRemoveCmd(g))
	return c
}

func mirrorAddCmd(g *globals) *cobra.Command {
	var src mirror.Source
	var keys []string
	var noGPGCheck bool
	c := &cobra.Command{
		Use:   "add NAME [URL]",
		Short: "Register a source (kind detected when --kind is not given); with --metalink or --mirrorlist instead of URL, a yum repository's mirrors",
		Args:  cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			src.Name = args[0]
			if len(args) == 2 {
				src.URL = args[1]
			}
			if src.URL == "" && src.Metalink == "" && src.Mirrorlist == "" {
				return errors.New("mirror add NAME URL, or NAME --metalink URL, or NAME --mirrorlist URL")
			}
			for _, k := range keys {
				armored, err := readKey(cmd.Context(), k, cmd.ErrOrStderr())
				if err != nil {
					return err
				}
				src.GPGKeys = append(src.GPGKeys, armored)
			}
			src.GPGCheck = len(src.GPGKeys) > 0 && !noGPGCheck
			added, err := b.Add(cmd.Context(), src)
			if err != nil {
				return err
			}
			check := "gpgcheck off: unsigned packages are indexed"
			if added.GPGCheck {
				check = "gpgcheck on, keys " + strings.Join(added.GPGKeys, ", ")
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s) %s, schedule %s, %s\n", added.Name, added.Kind,
				sourceWhere(added.URL, added.Metalink, added.Mirrorlist), added.Schedule, check)
			return nil
		},
	}
	c.Flags().StringArrayVar(&keys, "gpg-key", nil, "OpenPGP public key (FILE or http(s) URL) packages must be signed by; repeat for several; turns gpgcheck on")
	c.Flags().BoolVar(&noGPGCheck, "no-gpgcheck", false, "keep the keys but index packages without checking their signatures")
	c.Flags().BoolVar(&src.RepoGPGCheck, "repo-gpgcheck", false, "also require repodata/repomd.xml.asc, a signature of repomd.xml by one of the keys")
	c.Flags().StringVar(&src.Metalink, "metalink", "", "http(s) URL of a metalink (MirrorManager's) for a yum repository, instead of URL: each sync tries its mirrors by preference, checks repomd.xml against its hashes, fails over on errors")
	c.Flags().StringVar(&src.Mirrorlist, "mirrorlist", "", "http(s) URL of a mirror list (one repository URL a line, # comments) for a yum repository, instead of URL: tried in order, failing over on errors")
	c.Flags().StringVar(&src.Kind, "kind", "", "yum or tree (detected when omitted)")
	c.Flags().StringVar(&src.Schedule, "schedule", "", "cron spec for scheduled syncs (default "+mirror.DefaultSchedule+")")
	c.Flags().StringVar(&src.Include, "include", "", "only package files whose location matches this regex")
	c.Flags().StringVar(&src.Exclude, "exclude", "", "skip package files whose location matches this regex")
	return c
}

// readKey reads an OpenPGP public key from a file or an http(s) URL, as
// `mirror add --gpg-key` names it, bounded by rpmfile.MaxKeySize.
func readKey(ctx context.Context, name string, warn io.Writer) (string, error) {
	var r io.Reader
	if strings.HasPrefix(name, "http://") || strings.HasPrefix(name, "https://") {
		if strings.HasPrefix(name, "http://") {
			fmt.Fprintf(warn, "warning: --gpg-key %s over plain http: whoever is on the path can replace it\n", name)
		}
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, name, nil)
		if err != nil {
			return "", fmt.Errorf("--gpg-key %s: %w", name, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", fmt.Errorf("--gpg-key %s: %w", name, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("--gpg-key %s: %s", name, resp.Status)
		}
		r = resp.Body
	} else {
		f, err := os.Open(strings.TrimPrefix(name, "file://"))
		if err != nil {
			return "", fmt.Errorf("--gpg-key: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, rpmfile.MaxKeySize+1))
	if err != nil {
		return "", fmt.Errorf("--gpg-key %s: %w", name, err)
	}
	var k rpmfile.Keyring
	if err := k.ParseKeys(b); err != nil {
		return "", fmt.Errorf("--gpg-key %s: %w", name, err)
	}
	return string(b), nil
}

func mirrorListCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List sources with their counts and last sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			views, err := b.Mirrors(cmd.Context())
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(out)
				e.SetIndent("", "  ")
				return e.Encode(views)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tURL\tPACKAGES\tVERSIONS\tFETCHED\tSTORED\tAS DELTAS\tRATIO\tLAST SYNC\tLAST RESULT")
			for _, v := range views {
				last := "never"
				if v.LastSync != nil {
					last = v.LastSync.Local().Format("2006-01-02 15:04:05")
				}
				where := sourceWhere(v.URL, v.Metalink, v.Mirrorlist)
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.Name, v.Kind, where, v.Packages, v.Versions,
					mirror.HumanBytes(v.BytesFetched), mirror.HumanBytes(v.BytesStored), mirror.HumanBytes(v.BytesDelta),
					web.StoredRatio(v.BytesStored, v.BytesFetched), last, v.LastResult)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	return c
}

func mirrorSyncCmd(g *globals) *cobra.Command {
	var compact bool
	c := &cobra.Command{
		Use:   "sync [NAME...]",
		Short: "Sync sources now (all when none is named)",
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			ctx := cmd.Context()
			names := args
			if len(names) == 0 {
				views, err := b.Mirrors(ctx)
				if err != nil {
					return err
				}
				for _, v := range views {
					names = append(names, v.Name)
				}
			}
			failed := false
			for _, name := range names {
				failed = syncOne(cmd, b, name) || failed
				if ctx.Err() != nil {
					break
				}
			}
			if compact && ctx.Err() == nil {
				start := time.Now()
				res, err := b.Compact(ctx)
				if err != nil {
					return fmt.Errorf("compact: %w", err)
				}
				if res != nil {
					fmt.Fprintf(cmd.OutOrStdout(), "compacted %d files (%d as deltas): %s -> %s in %s\n", res.Blobs, res.Deltas,
						mirror.HumanBytes(res.Before), mirror.HumanBytes(res.After), time.Since(start).Round(time.Millisecond))
				}
			}
			if failed {
				return exitCode(1)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&compact, "compact", false, "then rewrite newly stored files in their final form, deltas on older versions where they pay (serve does this in the background)")
	return c
}

// syncOne syncs one source, with a progress bar on a terminal, prints
// its summary line and its failures, and reports whether it failed.
func syncOne(cmd *cobra.Command, b backend, name string) (failed bool) {
	errw := cmd.ErrOrStderr()
	var bar *progressBar
	var progress func(mirror.Progress)
	if isTerminal(errw) {
		bar = &progressBar{w: errw}
		progress = bar.update
	}
	rep, err := b.Sync(cmd.Context(), name, progress)
	if bar != nil {
		bar.clear()
	}
	if err != nil {
		fmt.Fprintf(errw, "%s: %v\n", name, err)
		return true
	}
	fmt.Fprintln(cmd.OutOrStdout(), rep.Summary)
	for _, f := range rep.Failed {
		fmt.Fprintf(errw, "  %s\n", f)
	}
	return !rep.OK
}

func mirrorRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Stop mirroring a source (its packages stay until gc)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			if err := b.Remove(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "removed %s; its packages stay until gc\n", args[0])
			return nil
		},
	}
}

func lookupCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "lookup BUILDID...",
		Short: "Find the packages and files that carry build-ids",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ids := make([]index.BuildID, 0, len(args))
			for _, a := range args {
				id, err := index.ParseBuildID(strings.ToLower(a))
				if err != nil {
					return err
				}
				ids = append(ids, id)
			}
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			return lookup(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), b, ids, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {build_id, matches}")
	return c
}

type lookupResult struct {
	BuildID string               `json:"build_id"`
	Matches []resolver.MatchView `json:"matches"`
}

func lookup(ctx context.Context, out, errw io.Writer, b backend, ids []index.BuildID, asJSON bool) error {
	missing := false
	var results []lookupResult
	for _, id := range ids {
		ms, err := b.Lookup(ctx, id)
		if errors.Is(err, index.ErrNotFound) {
			missing = true
			fmt.Fprintf(errw, "%s: not found\n", id)
			ms = []resolver.MatchView{}
		} else if err != nil {
			return err
		}
		if asJSON {
			results = append(results, lookupResult{BuildID: id.String(), Matches: ms})
			continue
		}
		for _, m := range ms {
			fmt.Fprintf(out, "%s %s %s %s\n", id, m.NEVRA, m.Kind, m.Path)
		}
	}
	if asJSON {
		e := json.NewEncoder(out)
		e.SetIndent("", "  ")
		if err := e.Encode(results); err != nil {
			return err
		}
	}
	if missing {
		return exitCode(1)
	}
	return nil
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print version and build information",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			bi, ok := debug.ReadBuildInfo()
			if !ok {
				fmt.Fprintln(out, "retraced (no build info)")
				return nil
			}
			v := bi.Main.Version
			if v == "" || v == "(devel)" {
				v = "devel"
			}
			fmt.Fprintf(out, "retraced %s\n%s\n", v, bi.GoVersion)
			for _, s := range bi.Settings {
				if strings.HasPrefix(s.Key, "vcs.") {
					fmt.Fprintf(out, "%s=%s\n", s.Key, s.Value)
				}
			}
			return nil
		},
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// progressBar draws one line, redrawn in place, on a terminal.
type progressBar struct {
	w     io.Writer
	drawn bool
}

func (b *progressBar) update(p mirror.Progress) {
	elapsed := time.Since(p.Started).Seconds()
	rate := 0.0
	if elapsed > 0 {
		rate = float64(p.BytesFetched) / elapsed
	}
	const width = 30
	fill := 0
	if p.Total > 0 {
		fill = width * p.Done / p.Total
	}
	line := fmt.Sprintf("\r%s %-8s [%s%s] %d/%d pkgs  %s  %s/s", p.Source, p.Phase,
		strings.Repeat("=", fill), strings.Repeat(" ", width-fill), p.Done, p.Total,
		mirror.HumanBytes(p.BytesFetched), mirror.HumanBytes(int64(rate)))
	if p.Failed > 0 {
		line += fmt.Sprintf("  %d failed", p.Failed)
	}
	fmt.Fprintf(b.w, "%s\x1b[K", line)
	b.drawn = true
}

func (b *progressBar) clear() {
	if b.drawn {
		fmt.Fprint(b.w, "\r\x1b[K")
	}
}

// sourceWhere is where a source is read from, as mirror add and mirror
// list print it: its URL, or "metalink URL" or "mirrorlist URL".
func sourceWhere(url, metalink, mirrorlist string) string {
	switch {
	case metalink != "":
		return "metalink " + metalink
	case mirrorlist != "":
		return "mirrorlist " + mirrorlist
	}
	return url
}
