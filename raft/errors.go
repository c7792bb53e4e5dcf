package raft

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// NotLeaderError is returned by requests only the leader can serve. Leader
// is the leader this server knows of (0 if none) so a caller can redirect.
type NotLeaderError struct {
	Leader pb.NodeID
}

func (e *NotLeaderError) Error() string {
	if e.Leader == pb.None {
		return "raft: not the leader, and no leader is known"
	}
	return fmt.Sprintf("raft: not the leader; the leader is %d", e.Leader)
}

var (
	// ErrProposalDropped is returned when the leader's uncommitted bytes
	// would pass MaxUncommittedBytes: back off and retry. Nothing was appended.
	ErrProposalDropped = errors.New("raft: proposal dropped: too many uncommitted bytes")
	// ErrTransferring is returned for proposals while leadership is being
	// handed over.
	ErrTransferring = errors.New("raft: leadership transfer in progress")
	// ErrConfChangeInProgress is returned when a membership change is asked
	// for while another has not completed.
	ErrConfChangeInProgress = errors.New("raft: a membership change is already in progress")
	// ErrLearnerLagging is returned when a learner to be promoted is not yet
	// caught up.
	ErrLearnerLagging = errors.New("raft: learner is not caught up")
	// ErrStepLocal is returned when a runtime-only message arrives through Step.
	ErrStepLocal = errors.New("raft: local message type arrived from the network")
	// ErrInvalidMessage is returned for messages that cannot be meant for
	// this server (wrong recipient, no sender, no term).
	ErrInvalidMessage = errors.New("raft: invalid message")
	// ErrStorageFailed is wrapped, with the storage's own error, by the
	// error of a core that could not read its log: Storage.Term or Entries
	// failed for an entry it holds. The core has stopped: Status reports
	// the error and every later call that can return one returns it. The
	// runtime must stop the server and restart it from its durable state.
	ErrStorageFailed = errors.New("raft: storage read failed, the core has stopped")
	// ErrReadyOrder is returned when Advance is called with a Ready other
	// than the oldest outstanding one.
	ErrReadyOrder = errors.New("raft: Advance called out of order")
)
