// Command fillindex writes a synthetic index of N build-ids into a data
// directory, for scale tests of lookups (bench/serve.sh): N/10 packages of
// ten shared libraries each, every one with its own build-id. It also
// writes DIR/ids.txt, a sample of the ids in random order, one a line.
// Of retraced, it may import only index.
//
//	go run ./bench/fillindex -data /var/tmp/scale-1m -n 1000000
package main

import (
	"crypto/sha1"
	"encoding/binary"
	"flag"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/retraced/retraced/index"
)

func main() {
	data := flag.String("data", "", "data directory to fill (created)")
	n := flag.Int("n", 1_000_000, "build-ids to write")
	sample := flag.Int("sample", 100_000, "ids to list in DATA/ids.txt")
	flag.Parse()
	if *data == "" {
		log.Fatal("-data is required")
	}
	if err := run(*data, *n, *sample); err != nil {
		log.Fatal(err)
	}
}

func id(i int) index.BuildID {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(i))
	sum := sha1.Sum(b[:])
	v, err := index.BuildIDFromBytes(sum[:])
	if err != nil {
		panic(err)
	}
	return v
}

func run(dir string, n, sample int) error {
	idx, err := index.Open(filepath.Join(dir, "index"), index.Options{})
	if err != nil {
		return err
	}
	defer idx.Close()
	start := time.Now()
	const perPkg = 10
	var batch []*index.Package
	for p := 0; p*perPkg < n; p++ {
		pkg := &index.Package{
			NEVRA:    index.NEVRA{Name: fmt.Sprintf("synthetic%d", p), Version: "1.0", Release: "1", Arch: "x86_64"},
			FileName: fmt.Sprintf("synthetic%d-1.0-1.x86_64.rpm", p),
			Sources:  []string{"synthetic"},
			Checksum: "sha256:0",
		}
		for f := 0; f < perPkg && p*perPkg+f < n; f++ {
			pkg.Files = append(pkg.Files, index.File{
				Path: fmt.Sprintf("/usr/lib64/libsynthetic%d_%d.so.1", p, f), Mode: 0o755,
				BuildID: id(p*perPkg + f), Kind: index.KindExecutable, Size: 4096,
			})
		}
		batch = append(batch, pkg)
		if len(batch) == 1000 {
			if err := idx.PutPackages(batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := idx.PutPackages(batch); err != nil {
		return err
	}
	// Settle now rather than in the server being measured.
	if err := idx.Flatten(); err != nil {
		return err
	}
	f, err := os.Create(filepath.Join(dir, "ids.txt"))
	if err != nil {
		return err
	}
	for range min(sample, n) {
		fmt.Fprintln(f, id(rand.IntN(n)))
	}
	if err := f.Close(); err != nil {
		return err
	}
	c, err := idx.Counts()
	if err != nil {
		return err
	}
	log.Printf("%d build-ids in %d packages in %s", c.BuildIDs, c.Packages, time.Since(start).Round(time.Millisecond))
	return nil
}
