package driver

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

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
