package node

import (
	"io"

	pb "github.com/raftkv/raftkv/raftpb"
)

// FSM is the replicated state machine. Its methods are called from one
// goroutine (the applier), never concurrently with each other.
type FSM interface {
	// Apply applies a committed command at index and returns its result,
	// which is handed to the Propose call that proposed it. It must be
	// deterministic: every member returns the same for the same command.
	Apply(index pb.Index, cmd []byte) any
	// Snapshot returns a point-in-time image of the state. It should be
	// cheap (a copy-on-write clone): the image is written out by another
	// goroutine while Apply goes on.
	Snapshot() (io.WriterTo, error)
	// Restore replaces the state with the image read from r.
	Restore(r io.Reader) error
}

// LogStore is the durable log: the WAL.
type LogStore interface {
	// The core's read view and the driver's write path.
	Save(hs pb.HardState, snap *pb.SnapshotMeta, ents []pb.Entry) error
	Sync() error
	InitialState() (pb.HardState, pb.ConfState, error)
	Entries(lo, hi pb.Index, maxBytes uint64) ([]pb.Entry, error)
	Term(i pb.Index) (pb.Term, error)
	FirstIndex() pb.Index
	LastIndex() pb.Index
	// Compact drops the log up to meta.Index, which a durable snapshot covers.
	Compact(meta pb.SnapshotMeta) error
	Close() error
}

// SnapshotStore keeps snapshot images as files written and read as streams.
type SnapshotStore interface {
	// Create starts writing the image for meta.
	Create(meta pb.SnapshotMeta) (SnapshotSink, error)
	// Latest returns the newest durable snapshot.
	Latest() (pb.SnapshotMeta, bool)
	// Open streams the image at index, checking its checksum at the end.
	Open(index pb.Index) (pb.SnapshotMeta, io.ReadCloser, error)
}

// SnapshotSink receives one image; Commit makes it durable and visible.
type SnapshotSink interface {
	io.Writer
	Commit() error
	Abort()
}
