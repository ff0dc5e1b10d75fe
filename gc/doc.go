// Package gc collects what retraced no longer needs: packages only removed
// sources listed, stored files no package references, uncompressed copies
// beyond their budget, temp files of interrupted writes, and whatever the
// owners of other state (retrace tasks, sysroots) report as expired.
//
// A collection plans first, then executes; `retraced gc --dry-run` prints
// the plan. gc decides, the owners delete: the index deletes packages, the
// blob pool deletes blobs, the retrace service deletes tasks.
//
// A blob stored as a delta keeps its base: gc reads the header of every
// referenced blob and counts a delta's base as referenced.
//
// Nothing in use is collected: blobs written after the protection cutoff
// (the start of the oldest running sync) are kept even when unreferenced,
// since a running sync references its blobs only when it commits.
//
// Of retraced, it may import only gc/plan, index and index/blob. The
// owners it asks to delete (retrace's tasks and sysroots) implement
// [Owner], which is gc/plan's, so gc imports none of them and they need
// not import gc.
package gc
