package gc

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

// BenchmarkCollect100k: a store of 100,000 stored files, half referenced
// by 5,000 packages of a live source and half by 5,000 of a removed one;
// one collection plans and removes the latter (the floor: under
// 10 s). Reported: seconds per collection, files removed.
func BenchmarkCollect100k(b *testing.B) {
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		idx, err := index.Open(filepath.Join(dir, "index"), index.Options{})
		if err != nil {
			b.Fatal(err)
		}
		pool, err := blob.Open(filepath.Join(dir, "blobs"), blob.Config{NoSync: true, Level: blob.LevelFastest})
		if err != nil {
			b.Fatal(err)
		}
		var pkgs []*index.Package
		for p := range 10_000 {
			src := "live"
			if p%2 == 1 {
				src = "removed"
			}
			pkg := &index.Package{NEVRA: index.NEVRA{Name: fmt.Sprintf("p%d", p), Version: "1", Release: "1", Arch: "x86_64"}, Sources: []string{src}}
			for f := range 10 {
				content := []byte(fmt.Sprintf("file %d of package %d", f, p))
				d := blob.Sum(content)
				if _, err := pool.PutHashed(d, bytes.NewReader(content)); err != nil {
					b.Fatal(err)
				}
				pkg.Files = append(pkg.Files, index.File{Path: fmt.Sprintf("/usr/lib64/f%d", f), Blob: d, Size: int64(len(content))})
			}
			pkgs = append(pkgs, pkg)
		}
		if err := idx.PutPackages(pkgs); err != nil {
			b.Fatal(err)
		}
		c := New(idx, pool, func() ([]string, error) { return []string{"live"}, nil }, Config{})
		b.StartTimer()
		start := time.Now()
		plan, err := c.Plan(context.Background(), time.Now().Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Execute(context.Background(), plan); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/collection")
		b.ReportMetric(float64(len(plan.Items)), "items")
		b.StopTimer()
		idx.Close()
	}
}
