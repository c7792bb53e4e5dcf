package raft

import pb "github.com/raftkv/raftkv/raftpb"

// Role is a server's part in the protocol.
type Role uint8

const (
	Follower Role = iota
	Candidate
	PreCandidate
	Leader
	// Learner receives the log but neither votes nor counts for commitment.
	Learner
	// Removed is a server outside the configuration in force. It still
	// answers votes, and campaigns while a pending configuration that
	// leaves it out has not committed (dissertation §4.2.2); once that
	// configuration commits it stays passive.
	Removed
)

var roleNames = [...]string{"follower", "candidate", "precandidate", "leader", "learner", "removed"}

func (r Role) String() string {
	if int(r) < len(roleNames) {
		return roleNames[r]
	}
	return "role?"
}

// SoftState is volatile state worth reporting: who leads and what this
// server is.
type SoftState struct {
	Lead pb.NodeID
	Role Role
}

// ReadState releases a read: once the local state machine has applied Index,
// the read with this Context may be served linearizably (dissertation §6.4).
type ReadState struct {
	Index   pb.Index
	Context []byte
}

// Ready is a batch of work the core hands to its runtime. The runtime must,
// in this order:
//
//  1. send Messages (they may leave at once, even before anything below is
//     durable: the leader replicates in parallel with its own fsync, §10.2.1);
//  2. persist Snapshot (if any), then Entries (which replace any stored
//     suffix starting at Entries[0].Index), then HardState, and make them
//     durable (fsync) when MustSync is set;
//  3. only then send MessagesAfterPersist: votes and acknowledgements that
//     promise durability, and any message of a term not yet durable;
//  4. apply CommittedEntries in order (it may hand them to another goroutine)
//     and restore Snapshot into the state machine if one is set;
//  5. call Advance with this Ready.
//
// Readys are numbered. Several may be outstanding at once; they must be
// persisted and advanced in the order they were handed out.
type Ready struct {
	ID uint64

	// SoftState is non-nil when it changed since the previous Ready.
	SoftState *SoftState
	// HardState is the state to persist; HardStateChanged says whether it
	// differs from what the previous Ready asked for.
	HardState        pb.HardState
	HardStateChanged bool
	// Snapshot, when non-nil, replaces the log and the state machine.
	Snapshot *pb.SnapshotMeta
	Entries  []pb.Entry

	Messages             []pb.Message
	MessagesAfterPersist []pb.Message

	CommittedEntries []pb.Entry
	ReadStates       []ReadState

	// MustSync is set when the Ready holds anything that must be durable
	// before MessagesAfterPersist leave.
	MustSync bool
}

// IsEmpty reports whether the Ready carries no work.
func (rd *Ready) IsEmpty() bool {
	return rd.SoftState == nil && !rd.HardStateChanged && rd.Snapshot == nil &&
		len(rd.Entries) == 0 && len(rd.Messages) == 0 && len(rd.MessagesAfterPersist) == 0 &&
		len(rd.CommittedEntries) == 0 && len(rd.ReadStates) == 0
}
