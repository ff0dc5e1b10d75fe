package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/spf13/cobra"

	"github.com/retraced/retraced/gc"
	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/mirror"
	"github.com/retraced/retraced/web"
)

// gcFile, in the data directory, records the last collection for the
// status page.
const gcFile = "gc.json"

// gcReport is one collection as the CLI, the API and the status page see
// it.
type gcReport struct {
	When      time.Time `json:"when"`
	DryRun    bool      `json:"dry_run"`
	Summary   string    `json:"summary"`
	Bytes     int64     `json:"bytes"`
	Protected int       `json:"protected"`
	Changed   int       `json:"changed,omitempty"` // planned, but taken back by a sync before execution
	Items     []gc.Item `json:"items"`
	Error     string    `json:"error,omitempty"`
}

func collector(s *store, owners ...gc.Owner) *gc.Collector {
	return gc.New(s.idx, s.pool, func() ([]string, error) {
		srcs, err := s.mirror.Sources()
		var names []string
		for _, src := range srcs {
			names = append(names, src.Name)
		}
		return names, err
	}, gc.Config{}, owners...)
}

// collect plans and (unless dryRun) executes one collection. Blobs newer
// than cutoff are protected.
func collect(ctx context.Context, s *store, cutoff time.Time, dryRun bool, owners ...gc.Owner) (*gcReport, error) {
	if !dryRun {
		// One node at a time collects (with a shared index, the lease
		// holds across nodes and passes on when its holder dies).
		lctx, release, err := s.idx.Lease(ctx, "gc")
		if err != nil {
			return nil, fmt.Errorf("gc: %w", err)
		}
		defer release()
		ctx = lctx
	}
	c := collector(s, owners...)
	plan, err := c.Plan(ctx, cutoff)
	if err != nil {
		return nil, err
	}
	report := func() *gcReport {
		rep := &gcReport{When: time.Now().UTC(), DryRun: dryRun, Summary: plan.Summary(), Bytes: plan.Bytes(),
			Protected: plan.Protected, Changed: plan.Changed, Items: plan.Items}
		if rep.Items == nil {
			rep.Items = []gc.Item{}
		}
		return rep
	}
	if dryRun {
		return report(), nil
	}
	freed, err := c.Execute(ctx, plan) // drops what syncs took back since the plan
	rep := report()
	rep.Bytes = freed
	if err != nil {
		rep.Error = err.Error()
	}
	if werr := writeJSONFile(filepath.Join(s.dir, gcFile), rep); werr != nil && err == nil {
		err = werr
	}
	return rep, err
}

func printGC(w io.Writer, rep *gcReport) {
	verb := "removed"
	if rep.DryRun {
		verb = "would remove"
	}
	for _, it := range rep.Items {
		fmt.Fprintf(w, "%s %s %s (%s)\n", verb, it.Kind, it.Name, mirror.HumanBytes(it.Bytes))
	}
	fmt.Fprintf(w, "%s: %s, %s freed", verb, rep.Summary, mirror.HumanBytes(rep.Bytes))
	if rep.DryRun {
		fmt.Fprintf(w, " (dry run)")
	}
	if rep.Protected > 0 {
		fmt.Fprintf(w, "; %d new unreferenced files kept for running syncs", rep.Protected)
	}
	if rep.Changed > 0 {
		fmt.Fprintf(w, "; %d planned items kept because a sync took them back", rep.Changed)
	}
	fmt.Fprintln(w)
}

func gcCmd(g *globals) *cobra.Command {
	var dryRun bool
	c := &cobra.Command{
		Use:   "gc",
		Short: "Collect what no source or task needs any more; print what was removed and the bytes freed",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			rep, err := b.GC(cmd.Context(), dryRun)
			if rep != nil {
				printGC(cmd.OutOrStdout(), rep)
			}
			return err
		},
	}
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print the plan; remove nothing")
	return c
}

// registerGC adds POST /api/v1/gc (admin) to serve; running syncs'
// fresh blobs are protected.
func registerGC(r gin.IRouter, s *store, ops *web.Ops, admin gin.HandlerFunc, owners ...gc.Owner) {
	r.POST("/api/v1/gc", admin, func(c *gin.Context) {
		dry := c.Query("dry_run") == "true"
		rep, err := collect(c.Request.Context(), s, ops.OldestSyncStart(), dry, owners...)
		if err != nil && rep == nil {
			code := http.StatusInternalServerError
			if errors.Is(err, index.ErrLeaseHeld) {
				code = http.StatusConflict // another node collects now
			}
			c.AbortWithStatusJSON(code, gin.H{"error": err.Error()})
			return
		}
		c.JSON(http.StatusOK, rep)
	})
}

// lastGC reads the last collection for the status page.
func lastGC(dir string) *web.GCSummary {
	b, err := os.ReadFile(filepath.Join(dir, gcFile))
	if err != nil {
		return nil
	}
	var rep gcReport
	if json.Unmarshal(b, &rep) != nil {
		return nil
	}
	return &web.GCSummary{When: rep.When.Local().Format("2006-01-02 15:04:05"), Freed: mirror.HumanBytes(rep.Bytes), Summary: rep.Summary}
}
