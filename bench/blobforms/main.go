// Command blobforms lists, for bench/deltas.sh, every executable build-id
// of a data directory with the form its file is stored in: one line
// "BUILDID whole|delta SIZE STORED" (SIZE the file's length, STORED its
// bytes in the pool), each distinct file once. Run it while no retraced
// process holds the data directory. Of retraced, it may import only index
// and index/blob.
//
//	go run ./bench/blobforms -data /var/tmp/retraced-deltas/data
package main

import (
	"bufio"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/retraced/retraced/index"
	"github.com/retraced/retraced/index/blob"
)

func main() {
	data := flag.String("data", "", "data directory")
	flag.Parse()
	if *data == "" {
		log.Fatal("-data is required")
	}
	idx, err := index.Open(filepath.Join(*data, "index"), index.Options{ReadOnly: true})
	if err != nil {
		log.Fatal(err)
	}
	defer idx.Close()
	pool, err := blob.Open(filepath.Join(*data, "blobs"), blob.Config{})
	if err != nil {
		log.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	seen := map[blob.Digest]bool{}
	err = idx.Packages(func(p *index.Package) error {
		for _, f := range p.Files {
			if f.Kind != index.KindExecutable || f.Blob.IsZero() || seen[f.Blob] {
				continue
			}
			seen[f.Blob] = true
			info, err := pool.Info(f.Blob)
			if err != nil {
				return fmt.Errorf("%s %s: %w", p.NEVRA, f.Path, err)
			}
			form := "whole"
			if info.Delta {
				form = "delta"
			}
			fmt.Fprintf(out, "%s %s %d %d\n", f.BuildID, form, f.Size, info.Stored)
		}
		return nil
	})
	if err != nil {
		log.Fatal(err)
	}
}
