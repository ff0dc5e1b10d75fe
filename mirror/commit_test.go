package mirror

import (
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/retraced/retraced/index"
)

// TestCommitterBatches: packages put by many workers at once all land,
// several to a transaction; a package the index refuses fails alone and
// the others of its batch still land.
func TestCommitterBatches(t *testing.T) {
	idx, err := index.Open(filepath.Join(t.TempDir(), "index"), index.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer idx.Close()
	c := newCommitter(idx)
	const n = 60
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := &index.Package{
				NEVRA:   index.NEVRA{Name: fmt.Sprintf("pkg%d", i), Version: "1.0", Release: "1", Arch: "x86_64"},
				Sources: []string{"src"},
			}
			if i == 7 {
				p.NEVRA.Version = "" // refused by the index
			}
			errs[i] = c.put(p)
		}()
	}
	wg.Wait()
	c.close()
	for i, err := range errs {
		if (err != nil) != (i == 7) {
			t.Errorf("package %d: %v", i, err)
		}
	}
	if c.batches >= n {
		t.Errorf("%d transactions for %d packages put at once", c.batches, n)
	}
	counts, err := idx.Counts()
	if err != nil || counts.Packages != n-1 {
		t.Fatalf("%d packages indexed, want %d (%v)", counts.Packages, n-1, err)
	}
}
