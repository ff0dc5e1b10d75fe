package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// genDocsCmd writes the man pages of every command, generated from the
// CLI itself so that they cannot drift from it (the RPM spec runs it;
// shell completion comes from cobra's own `retraced completion SHELL`).
func genDocsCmd() *cobra.Command {
	var man string
	c := &cobra.Command{
		Use:    "gen-docs --man DIR",
		Short:  "Write the man pages of every command into DIR (packaging)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(man, 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true // reproducible: no generation date
			header := &doc.GenManHeader{Title: "RETRACED", Section: "1", Source: "retraced", Manual: "retraced manual"}
			if err := doc.GenManTree(root, header, man); err != nil {
				return fmt.Errorf("man pages: %w", err)
			}
			return nil
		},
	}
	c.Flags().StringVar(&man, "man", "", "directory for the man pages (required)")
	c.MarkFlagRequired("man")
	return c
}
