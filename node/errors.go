package node

import (
	"errors"
	"fmt"
	"strings"

	"github.com/raftkv/raftkv/driver"
	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
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
	// ErrInvalidChange: the membership change asked for is not a valid
	// configuration (a member added twice, no voters left, id 0...).
	ErrInvalidChange = errors.New("node: invalid membership change")
	// ErrUnknownMember names a member that is not in the configuration.
	ErrUnknownMember = errors.New("node: no such member")
	// ErrNotVoter: leadership can go to a voter only.
	ErrNotVoter = errors.New("node: member is not a voter")
	// ErrSnapshotInProgress: a snapshot is already being written.
	ErrSnapshotInProgress = errors.New("node: a snapshot is already being written")
	// ErrRemoved: this member was removed from the cluster.
	ErrRemoved = errors.New("node: this member has been removed from the cluster")
)

// The embedding API returns these errors only: what the core (package
// raft), the configuration rules (raft/confchange) and the runtime
// (package driver) report is translated by mapError, keeping any detail
// as text but none of their errors in the chain, so callers match node
// errors alone.

// mapError translates an error of the core, the configuration rules or
// the runtime into the node's error set.
func (n *Node) mapError(err error) error {
	var nl *raft.NotLeaderError
	switch {
	case err == nil || isNodeError(err):
		return err
	case errors.As(err, &nl):
		return n.notLeaderLed(nl.Leader)
	case errors.Is(err, raft.ErrProposalDropped):
		return ErrBusy
	case errors.Is(err, raft.ErrTransferring):
		return ErrTransferring
	case errors.Is(err, raft.ErrConfChangeInProgress), errors.Is(err, confchange.ErrJoint):
		return ErrChangeInProgress
	case errors.Is(err, raft.ErrLearnerLagging):
		return translated(ErrLearnerLagging, err, raft.ErrLearnerLagging)
	case errors.Is(err, confchange.ErrInvalid):
		return translated(ErrInvalidChange, err, confchange.ErrInvalid)
	case errors.Is(err, driver.ErrSnapshotInProgress):
		return ErrSnapshotInProgress
	case errors.Is(err, raft.ErrStorageFailed):
		// The core stopped on a failed read of its log; the node stops too.
		return translated(ErrStopped, err, raft.ErrStorageFailed)
	}
	// Not one the core documents: keep the text, cut the chain.
	return fmt.Errorf("node: %s", strings.TrimPrefix(err.Error(), "raft: "))
}

// ownErrors are the node's error values.
var ownErrors = []error{ErrBusy, ErrStopped, ErrUnknownOutcome, ErrTransferring, ErrChangeInProgress,
	ErrLearnerLagging, ErrInvalidChange, ErrUnknownMember, ErrNotVoter, ErrSnapshotInProgress, ErrRemoved}

// isNodeError reports whether err is already one of the node's own.
func isNodeError(err error) bool {
	var nl *NotLeaderError
	if errors.As(err, &nl) {
		return true
	}
	for _, e := range ownErrors {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// translated is ours wrapping the detail of err, which wraps theirs: the
// text after theirs is kept, theirs leaves the chain.
func translated(ours, err, theirs error) error {
	detail := strings.TrimPrefix(err.Error(), theirs.Error())
	detail = strings.TrimPrefix(detail, ": ")
	if detail == "" {
		return ours
	}
	return fmt.Errorf("%w: %s", ours, detail)
}
