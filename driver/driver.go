package driver

import (
	"fmt"

	"github.com/raftkv/raftkv/internal/stagetrace"
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// LogStore is the durable log: the core reads it through raft.Storage; the
// persister writes to it.
type LogStore interface {
	raft.Storage
	Saver
}

// SnapshotsKept is how many snapshot files a member keeps: the newest, and
// older ones the log may still be compacted to (CompactPoint).
const SnapshotsKept = 3

// RecoverLog is what Recover needs of the log.
type RecoverLog interface {
	Saver
	InitialState() (pb.HardState, pb.ConfState, error)
	Term(i pb.Index) (pb.Term, error)
}

// Recover is the first step of every start: it returns the newest durable
// snapshot (ok false: none), which the caller restores its state machine
// from before building the core. A snapshot received from a leader may be
// durable while the log record that installs it was lost in a crash; then
// the log does not hold the snapshot's last entry, and Recover installs the
// snapshot in the log (durably) as the lost record would have.
func Recover(log RecoverLog, latest func() (pb.SnapshotMeta, bool)) (meta pb.SnapshotMeta, ok bool, err error) {
	meta, ok = latest()
	if !ok {
		return pb.SnapshotMeta{}, false, nil
	}
	if t, err := log.Term(meta.Index); err == nil && t == meta.Term {
		return meta, true, nil
	}
	hs, _, err := log.InitialState()
	if err != nil {
		return meta, true, fmt.Errorf("driver: recover: %w", err)
	}
	hs.Commit = max(hs.Commit, meta.Index)
	hs.Term = max(hs.Term, meta.Term)
	if err := log.Save(hs, &meta, nil); err != nil {
		return meta, true, fmt.Errorf("driver: installing snapshot %d in the log: %w", meta.Index, err)
	}
	if err := log.Sync(); err != nil {
		return meta, true, fmt.Errorf("driver: installing snapshot %d in the log: %w", meta.Index, err)
	}
	return meta, true, nil
}

// Saver is the write side of the log.
type Saver interface {
	// Save writes (possibly buffered) a hard state (zero: unchanged), an
	// installed snapshot (nil: none; it resets the log) and entries that
	// replace any stored suffix from ents[0].Index.
	Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error
	// Sync makes everything saved durable and returns only then.
	Sync() error
}

// PersistBatch does the persister's part of the persistence contract for
// Readys handed out in order (raft/ready.go, steps 2 and 3): write them
// all, fsync once if any of them must be durable (group commit across
// Readys), and only then send their MessagesAfterPersist. The caller then
// reports the last one with Runtime.PersistDone. An error is fatal for the
// member: after a failed fsync the page cache can no longer be trusted, so
// nothing that depended on it may be acknowledged.
func PersistBatch(store Saver, rds []raft.Ready, send func([]pb.Message)) error {
	var last uint64
	if stagetrace.Enabled {
		last = lastEntryIndex(rds)
		stagetrace.Mark(stagetrace.PersistStart, last, 0)
	}
	sync := false
	for i := range rds {
		if err := Write(store, &rds[i]); err != nil {
			return err
		}
		sync = sync || rds[i].MustSync
	}
	if sync {
		if err := store.Sync(); err != nil {
			return fmt.Errorf("driver: sync: %w", err)
		}
	}
	stagetrace.Mark(stagetrace.PersistDone, last, 0)
	for i := range rds {
		if len(rds[i].MessagesAfterPersist) > 0 {
			send(rds[i].MessagesAfterPersist)
		}
	}
	return nil
}

// lastEntryIndex is the index of the last entry rds carry, or 0.
func lastEntryIndex(rds []raft.Ready) uint64 {
	for i := len(rds) - 1; i >= 0; i-- {
		if n := len(rds[i].Entries); n > 0 {
			return uint64(rds[i].Entries[n-1].Index)
		}
	}
	return 0
}

// Write saves what rd asks to be durable without syncing: a runtime that
// has several Readys in hand writes them all and syncs once (group commit
// across Readys), before it releases any of their MessagesAfterPersist.
func Write(store Saver, rd *raft.Ready) error {
	var hs pb.HardState
	if rd.HardStateChanged {
		hs = rd.HardState
	}
	if rd.HardStateChanged || rd.Snapshot != nil || len(rd.Entries) > 0 {
		if err := store.Save(hs, rd.Snapshot, rd.Entries); err != nil {
			return fmt.Errorf("driver: save: %w", err)
		}
	}
	return nil
}
