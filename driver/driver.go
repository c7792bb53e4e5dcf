// Package driver is the one piece of code that turns a core's Ready into
// I/O, in the order the persistence contract demands: send what may leave
// now, persist, make durable, send what waited for durability, apply, and
// advance. The node runtime and the simulator both use it, so the simulator
// exercises the production path rather than a copy of it.
//
// Handle is single-threaded: the caller owns the core and calls it from one
// goroutine.
package driver

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// LogStore is the durable log: the core reads it through raft.Storage; the
// driver writes to it.
type LogStore interface {
	raft.Storage
	Saver
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

// Sender delivers messages; it must not block on a slow peer.
type Sender interface {
	Send(msgs []pb.Message)
}

// Applier receives committed entries in log order, and snapshots to
// restore, and applies them (possibly on another goroutine).
type Applier interface {
	Apply(snap *pb.SnapshotMeta, ents []pb.Entry) error
}

// Handle runs one Ready through the persistence contract. It returns the
// Ready it handled. An error from the store is fatal for the server: the
// caller must stop (after a failed fsync the page cache can no longer be
// trusted, so nothing that depended on it may be acknowledged).
func Handle(core *raft.Raft, store LogStore, out Sender, ap Applier) (raft.Ready, error) {
	rd := core.Ready()
	if len(rd.Messages) > 0 {
		out.Send(rd.Messages)
	}
	if err := Persist(store, &rd); err != nil {
		return rd, err
	}
	if len(rd.MessagesAfterPersist) > 0 {
		out.Send(rd.MessagesAfterPersist)
	}
	if rd.Snapshot != nil || len(rd.CommittedEntries) > 0 {
		if err := ap.Apply(rd.Snapshot, rd.CommittedEntries); err != nil {
			return rd, fmt.Errorf("driver: apply: %w", err)
		}
	}
	if err := core.Advance(rd); err != nil {
		return rd, fmt.Errorf("driver: advance: %w", err)
	}
	return rd, nil
}

// Persist writes and syncs what rd asks to be durable.
func Persist(store Saver, rd *raft.Ready) error {
	if err := Write(store, rd); err != nil {
		return err
	}
	if rd.MustSync {
		if err := store.Sync(); err != nil {
			return fmt.Errorf("driver: sync: %w", err)
		}
	}
	return nil
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
