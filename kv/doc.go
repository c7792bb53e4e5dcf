// Package kv is the replicated state machine behind raftkv's HTTP API: a
// multi-version ordered map shaped after etcd v3's data model — a store
// revision, per-key create/mod revision, version and lease, history
// readable at past revisions until compacted, ranges, transactions,
// leases and watches — with single-key conditional writes and appends, an
// exactly-once session table and a streaming, checksummed snapshot format.
//
// The node runtime drives a Store through four methods, without kv importing
// node: Apply(index, cmd) for each committed command in log order,
// Snapshot() for a point-in-time view to write out, Restore(r) to replace
// the state from such a stream, and AppliedIndex(). Commands are proposed
// in the binary encoding of EncodeCommand; the server validates them first
// with Config.Validate so that a request that can only fail is refused
// without a round through the log.
//
// # Invariants
//
//   - Determinism. A Result and the state after it depend only on the state
//     before, the command bytes, its index and the Config: no clock, no
//     randomness, no map iteration. Every replica with the same Config that
//     applies the same log has the same Hash at every index. A malformed
//     command or one over a limit is rejected alike everywhere (and changes
//     nothing); a broken caller (an index out of order) panics rather than
//     let the replica diverge.
//   - The store revision starts at 1 and rises by exactly one for each
//     command that changes at least one key, at the end of that command;
//     every key it changes gets that revision as its mod revision, with a
//     sub-revision giving the order of the changes within the command. A
//     command that changes nothing (a failed compare, a read-only
//     transaction, a lease grant, a compaction) leaves it alone.
//   - History. Each key keeps its versions (oldest first; the last one is
//     the present, a tombstone if deleted). A read at revision r sees, for
//     each key, its newest version with mod revision <= r. Compaction at c
//     keeps every version with mod revision >= c and each key's newest
//     older one unless that is a delete; reads below c fail with a
//     *CompactedError. Compaction happens by command (OpCompact) and, at
//     HistoryRevisions behind the present, inside Apply, so at the same
//     revision on every replica.
//   - All or nothing. Every reason a command can be refused is decided
//     before its first write; Apply panics if a refusal follows a write.
//   - Leases. A key's present version names a lease that exists; revoking
//     a lease deletes its keys in one revision. Lease expiry is not here:
//     the leader decides it and proposes the revoke.
//   - Exactly once. A command with an idempotency key already in the table
//     returns the first attempt's Result (same Index) and changes nothing.
//     Entries are forgotten by log position: a session recorded at index i
//     is gone once an Apply reaches i+SessionWindow, and at MaxSessions the
//     oldest is dropped first. Rejections by Config.Validate are not
//     recorded: the same bytes are rejected the same way at any index.
//   - The state's size (Size: keys, every version kept of them, history
//     included, and sessions, each with a fixed overhead) stays within
//     Config.QuotaBytes: a command whose puts would pass it is rejected
//     with CodeNoSpace; deletes and compactions always go through, and
//     compaction frees history (quota.go).
//   - A stored value is never written after it is stored (append makes a
//     new slice). That is what lets snapshots and readers share values with
//     later Applies without copying.
//
// # Snapshots
//
// Snapshot clones the record and lease B-trees copy-on-write
// (github.com/google/btree, chosen for its O(1) lazy Clone) and starts a
// new generation of records: Apply changes a record in place, found
// through a map by key rather than by descending the tree, only if it was
// made or copied since the last snapshot, and copies it into the tree
// first otherwise; a version array a snapshot may share is only appended
// past every clone's length, resliced or replaced (see record). It clones
// the session table's queue of chunks
// (sharing the chunks, which are never rewritten), so it costs O(1) plus a
// pointer per 256 sessions, and the view it returns can be written from
// another goroutine while Apply continues. The stream is
// written and read through bufio, never held whole in memory, and ends with
// a CRC32C. Restore builds the new state aside, verifies the checksum and
// every ordering invariant, and swaps it in only then: a corrupt stream
// returns an error wrapping ErrCorrupt and leaves the state as it was. A
// stream in format 1 (before revisions) is refused alike, wrapping
// ErrOldSnapshotFormat: only ConvertSnapshot converts it, for a backup
// that seeds every member at the same index.
//
// # Concurrency
//
// Apply, Snapshot and Restore are meant for the one apply goroutine, though
// they lock and so are safe anywhere. Get, List, Range, Revision, Lease,
// Leases, Watch, Len, Sessions, AppliedIndex and Hash are safe from any
// goroutine concurrently with them:
// a sync.RWMutex guards the tree and the table, Applies take it for writing and reads for
// reading. Slices returned by Get and List are shared and must not be
// modified. A snapshot view's WriteTo may run concurrently with anything.
//
// Watchers: Apply hands each revision's changes to the live watchers'
// bounded queues without blocking (a full queue cancels its watcher);
// one goroutine per Watcher calls Next, which reads history under the
// read lock until it reaches the present and then its queue.
package kv
