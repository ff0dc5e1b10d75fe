package resolver

import (
	"fmt"

	"github.com/retraced/retraced/index"
)

// MatchView is a match as the API (GET /api/v1/buildid/{id}, POST
// /api/v1/buildids) and `retraced lookup --json` show it.
type MatchView struct {
	NEVRA   string     `json:"nevra"`
	Name    string     `json:"name"`
	Epoch   int        `json:"epoch"`
	Version string     `json:"version"`
	Release string     `json:"release"`
	Arch    string     `json:"arch"`
	Kind    index.Kind `json:"kind"`
	Path    string     `json:"path"`
	Repos   []string   `json:"repos"`
}

// Resolve looks id up in idx and adds, to each match, the sources that
// list its package. It returns an error wrapping index.ErrNotFound for an
// unknown id.
func Resolve(idx Index, id index.BuildID) ([]MatchView, error) {
	ms, err := idx.Lookup(id)
	if err != nil {
		return nil, err
	}
	out := make([]MatchView, 0, len(ms))
	repos := map[index.NEVRA][]string{}
	for _, m := range ms {
		r, ok := repos[m.NEVRA]
		if !ok {
			var err error
			if r, err = idx.SourcesOf(m.NEVRA); err != nil {
				return nil, fmt.Errorf("build-id %s: %w", id, err)
			}
			repos[m.NEVRA] = r
		}
		out = append(out, MatchView{
			NEVRA: m.NEVRA.String(), Name: m.NEVRA.Name, Epoch: m.NEVRA.Epoch, Version: m.NEVRA.Version,
			Release: m.NEVRA.Release, Arch: m.NEVRA.Arch, Kind: m.Kind, Path: m.Path, Repos: r,
		})
	}
	return out, nil
}
