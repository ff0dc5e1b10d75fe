// Package web is retraced's operations surface over HTTP: the mirrors API
// (list, add, remove, sync), Prometheus metrics, the health check, and the
// pages for people: the status page (each source's last syncs, a
// storage-over-time chart, the task queue), the build-id search, and the
// upload form, which sends a core to the task protocol's handler (serve
// passes it in) as a retrace task and shows the task until it ends. It
// also owns serve's one [Scheduler], which runs the timed work on cron
// schedules by an injected [Clock]: each source's syncs (kept by [Ops]),
// and the jobs serve adds (gc, the expiry of retrace tasks).
//
// It uses the mirror and index through their exported API only, and never
// writes to the index itself: syncs run through the mirror, in the
// background goroutine Ops.Run owns. Whether the disk has room for a sync
// or an upload is gc/diskspace's Policy, shared with the rest of serve; a
// refused upload is answered as internal/httpbound answers one. Of
// retraced, it may import only gc/diskspace, index, internal/httpbound and mirror.
package web
