package raft

import (
	"math"

	"github.com/raftkv/raftkv/raft/quorum"
	pb "github.com/raftkv/raftkv/raftpb"
)

// maxTerm is the largest term; campaigning past it would wrap around.
const maxTerm = pb.Term(math.MaxUint64)

// campaign starts an election (§5.2), first as a PreVote round unless
// transfer is set (a leader handing over asked for it) or PreVote is off.
func (r *Raft) campaign(transfer bool) {
	if !r.promotable() || r.term == maxTerm {
		// At the largest term there is no next one to campaign in; only a
		// forged message can bring a server here, and wrapping to term 0
		// would break "terms only increase".
		return
	}
	if !transfer && !r.cfg.DisablePreVote {
		r.becomePreCandidate()
		r.requestVotes(pb.MsgPreVote, r.term+1, nil)
		r.retryEarly()
		return
	}
	r.startElection(transfer)
}

// startElection is the real election: a new term and a vote for itself.
func (r *Raft) startElection(transfer bool) {
	r.becomeCandidate()
	var ctx []byte
	if transfer {
		ctx = campaignTransfer
	}
	r.requestVotes(pb.MsgRequestVote, r.term, ctx)
	if !transfer {
		r.retryEarly()
	}
}

func (r *Raft) requestVotes(t pb.MessageType, term pb.Term, ctx []byte) {
	r.trk.RecordVote(r.id, true)
	if r.trk.TallyVotes() == quorum.VoteWon {
		r.electionWon()
		return
	}
	lastIndex, lastTerm := r.log.lastIndex(), r.log.lastTerm()
	for _, id := range r.trk.Voters.IDs() {
		if id == r.id {
			continue
		}
		r.send(pb.Message{To: id, Type: t, Term: term, Index: lastIndex, LogTerm: lastTerm, Context: ctx})
	}
}

func (r *Raft) electionWon() {
	if r.role == PreCandidate {
		r.startElection(false)
		return
	}
	r.becomeLeader()
}

// handleVoteResponse counts a vote: a majority (of each half of a joint
// configuration, §6) makes the candidate leader; a majority against sends it
// back to following (§5.2).
func (r *Raft) handleVoteResponse(m pb.Message) {
	r.trk.RecordVote(m.From, !m.Reject)
	switch r.trk.TallyVotes() {
	case quorum.VoteWon:
		r.electionWon()
	case quorum.VoteLost:
		r.becomeFollower(r.term, pb.None)
		// After a signal that the leader's connection closed, try again
		// soon (closed.go).
		r.retryEarly()
	}
}
