package mirror

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/retraced/retraced/fixtures"
)

func TestPublicAddr(t *testing.T) {
	for addr, public := range map[string]bool{
		"93.184.215.14": true, "2a00:1450:4001:80b::200e": true,
		"127.0.0.1": false, "::1": false, "10.1.2.3": false, "172.16.0.1": false, "192.168.1.1": false,
		"169.254.169.254": false, "fe80::1": false, "fd00::1": false, "100.64.0.1": false,
		"0.0.0.0": false, "::": false, "224.0.0.1": false, "::ffff:127.0.0.1": false, "::ffff:10.0.0.1": false,
	} {
		if got := publicAddr(netip.MustParseAddr(addr)); got != public {
			t.Errorf("publicAddr(%s) = %v, want %v", addr, got, public)
		}
	}
}

// TestPublicOnlyDownloads: a PublicOnly source's downloads never reach a
// loopback server (the check is on the address dialled, so it holds for
// redirects too; a test with no public address cannot show that part) nor
// a local path; Add refuses such a source, and a source so marked in its
// record fails its sync.
func TestPublicOnlyDownloads(t *testing.T) {
	url := strings.TrimSuffix(fixtures.NewServer(fixtures.FS("repo")).Start(t), "/") + "/"
	m := newTestMirror(t, "")
	ctx := withPublicOnly(context.Background())
	for _, target := range []string{url + "repodata/repomd.xml", fixtures.Path("repo", "repodata", "repomd.xml")} {
		if rc, _, err := m.open(ctx, target); !errors.Is(err, ErrPrivateAddress) {
			if rc != nil {
				rc.Close()
			}
			t.Errorf("public-only open of %s: %v, want ErrPrivateAddress", target, err)
		}
	}
	// The same without the mark reaches it.
	rc, _, err := m.open(context.Background(), url+"repodata/repomd.xml")
	if err != nil {
		t.Fatal(err)
	}
	rc.Close()
	for _, u := range []string{url, "http://localhost:1/", fixtures.Path("repo")} {
		if _, err := m.Add(context.Background(), Source{Name: "p", URL: u, Kind: KindYum, PublicOnly: true}); !errors.Is(err, ErrPrivateAddress) || !errors.Is(err, ErrBadSource) {
			t.Errorf("Add public-only %s: %v", u, err)
		}
	}
	// A source marked so in its record syncs nothing from loopback.
	src := Source{Name: "marked", URL: url, Kind: KindYum, Schedule: DefaultSchedule, PublicOnly: true}
	if err := m.saveSource(&src); err != nil {
		t.Fatal(err)
	}
	res := m.sync(t, "marked")
	if !errors.Is(res.Err, ErrPrivateAddress) || res.New != 0 {
		t.Fatalf("sync of a public-only source on loopback: %v, %s", res.Err, res.Summary())
	}
}
