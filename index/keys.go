package index

import (
	"fmt"
	"strings"
)

// Key schema. Every key the store writes is built here, and only here.
// Prefixes carry a schema version so a future layout can live beside this
// one during a migration.
//
//	v1/p/<nevra>              Package (JSON): the package and its kept files
//	v1/b/<raw build-id>       []Match (binary, codec.go): files carrying the id
//	v1/pr/<nevra>             the package's sources, NUL-separated: what a
//	                          lookup shows as "repos", without decoding the
//	                          package (a store written before this key
//	                          existed falls back to the package)
//	v1/s/<source>             the mirror's record of a source (opaque bytes)
//	v1/ss/<source>            the mirror's crawl state of a source (opaque bytes)
//	v1/sp/<source>\x00<nevra> membership: the source has listed the package;
//	                          value = the RPM checksum the source gave
//	v1/f/<path>\x00<nevra>    the path index: one key per file that has a
//	                          build-id match; value = kind byte, str
//	                          build-id, str RPM file name (codec.go)
//	v1/m/counts               counters (binary, codec.go)
//	v1/m/paths                present once the path index covers every
//	                          package (a store written before it existed
//	                          is indexed when next opened writable)
const (
	prefixPackage   = "v1/p/"
	prefixBuildID   = "v1/b/"
	prefixRepos     = "v1/pr/"
	prefixSource    = "v1/s/"
	prefixState     = "v1/ss/"
	prefixSourcePkg = "v1/sp/"
	prefixPath      = "v1/f/"
	keyCounts       = "v1/m/counts"
	keyPathsBuilt   = "v1/m/paths"
)

func packageKey(n NEVRA) []byte { return []byte(prefixPackage + n.String()) }

func reposKey(n NEVRA) []byte { return []byte(prefixRepos + n.String()) }

func packageFromKey(k []byte) (NEVRA, error) {
	return ParseNEVRA(strings.TrimPrefix(string(k), prefixPackage))
}

func buildIDKey(id BuildID) []byte { return append([]byte(prefixBuildID), id.b...) }

func buildIDFromKey(k []byte) BuildID {
	return BuildID{string(k[len(prefixBuildID):])}
}

func sourceKey(name string) []byte { return []byte(prefixSource + name) }

func stateKey(name string) []byte { return []byte(prefixState + name) }

func sourcePkgPrefix(source string) []byte {
	return []byte(prefixSourcePkg + source + "\x00")
}

func sourcePkgKey(source string, n NEVRA) []byte {
	return append(sourcePkgPrefix(source), n.String()...)
}

func sourcePkgFromKey(source string, k []byte) (NEVRA, error) {
	return ParseNEVRA(string(k[len(sourcePkgPrefix(source)):]))
}

func pathKey(path string, n NEVRA) []byte {
	return append(append([]byte(prefixPath), path...), append([]byte{0}, n.String()...)...)
}

// pathFromKey splits a path key into the file's path and its package.
func pathFromKey(k []byte) (string, NEVRA, error) {
	rest := string(k[len(prefixPath):])
	i := strings.LastIndexByte(rest, 0)
	if i < 0 {
		return "", NEVRA{}, fmt.Errorf("%w: path key %q without a package", errCodec, k)
	}
	n, err := ParseNEVRA(rest[i+1:])
	return rest[:i], n, err
}
