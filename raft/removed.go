package raft

import (
	pb "github.com/raftkv/raftkv/raftpb"
)

// The removed-server notice. A server removed while it could not hear the
// leader never receives the entry that removes it, or receives it but
// never learns that it committed (the leader stops replicating to it once
// it has). Its own configuration still makes it a voter, so it campaigns
// for ever; PreVote and the vote lease keep it from disrupting the others
// (§4.2.3), but it never learns the truth (API contract: a removed member
// "stops taking part, role removed"). The members that still hear from it
// tell it.
//
// The rule, receiver R, sender S of a RequestVote or PreVote:
//
//  1. R's committed configuration C (confs[0], at index ci ≥ 1, with term
//     ti) leaves S out, and no later configuration R holds includes S.
//     Committed configurations form one history (Log Matching, Leader
//     Completeness §5.4.3), so S can be a member again only through a
//     configuration entry after ci that adds it.
//  2. S's log, as its request describes it (last index and term), either
//     ends before ci, so it holds no entry after ci that could re-add it;
//     or ends at an entry R holds at or after ci, so by Log Matching it
//     holds R's log up to there: C, and no re-add (R holds none).
//
// Then R answers MsgRemoved{Index: ci, LogTerm: ti} and does nothing else
// with the request. Dropping a request is always safe, and R adopts no
// term from a server outside its configuration, so a removed server cannot
// disrupt R.
//
// S accepts a notice for ci unless it holds a configuration at index ≥ ci
// that includes itself: then it was added again after ci and R has not
// seen that yet. Once accepted, S's role is Removed and it does not
// campaign, until it appends or installs a configuration at or after ci
// that includes it (a re-add then takes effect by itself). The notice is
// not persisted: after a restart S campaigns once more and is told again.
//
// Why this is safe: a notice changes no term, vote, log entry or commit
// index, so no safety property can depend on it; it only stops S from
// campaigning. And it stops no member the cluster needs: S accepts only
// while it holds no configuration at or after ci that includes it, and a
// committed configuration after ci that includes S can only have been
// reached by the leader replicating to S, which brings S that entry (or a
// snapshot with it) and ends the notice. Learners send no vote requests and
// are not told; a removed learner learns only from the entry itself.
//
// Messages other than vote requests from a server outside the
// configuration are handled as before: a removed server that thinks it
// leads is answered with a newer term, steps down, campaigns, and is told.

// stepRemoved handles the notice on both sides; it reports whether m was
// consumed. It runs before the term rules: the notice is about a committed
// configuration, a fact no term makes stale, and a request answered with
// it must not change the receiver's term.
func (r *Raft) stepRemoved(m pb.Message) bool {
	switch m.Type {
	case pb.MsgRemoved:
		r.handleRemoved(m)
		return true
	case pb.MsgRequestVote, pb.MsgPreVote:
		ci, ti, ok := r.removesSender(m)
		if !ok {
			return false
		}
		r.send(pb.Message{To: m.From, Type: pb.MsgRemoved, Index: ci, LogTerm: ti})
		return true
	}
	return false
}

// removesSender applies rules 1 and 2 to a vote request: it returns the
// index and term of the committed configuration that leaves the sender out.
func (r *Raft) removesSender(m pb.Message) (pb.Index, pb.Term, bool) {
	if r.term == 0 {
		return 0, 0, false
	}
	committed := r.confs[0]
	if committed.index == 0 || len(committed.conf.Voters) == 0 {
		// A server that has not yet learned a configuration (one joining)
		// knows nothing committed about anyone.
		return 0, 0, false
	}
	for i := range r.confs {
		if r.confs[i].conf.Contains(m.From) {
			return 0, 0, false
		}
	}
	ti, err := r.log.term(committed.index)
	if err != nil {
		return 0, 0, false
	}
	behind := m.Index < committed.index
	holdsIt := m.Index >= committed.index && r.log.matchTerm(m.Index, m.LogTerm)
	if !behind && !holdsIt {
		return 0, 0, false
	}
	return committed.index, ti, true
}

// handleRemoved is the sender's side: accept the notice unless a
// configuration at or after its index includes this server.
func (r *Raft) handleRemoved(m pb.Message) {
	if m.Index == 0 || r.role == Leader || r.includedFrom(m.Index) {
		return
	}
	r.removedNotice = max(r.removedNotice, m.Index)
	if r.role == Candidate || r.role == PreCandidate {
		r.becomeFollower(r.term, pb.None)
		return
	}
	r.role = r.followerRole()
}

// includedFrom reports whether a configuration this server holds at index
// i or later includes it.
func (r *Raft) includedFrom(i pb.Index) bool {
	for k := len(r.confs) - 1; k >= 0 && r.confs[k].index >= i; k-- {
		if r.confs[k].conf.Contains(r.id) {
			return true
		}
	}
	return false
}

// noticedRemoved reports whether an accepted notice still holds: no
// configuration at or after its index has brought this server back.
func (r *Raft) noticedRemoved() bool {
	return r.removedNotice != 0 && !r.includedFrom(r.removedNotice)
}
