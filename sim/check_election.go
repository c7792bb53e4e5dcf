package sim

import (
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Election Safety (§5.2, Figure 3): at most one leader can be elected in a
// given term. The history spans the whole run, across crashes and across
// configurations: a term's leader, once seen, is its only leader.
type electionHistory struct {
	leaders map[pb.Term]pb.NodeID
	// newest is the latest term a leader was seen in.
	newest pb.Term
}

func (c *checker) checkElection(id pb.NodeID, role raft.Role, term pb.Term) {
	if role != raft.Leader {
		return
	}
	prev, ok := c.election.leaders[term]
	if !ok {
		c.election.leaders[term] = id
		c.election.newest = max(c.election.newest, term)
		c.s.stats.Leaders++
		return
	}
	if prev != id {
		c.failf("Election Safety (§5.2): term %d has two leaders, %d and %d", term, prev, id)
	}
}

// forget drops id's claims to lead the terms after durable (see
// forgetUndurableTerm), and with them the newest term, which the lease
// check compares against, if it was one of them.
func (h *electionHistory) forget(id pb.NodeID, durable pb.Term) {
	h.newest = 0
	for t, lead := range h.leaders {
		if lead == id && t > durable {
			delete(h.leaders, t)
			continue
		}
		h.newest = max(h.newest, t)
	}
}
