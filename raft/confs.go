package raft

import (
	"fmt"
	"slices"

	"github.com/raftkv/raftkv/raft/confchange"
	"github.com/raftkv/raftkv/raft/tracker"
	pb "github.com/raftkv/raftkv/raftpb"
)

// appendToLog appends (or replaces a suffix with) ents and keeps the
// configuration history in step: a configuration takes effect as soon as
// its entry is appended, and reverts if that entry is truncated (§6).
func (r *Raft) appendToLog(ents []pb.Entry) pb.Index {
	from := ents[0].Index
	changed := false
	for len(r.confs) > 1 && r.confs[len(r.confs)-1].index >= from {
		r.confs = r.confs[:len(r.confs)-1]
		changed = true
	}
	for i := range ents {
		if ents[i].Type != pb.EntryConfChange {
			continue
		}
		cs, err := pb.DecodeConfState(ents[i].Data)
		if err != nil {
			// Leaders validate what they append and followers what they
			// receive; reaching here means memory or code is broken.
			panic(fmt.Sprintf("raft: configuration entry %d does not decode: %v", ents[i].Index, err))
		}
		r.confs = append(r.confs, confRecord{index: ents[i].Index, conf: cs})
		changed = true
	}
	last := r.log.append(ents...)
	if changed {
		r.applyConf()
	}
	return last
}

// applyConf installs the configuration in force in the tracker and adjusts
// this server's role to it.
func (r *Raft) applyConf() {
	r.trk.SetConfig(tracker.ConfigFromState(r.conf()), r.retiring(), r.log.lastIndex()+1)
	switch r.role {
	case Leader:
		if pr := r.trk.Progress[r.id]; pr != nil {
			pr.Match = max(pr.Match, r.stableLastIndex())
		}
		if r.leadTransferee != pb.None && r.trk.Progress[r.leadTransferee] == nil {
			r.abortLeaderTransfer()
		}
		// A smaller configuration may make entries committed at once.
		if r.maybeCommit() {
			r.appendPending = true
		}
	case Candidate, PreCandidate:
		if !r.promotable() {
			r.becomeFollower(r.term, pb.None)
		}
	default:
		r.role = r.followerRole()
	}
}

// retiring lists the members that the configuration in force removes while
// it is not yet committed: the leader keeps replicating to them so that they
// append it and learn they were removed (API contract: role "removed").
func (r *Raft) retiring() []pb.NodeID {
	n := len(r.confs)
	if n < 2 {
		return nil
	}
	cur, prev := r.confs[n-1].conf, r.confs[n-2].conf
	var out []pb.NodeID
	for _, l := range [][]pb.NodeID{prev.Voters, prev.VotersOutgoing, prev.Learners} {
		for _, id := range l {
			if !cur.Contains(id) {
				out = append(out, id)
			}
		}
	}
	return out
}

// compactConfs drops history the commit index has made final.
func (r *Raft) compactConfs() {
	n := 0
	for n+1 < len(r.confs) && r.confs[n+1].index <= r.log.committed {
		n++
	}
	if n > 0 {
		r.confs = append(r.confs[:0], r.confs[n:]...)
	}
}

// commitConfs runs after the commit index rises: a committed joint
// configuration is followed by C_new; a leader outside a committed C_new
// steps down (§6).
func (r *Raft) commitConfs() {
	before := len(r.confs)
	r.compactConfs()
	if len(r.confs) < before && len(r.confs) == 1 {
		// The configuration is final: stop replicating to members it removed.
		r.trk.SetConfig(tracker.ConfigFromState(r.conf()), nil, r.log.lastIndex()+1)
	}
	if r.role != Leader || len(r.confs) != 1 {
		return // an uncommitted configuration is still pending
	}
	cur := r.conf()
	if cur.Joint() {
		next, err := confchange.Leave(cur)
		if err != nil {
			panic(fmt.Sprintf("raft: leaving joint configuration %s: %v", cur, err))
		}
		r.appendLocal([]pb.Entry{{Type: pb.EntryConfChange, Data: pb.AppendConfState(nil, next)}})
		return
	}
	if !r.trk.Voters.Contains(r.id) {
		// C_new is committed and we are not in it: hand over and step down.
		r.becomeFollower(r.term, pb.None)
	}
}

// ConfState returns the configuration in force.
func (r *Raft) ConfState() pb.ConfState { return r.conf() }

// ProposeConfChange starts a membership change to target by joint consensus.
// New voters must already be learners that have caught up to within
// MaxLearnerLag entries.
func (r *Raft) ProposeConfChange(target confchange.Target) (pb.Index, pb.Term, error) {
	if err := r.checkProposal(); err != nil {
		return 0, 0, err
	}
	if len(r.confs) > 1 || r.conf().Joint() {
		return 0, 0, ErrConfChangeInProgress
	}
	cur := r.conf()
	next, err := confchange.Enter(cur, target)
	if err != nil {
		return 0, 0, err
	}
	for _, id := range next.Voters {
		if cur.IsVoter(id) {
			continue
		}
		pr := r.trk.Progress[id]
		if pr == nil || !slices.Contains(cur.Learners, id) {
			// Progress alone is not enough: a member being removed keeps
			// one until its removal commits, without being a learner.
			return 0, 0, fmt.Errorf("%w: %d must join as a learner before it can vote", confchange.ErrInvalid, id)
		}
		if pr.Match+r.cfg.MaxLearnerLag < r.log.lastIndex() {
			return 0, 0, fmt.Errorf("%w: %d holds up to %d, the log is at %d (allowed lag %d)",
				ErrLearnerLagging, id, pr.Match, r.log.lastIndex(), r.cfg.MaxLearnerLag)
		}
	}
	first := r.appendLocal([]pb.Entry{{Type: pb.EntryConfChange, Data: pb.AppendConfState(nil, next)}})
	if r.log.err != nil {
		return 0, 0, r.log.err // a read failed on the way: the core has stopped
	}
	return first, r.term, nil
}
