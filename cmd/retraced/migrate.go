package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/retraced/retraced/mirror"
)

// migrateCmd copies one deployment's storage into another's: a single
// node's data directory into an object store and PostgreSQL, and back,
// which is also how a distributed deployment is backed up into a plain
// data directory.
func migrateCmd(g *globals) *cobra.Command {
	var to string
	c := &cobra.Command{
		Use:   "migrate --to CONFIG",
		Short: "Copy the blobs and the index of this configuration's storage into the storage CONFIG names (S3 + PostgreSQL, or a data directory)",
		Long: `migrate copies every blob (as stored: compressed, compacted or not) that
the target lacks, then the whole index, into the storage the --to config
file names ([storage] blobs and index, and its data directory). The
target index must be empty; the blobs may be there already, so a migrate
interrupted before the index copy is run again and goes on. Run it with
no server using either side.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			from, fromCfg, err := g.open(cmd)
			if err != nil {
				return err
			}
			defer from.Close()
			toCfg, err := loadConfig(to)
			if err != nil {
				return err
			}
			a, _ := filepath.Abs(fromCfg.Data)
			b, _ := filepath.Abs(toCfg.Data)
			if a == b {
				return fmt.Errorf("migrate: %s is both the source's and the target's data directory; give the target its own", a)
			}
			dst, err := openStore(toCfg)
			if err != nil {
				return fmt.Errorf("migrate: open target: %w", err)
			}
			defer dst.Close()
			out := cmd.OutOrStdout()
			n, bytes, err := from.pool.CopyTo(cmd.Context(), dst.pool, nil)
			if err != nil {
				return fmt.Errorf("migrate: %w (%d blobs copied; run it again to go on)", err, n)
			}
			fmt.Fprintf(out, "blobs: %d copied (%s)\n", n, mirror.HumanBytes(bytes))
			keys, err := from.idx.CopyTo(dst.idx, nil)
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			counts, err := dst.idx.Counts()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "index: %d keys copied: %d packages, %d files, %d build-ids\n", keys, counts.Packages, counts.Files, counts.BuildIDs)
			return nil
		},
	}
	c.Flags().StringVar(&to, "to", "", "the target's TOML config file (required)")
	c.MarkFlagRequired("to")
	return c
}
