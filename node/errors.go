package node

import (
	"errors"
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// Every Propose ends in exactly one of: a result (applied), an error that
// says the command was definitely not applied, or ErrUnknownOutcome.

// NotLeaderError: definitely not applied. Leader is the known leader (0 if
// none) and Addr its peer-published client address if known.
type NotLeaderError struct {
	Leader pb.NodeID
	Addr   string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == pb.None {
		return "node: not the leader, and no leader is known"
	}
	return fmt.Sprintf("node: not the leader; the leader is %d", e.Leader)
}

var (
	// ErrBusy: definitely not applied; the proposal queue or the leader's
	// uncommitted-bytes bound is full. Back off and retry.
	ErrBusy = errors.New("node: busy, proposal queue full")
	// ErrStopped: definitely not applied; the node stopped before the
	// command was appended (or is not running).
	ErrStopped = errors.New("node: stopped")
	// ErrUnknownOutcome: the command was appended to the leader's log, but
	// leadership was lost, the node stopped, or the caller's context ended
	// before it applied. It may or may not take effect.
	ErrUnknownOutcome = errors.New("node: outcome unknown: the command may or may not be applied")
	// ErrTransferring: definitely not applied; leadership is being handed over.
	ErrTransferring = errors.New("node: leadership transfer in progress")
	// ErrChangeInProgress: a membership change is already running.
	ErrChangeInProgress = errors.New("node: a membership change is already in progress")
	// ErrLearnerLagging: a learner cannot be promoted before it has caught up.
	ErrLearnerLagging = errors.New("node: learner is not caught up")
	// ErrUnknownMember names a member that is not in the configuration.
	ErrUnknownMember = errors.New("node: no such member")
	// ErrRemoved: this member was removed from the cluster.
	ErrRemoved = errors.New("node: this member has been removed from the cluster")
)
