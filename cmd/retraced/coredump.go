package main

import (
	"encoding/json"

	"github.com/spf13/cobra"
)

func coredump2packagesCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "coredump2packages CORE",
		Short: "List the packages needed to retrace a core file (Retrace Server's three sections)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			b, err := g.openBackend(cmd)
			if err != nil {
				return err
			}
			defer b.Close()
			rep, err := b.CoreToPackages(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				e := json.NewEncoder(out)
				e.SetIndent("", "  ")
				return e.Encode(rep)
			}
			return rep.WriteText(out)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON: crash_package, packages, debuginfo_packages, unresolved")
	return c
}
