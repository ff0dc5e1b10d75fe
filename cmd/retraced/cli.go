package main

import (
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
	root.AddCommand(mirrorCmd(g), lookupCmd(g), coredump2packagesCmd(g), retraceCmd(g), gcCmd(g), serveCmd(g), versionCmd())
	return root
}

func mirrorCmd(g *globals) *cobra.Command {
	c := &cobra.Command{Use: "mirror", Short: "Manage and sync package sources"}
	c.AddCommand(mirrorAddCmd(g), mirrorListCmd(g), mirrorSyncCmd(g), mirrorRemoveCmd(g))
	return c
}

func mirrorAddCmd(g *globals) *cobra.Command {
	var src mirror.Source
	c := &cobra.Command{
		Use:   "add NAME URL",
		Short: "Register a source (kind detected when --kind is not given)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			src.Name, src.URL = args[0], args[1]
			var added *mirror.Source
			if r != nil {
				var v mirror.SourceView
				if err := r.do(http.MethodPost, "/api/v1/mirrors", map[string]string{"name": src.Name, "url": src.URL,
					"kind": src.Kind, "schedule": src.Schedule, "include": src.Include, "exclude": src.Exclude}, &v); err != nil {
					return err
				}
				added = &mirror.Source{Name: v.Name, Kind: v.Kind, URL: v.URL, Schedule: v.Schedule}
			} else {
				defer s.Close()
				if added, err = s.mirror.Add(cmd.Context(), src); err != nil {
					return err
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "added %s (%s) %s, schedule %s\n", added.Name, added.Kind, added.URL, added.Schedule)
			return nil
		},
	}
	c.Flags().StringVar(&src.Kind, "kind", "", "yum or tree (detected when omitted)")
	c.Flags().StringVar(&src.Schedule, "schedule", "", "cron spec for scheduled syncs (default "+mirror.DefaultSchedule+")")
	c.Flags().StringVar(&src.Include, "include", "", "only package files whose location matches this regex")
	c.Flags().StringVar(&src.Exclude, "exclude", "", "skip package files whose location matches this regex")
	return c
}

func mirrorListCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List sources with their counts and last sync",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			views := []mirror.SourceView{}
			if r != nil {
				if err := r.do(http.MethodGet, "/api/v1/mirrors", nil, &views); err != nil {
					return err
				}
			} else {
				defer s.Close()
				srcs, err := s.mirror.Sources()
				if err != nil {
					return err
				}
				for _, src := range srcs {
					views = append(views, src.View())
				}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(out)
				e.SetIndent("", "  ")
				return e.Encode(views)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tKIND\tURL\tPACKAGES\tVERSIONS\tFETCHED\tSTORED\tLAST SYNC\tLAST RESULT")
			for _, v := range views {
				last := "never"
				if v.LastSync != nil {
					last = v.LastSync.Local().Format("2006-01-02 15:04:05")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\n", v.Name, v.Kind, v.URL, v.Packages, v.Versions,
					mirror.HumanBytes(v.BytesFetched), mirror.HumanBytes(v.BytesStored), last, v.LastResult)
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
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			if r != nil {
				return remoteSync(cmd, r, args)
			}
			defer s.Close()
			names := args
			if len(names) == 0 {
				srcs, err := s.mirror.Sources()
				if err != nil {
					return err
				}
				for _, src := range srcs {
					names = append(names, src.Name)
				}
			}
			failed := false
			errw := cmd.ErrOrStderr()
			tty := isTerminal(errw)
			for _, name := range names {
				var bar *progressBar
				var progress func(mirror.Progress)
				if tty {
					bar = &progressBar{w: errw}
					progress = bar.update
				}
				res, err := s.mirror.Sync(cmd.Context(), name, progress)
				if bar != nil {
					bar.clear()
				}
				if err != nil {
					fmt.Fprintf(errw, "%s: %v\n", name, err)
					failed = true
					continue
				}
				fmt.Fprintln(cmd.OutOrStdout(), res.Summary())
				for _, f := range res.Failed {
					fmt.Fprintf(errw, "  %s\n", f.Error())
				}
				if !res.OK() {
					failed = true
				}
				if cmd.Context().Err() != nil {
					break
				}
			}
			if compact && cmd.Context().Err() == nil {
				start := time.Now()
				res, err := s.mirror.Compact(cmd.Context())
				if err != nil {
					return fmt.Errorf("compact: %w", err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "compacted %d files: %s -> %s in %s\n", res.Blobs,
					mirror.HumanBytes(res.Before), mirror.HumanBytes(res.After), time.Since(start).Round(time.Millisecond))
			}
			if failed {
				return exitCode(1)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&compact, "compact", false, "then recompress newly stored files at the strongest level (serve does this in the background)")
	return c
}

func mirrorRemoveCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Stop mirroring a source (its packages stay until gc)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			if r != nil {
				err = r.do(http.MethodDelete, "/api/v1/mirrors/"+escape(args[0]), nil, nil)
			} else {
				defer s.Close()
				err = s.mirror.Remove(args[0])
			}
			if err != nil {
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
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			var res resolverFunc
			if r != nil {
				res = r.resolve
			} else {
				defer s.Close()
				res = s.idx.Resolve
			}
			return lookup(cmd.OutOrStdout(), cmd.ErrOrStderr(), res, ids, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of {build_id, matches}")
	return c
}

type lookupResult struct {
	BuildID string            `json:"build_id"`
	Matches []index.MatchView `json:"matches"`
}

// resolverFunc resolves one build-id, locally or through a server.
type resolverFunc func(index.BuildID) ([]index.MatchView, error)

func lookup(out, errw io.Writer, resolve resolverFunc, ids []index.BuildID, asJSON bool) error {
	missing := false
	var results []lookupResult
	for _, id := range ids {
		ms, err := resolve(id)
		if errors.Is(err, index.ErrNotFound) {
			missing = true
			fmt.Fprintf(errw, "%s: not found\n", id)
			ms = []index.MatchView{}
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

func (r *remote) resolve(id index.BuildID) ([]index.MatchView, error) {
	var resp struct {
		Matches []index.MatchView `json:"matches"`
	}
	err := r.do(http.MethodGet, "/api/v1/buildid/"+id.String(), nil, &resp)
	var re *remoteError
	if errors.As(err, &re) && re.code == http.StatusNotFound {
		return nil, fmt.Errorf("build-id %s: %w", id, index.ErrNotFound)
	}
	return resp.Matches, err
}

func remoteSync(cmd *cobra.Command, r *remote, names []string) error {
	if len(names) == 0 {
		var views []mirror.SourceView
		if err := r.do(http.MethodGet, "/api/v1/mirrors", nil, &views); err != nil {
			return err
		}
		for _, v := range views {
			names = append(names, v.Name)
		}
	}
	failed := false
	for _, name := range names {
		var resp struct {
			OK      bool     `json:"ok"`
			Summary string   `json:"summary"`
			Failed  []string `json:"failed"`
		}
		if err := r.do(http.MethodPost, "/api/v1/mirrors/"+escape(name)+"/sync?wait=true", nil, &resp); err != nil {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: %v\n", name, err)
			failed = true
			continue
		}
		fmt.Fprintln(cmd.OutOrStdout(), resp.Summary)
		for _, f := range resp.Failed {
			fmt.Fprintf(cmd.ErrOrStderr(), "  %s\n", f)
		}
		failed = failed || !resp.OK
	}
	if failed {
		return exitCode(1)
	}
	return nil
}
