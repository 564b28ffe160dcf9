// Package store keeps the CRI layer's sandbox and container records, and the kernel objects
// they own, in a bbolt database (<root>/cri/meta.db) so they survive an agent restart.
//
// Each record is immutable metadata plus a status that changes only through Record.Update,
// which runs under the record's own lock and persists the new status before publishing it.
// Records of different objects never share a lock, so slow work on one pod does not block
// another.
package store
