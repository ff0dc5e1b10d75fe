// Package plan is the contract between gc and the components whose state
// it collects: an [Owner] lists [Item]s and deletes them when gc says so.
// It stands apart from gc so that an owner (the retrace task protocol)
// reaches none of what gc itself needs, the index and the blob pool.
//
// Of retraced, it may import nothing.
package plan
