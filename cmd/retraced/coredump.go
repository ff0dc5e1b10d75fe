package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"

	"github.com/spf13/cobra"

	"github.com/retraced/retraced/resolver"
)

func coredump2packagesCmd(g *globals) *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "coredump2packages CORE",
		Short: "List the packages needed to retrace a core file (Retrace Server's three sections)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, r, err := g.backend(cmd)
			if err != nil {
				return err
			}
			var rep *resolver.Report
			if r != nil {
				rep, err = r.coredump2packages(args[0])
			} else {
				defer s.Close()
				rep, err = resolver.CoreFileToPackages(s.idx, args[0])
			}
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

// coredump2packages streams the core file to the server.
func (r *remote) coredump2packages(path string) (*resolver.Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	req, err := http.NewRequest(http.MethodPost, r.base+"/api/v1/coredump2packages", f)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := r.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask the server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.NewDecoder(resp.Body).Decode(&e) == nil && e.Error != "" {
			return nil, &remoteError{code: resp.StatusCode, msg: e.Error}
		}
		return nil, &remoteError{code: resp.StatusCode, msg: resp.Status}
	}
	rep := new(resolver.Report)
	return rep, json.NewDecoder(resp.Body).Decode(rep)
}
