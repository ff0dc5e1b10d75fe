package index

import "fmt"

// MatchView is a match as the API and `retraced lookup --json` show it.
type MatchView struct {
	NEVRA   string   `json:"nevra"`
	Name    string   `json:"name"`
	Epoch   int      `json:"epoch"`
	Version string   `json:"version"`
	Release string   `json:"release"`
	Arch    string   `json:"arch"`
	Kind    Kind     `json:"kind"`
	Path    string   `json:"path"`
	Repos   []string `json:"repos"`
}

// Resolve looks id up and adds, to each match, the sources that list its
// package. It returns ErrNotFound for an unknown id.
func (s *Store) Resolve(id BuildID) ([]MatchView, error) {
	ms, err := s.Lookup(id)
	if err != nil {
		return nil, err
	}
	out := make([]MatchView, 0, len(ms))
	repos := map[NEVRA][]string{}
	for _, m := range ms {
		r, ok := repos[m.NEVRA]
		if !ok {
			var err error
			if r, err = s.sourcesOf(m.NEVRA); err != nil {
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
