// Package depcheck holds one test, TestImportsAsDocumented, which makes the
// import rule in the package comment of each retraced package a test, in
// the manner of go-containerregistry's depcheck.
//
// Every package of the module states, in its package comment (doc.go, or
// the file that holds it), which other retraced packages it may import, in
// one sentence of one of two forms:
//
//	Of retraced, it may import nothing.
//	Of retraced, it may import only index, index/blob and index/elfnote.
//
// ("it" may be the package's name instead; code blocks, like the one
// above, do not count.) Packages are named by their
// path below the module, github.com/retraced/retraced. The test lists the
// module's packages with the go command (go list, with and without the
// liblzma build tag) and fails when a package imports a retraced package
// its sentence does not name, when the sentence is missing or given twice,
// or when it names a package that does not exist. Only the code a package
// builds from is checked, not its tests: tests may import fixtures and
// fixtures/fixturestore whatever their package's rule. Permission is not
// obligation: a package may import less than its sentence allows.
//
// Of retraced, it may import nothing.
package depcheck
