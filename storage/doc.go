// Package storage is raftkv's durable storage: a write-ahead log (Log)
// that implements raft.Storage, and a store of snapshot files (Snapshots).
// Both run on a vfs.FS, so tests and the simulator can crash them and
// inject faults.
//
// # Log layout
//
// A log directory holds a LOCK file and segment files named
// <seq>-<first>.wal (16 hex digits each): seq counts from 1 with no gaps;
// first is the index of the first entry the segment may hold. A segment is
// a sequence of records (length, type, CRC32C, payload; see record.go). The
// first record is a header that also carries the hard state and snapshot
// marker in force when the segment began, so deleting older segments loses
// neither. Later records are entries, hard states, installed snapshots,
// snapshot markers from Compact and, last, a seal naming the successor.
// Replaying the records in order rebuilds the log: an entry at or below
// the last index replaces the suffix from it, in memory and on replay alike.
//
// # Invariants
//
//   - Sync returns only after fdatasync of every segment written since the
//     last Sync, and after the directory fsync of any segment it created or
//     removed. One fdatasync covers all Saves made before Sync was called.
//   - Records are never overwritten; a segment file appears complete and
//     synced (temporary name, fsync, rename, directory fsync).
//   - Every segment but the last is synced in full before its successor
//     exists, so a torn write can only be at the end of the last segment.
//   - Recovery verifies every record. A bad record at the end of the last
//     segment with nothing valid after it is a torn write: it is cut off and
//     logged. Any other bad record, a missing segment (a gap in seqs, a sealed
//     segment without successor, entries no snapshot covers) or an
//     impossible record is corruption: Open fails with a *CorruptError naming
//     the file and offset, and nothing after a bad record is ever loaded.
//     (A damaged final record of the last segment cannot be told from a torn
//     write; it is cut off like one.)
//   - The log never has a hole: Save rejects entries that would leave one,
//     and recovery refuses a log that has one.
//   - Segments are deleted only when a durable snapshot marker covers all
//     their live entries, oldest first, and never the last one.
//   - A write, fsync or remove error is sticky: every later call returns it.
//     After a failed fsync the page cache may claim data the disk lost, so the
//     only safe move is to restart and recover from what is on disk.
//
// # Concurrency
//
// *Log and *Snapshots are safe for concurrent use. Log.mu guards the
// in-memory state (index, cache, pending batch). Save encodes records into
// the pending batch under mu. Sync hands the batch to whichever goroutine
// is first (the flusher), which writes and fdatasyncs it with mu released,
// so other goroutines keep saving the next batch meanwhile and later Syncs
// wait for it and then flush once for all of them (group commit). Reads
// (Entries, Term, ...) take mu; they read recent entries from the cache,
// which holds every entry not yet written to a file, and older ones from
// the segment files. A SnapshotWriter belongs to one goroutine.
//
// No dependency beyond the standard library: durability code is the
// product, and we want to read all of it.
package storage
