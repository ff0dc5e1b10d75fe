// Package resolver answers "which package has build-id X?" over HTTP: the
// JSON API under /api/v1. It reads the index and never reaches into the
// mirror.
//
// Vocabulary: a lookup resolves one build-id to its matches; a batch
// resolves many; an id not in the index is unresolved.
package resolver
