// Package web is retraced's operations surface over HTTP: the mirrors API
// (list, add, remove, sync), Prometheus metrics, the health check, and the
// status page for mirror admins.
//
// It uses the mirror and index through their exported API only, and never
// writes to the index itself: syncs run through the mirror, in the
// background goroutine Ops.Run owns.
package web
