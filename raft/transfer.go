package raft

import (
	"fmt"

	"github.com/raftkv/raftkv/raft/tracker"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TransferLeader hands leadership to voter to (dissertation §3.10): the
// leader stops taking proposals, brings the target up to date, then sends
// it TimeoutNow so it campaigns at once. The transfer is abandoned after an
// election timeout. On a follower the request is forwarded to the leader.
func (r *Raft) TransferLeader(to pb.NodeID) error {
	if r.log.err != nil {
		return r.log.err
	}
	if r.role != Leader {
		if r.lead == pb.None {
			return &NotLeaderError{}
		}
		r.send(pb.Message{To: r.lead, Type: pb.MsgTransferLeader, Index: pb.Index(to)})
		return nil
	}
	if err := r.leaderTransfer(to); err != nil {
		return err
	}
	return r.log.err // a read failed while catching the target up
}

func (r *Raft) leaderTransfer(to pb.NodeID) error {
	if to == r.id {
		return nil
	}
	pr := r.trk.Progress[to]
	if pr == nil || pr.IsLearner || !r.trk.Voters.Contains(to) {
		return fmt.Errorf("raft: cannot transfer leadership to %d: not a voter", to)
	}
	if r.leadTransferee == to {
		return nil
	}
	r.leadTransferee = to
	r.electionElapsed = 0 // the transfer has one election timeout
	if pr.Match == r.log.lastIndex() {
		r.sendTimeoutNow(to)
	} else {
		r.sendAppend(to, true)
	}
	return nil
}

func (r *Raft) sendTimeoutNow(to pb.NodeID) {
	r.leaseForfeited = true
	r.send(pb.Message{To: to, Type: pb.MsgTimeoutNow})
}

func (r *Raft) abortLeaderTransfer() { r.leadTransferee = pb.None }

// ReportUnreachable tells the core that a message to id could not be
// delivered; replication to it falls back to probing.
func (r *Raft) ReportUnreachable(id pb.NodeID) {
	if r.role != Leader {
		return
	}
	if pr := r.trk.Progress[id]; pr != nil && pr.State == tracker.StateReplicate {
		pr.BecomeProbe()
	}
}

// ReportSnapshot tells the core whether the snapshot sent to id arrived.
// Either way the follower is probed next; after a success its reply to the
// snapshot moves it on.
func (r *Raft) ReportSnapshot(id pb.NodeID, ok bool) {
	if r.role != Leader {
		return
	}
	pr := r.trk.Progress[id]
	if pr == nil || pr.State != tracker.StateSnapshot {
		return
	}
	if !ok {
		pr.PendingSnapshot = 0
	}
	pr.BecomeProbe()
	pr.ProbeSent = true // wait for a heartbeat answer before probing
}

// StepDown makes a leader a follower at once, without a new term: the
// runtime uses it when it can no longer serve (a stalled disk).
func (r *Raft) StepDown() {
	if r.role == Leader {
		r.becomeFollower(r.term, pb.None)
	}
}
