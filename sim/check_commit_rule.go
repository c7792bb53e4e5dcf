package sim

import (
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Commitment rule (§5.4.2, Figure 8): a leader commits an entry by counting
// replicas only if the entry is of its current term; entries of earlier
// terms commit only indirectly, below one of its own. Counting an older
// entry is the mistake Figure 8 shows: the entry may still be overwritten
// by a server whose log ends in a later term, after it was applied. State
// Machine Safety catches that only when the overwrite happens, which takes
// a rare sequence of crashes and elections; this check holds every leader
// to the rule itself: while a replica leads in a term, each time its
// commit index moves, the entry at the new commit index is of that term.
func (c *checker) checkCommitRule(id pb.NodeID, v *logView, role raft.Role, term pb.Term, commit pb.Index) {
	if role != raft.Leader {
		v.ruleTerm = 0
		return
	}
	if v.ruleTerm == term && commit > v.ruleCommit && commit > v.base {
		if t := v.termAt(commit); t != term {
			c.failf("commitment rule (§5.4.2, Figure 8): leader %d of term %d moved its commit index from %d to %d, an entry of term %d",
				id, term, v.ruleCommit, commit, t)
			return
		}
	}
	v.ruleTerm, v.ruleCommit = term, commit
}
