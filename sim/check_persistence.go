package sim

import pb "github.com/raftkv/raftkv/raftpb"

// Persistence (Figure 2, "persistent state on all servers"): currentTerm and
// votedFor are durable before any message that depends on them leaves, so
// a server's term never decreases and it never votes twice in one term,
// whatever crashes and restarts happen in between.
type persistenceHistory struct {
	// votes records every granted vote, by voter and term.
	votes map[termVoter]pb.NodeID
	// maxSent is the highest term each replica has sent a message in
	// (PreVote traffic aside, which speaks of a future term).
	maxSent [MaxReplicas + 1]pb.Term
}

type termVoter struct {
	term  pb.Term
	voter pb.NodeID
}

// speaksOfFuture reports whether m carries a term the sender has not taken:
// PreVote asks about term+1, and a granted PreVote echoes it.
func speaksOfFuture(m *pb.Message) bool {
	return m.Type == pb.MsgPreVote || (m.Type == pb.MsgPreVoteResp && !m.Reject)
}

func (c *checker) onSend(r *replica, m *pb.Message) {
	if m.From != r.id {
		c.failf("replica %d sends a message from %d: %s", r.id, m.From, m)
		return
	}
	if m.Type == pb.MsgTimeoutNow {
		c.s.stats.Transfers++
	}
	if speaksOfFuture(m) {
		return
	}
	durable := r.store.DurableHardState()
	if m.Term > durable.Term {
		c.failf("persistence (Figure 2): replica %d sends %s while its durable term is %d", r.id, m, durable.Term)
		return
	}
	c.persistence.maxSent[r.id] = max(c.persistence.maxSent[r.id], m.Term)
	if m.Type != pb.MsgRequestVoteResp || m.Reject {
		return
	}
	// A later term made durable by the same fsync (group commit) also
	// keeps the promise: the voter can never vote in m.Term again.
	if durable.Term < m.Term || (durable.Term == m.Term && durable.Vote != m.To) {
		c.failf("persistence (Figure 2): replica %d grants its term-%d vote to %d before it is durable (durable %d/%d)",
			r.id, m.Term, m.To, durable.Term, durable.Vote)
		return
	}
	k := termVoter{term: m.Term, voter: r.id}
	if prev, ok := c.persistence.votes[k]; ok && prev != m.To {
		c.failf("persistence (§5.2): replica %d votes for %d and %d in term %d", r.id, prev, m.To, m.Term)
		return
	}
	c.persistence.votes[k] = m.To
}

// checkRestart holds a restarted replica to what it said before it crashed.
func (c *checker) checkRestart(r *replica) {
	term := r.core.Term()
	if sent := c.persistence.maxSent[r.id]; term < sent {
		c.failf("persistence (Figure 2): replica %d restarts at term %d after sending in term %d", r.id, term, sent)
		return
	}
	if voted, ok := c.persistence.votes[termVoter{term: term, voter: r.id}]; ok {
		if got := r.core.Status().Vote; got != voted {
			c.failf("persistence (Figure 2): replica %d restarts in term %d with vote %d, but it voted for %d",
				r.id, term, got, voted)
		}
	}
}

// checkTermMonotonic holds that a running replica's term never decreases.
func (c *checker) checkTermMonotonic(r *replica, v *logView, term pb.Term) {
	if term < v.term {
		c.failf("replica %d's term went down from %d to %d", r.id, v.term, term)
		return
	}
	v.term = term
}
