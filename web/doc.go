// Package web is retraced's operations surface over HTTP: the mirrors API
// (list, add, remove, sync), Prometheus metrics, the health check, and the
// status page for mirror admins. It also owns serve's one [Scheduler],
// which runs the timed work on cron schedules by an injected [Clock]:
// each source's syncs (kept by [Ops]), and the jobs serve adds (gc, the
// expiry of retrace tasks).
//
// It uses the mirror and index through their exported API only, and never
// writes to the index itself: syncs run through the mirror, in the
// background goroutine Ops.Run owns. Whether the disk has room for a sync
// is gc/diskspace's Policy, shared with the rest of serve. Of retraced, it
// may import only gc/diskspace, index and mirror.
package web
