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
// Segment files are preallocated: a file is filled with zeros and synced
// under a temporary name (<seq>.next.wal.tmp) before it gets its header and
// its segment name, so appending a record overwrites zeros inside the file
// and fdatasync has no size change to commit. On the real file system the
// next segment's file is prepared by a goroutine while the current one
// fills; on any other (FaultFS) inline at the roll, so that crashes stay
// deterministic. The zeros go to the disk a megabyte at a time
// (vfs.WriteBack) before the final sync, as a snapshot's data does while
// it is written: left to that sync, tens of megabytes sat in the disk's
// queue ahead of the log's own syncs, which every write waits for (and
// all members roll and snapshot at about the same index, so at about the
// same moment). The zeros after a segment's last record are its free
// space. A new log's first segment is 4 MiB, each later one twice its
// predecessor, up to Options.SegmentBytes. Segments written without
// preallocation (older logs, a file system whose files cannot write at an
// offset, a failed preparation) end at their last record and work alike.
//
// The next segment is prepared as soon as the current one begins, so a
// full file system shows while the current segment still has room: the
// log then reports it (SpaceOK false) and takes entries only into what is
// left of the current segment short of a reserve for hard states and the
// markers of snapshots and compaction; beyond that Save fails with
// ErrNoSpace and changes nothing. See space.go.
//
// # Invariants
//
//   - Sync returns only after fdatasync of every segment written since the
//     last Sync, and after the directory fsync of any segment it created or
//     removed. One fdatasync covers all Saves made before Sync was called.
//   - Records are never overwritten; only the zeros after the last record
//     are. A segment file appears complete and synced (zero-filled and
//     header written under a temporary name, fsync, rename, directory
//     fsync).
//   - Every segment but the last is synced in full before its successor
//     exists, so a torn write can only be at the end of the last segment
//     (or be the seal of the one before it).
//   - Recovery verifies every record. Where the records of the last
//     segment are followed by nothing or only zeros, the log ends cleanly.
//     A bad record at the end of the last segment with nothing valid after
//     it (up to where the zeros begin) is a torn write: it is cut off (zeroed
//     in a preallocated file, else truncated) and logged. Any other bad
//     record (including non-zero bytes after a seal), a missing segment (a
//     gap in seqs, a sealed segment without successor, entries no snapshot
//     covers) or an impossible record is corruption: Open fails with a
//     *CorruptError naming the file and offset, and nothing after a bad
//     record is ever loaded. (A damaged final record of the last segment
//     cannot be told from a torn write; it is cut off like one. Nor can
//     zeros over the last records of the last segment, from a record
//     boundary on, be told from its free space.)
//   - A torn write is taken to leave a prefix of what was written (or
//     zeros). A disk that persists the sectors of an unsynced overwrite out
//     of order can leave a hole followed by valid records; recovery refuses
//     that as corruption rather than guess that nothing synced is lost.
//   - The log never has a hole: Save rejects entries that would leave one,
//     and recovery refuses a log that has one.
//   - Segments are deleted only when a durable snapshot marker covers all
//     their live entries, oldest first, and never the last one.
//   - While SpaceOK is false, no entry goes into a segment whose file was
//     not prepared in full: appends never meet a full disk.
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
// the segment files. A SnapshotWriter belongs to one goroutine. Open checks
// segments on parallel goroutines and applies their records in log order
// on one.
//
// No dependency beyond the standard library: durability code is the
// product, and we want to read all of it.
package storage
