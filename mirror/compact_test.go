package mirror

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

// TestCompactPauses: compaction asks the same free-space check a sync
// does and stops, saying why, when it says no; then compacts when it
// says yes.
func TestCompactPauses(t *testing.T) {
	low := errors.New("paused: 0 B free is below the minimum of 256.0 MiB; run gc")
	pause := low
	m := newTestMirrorConfig(t, "", Config{Workers: 2, Pause: func() error { return pause }})
	pause = nil
	m.add(t, "fx", fixtures.Path("repo"))
	if res := m.sync(t, "fx"); !res.OK() {
		t.Fatalf("sync: %s", res.Summary())
	}
	pause = low
	res, err := m.Compact(context.Background())
	if err == nil || !strings.Contains(err.Error(), "compaction paused") || res.Blobs != 0 {
		t.Fatalf("Compact on a low disk: %+v, %v", res, err)
	}
	pause = nil
	if res, err := m.Compact(context.Background()); err != nil || res.Blobs == 0 {
		t.Fatalf("Compact: %+v, %v", res, err)
	}
}
