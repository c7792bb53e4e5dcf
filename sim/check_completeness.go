package sim

import (
	"slices"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Leader Completeness (§5.4, Figure 3): if a log entry is committed in a
// given term, that entry will be present in the logs of the leaders of all
// higher-numbered terms.
//
// When a replica at term U reports commit index c, every entry up to c was
// committed in a term no later than U (a follower learns its commit index
// from the leader of a term <= its own). So a leader of term T > U must
// hold the committed log up to c. The frontier keeps, for each such U, the
// largest c, as a staircase: ascending U with ascending c.
type commitFrontier struct {
	steps []commitStep
}

type commitStep struct {
	term   pb.Term
	commit pb.Index
}

// note records that everything up to commit was committed by term.
func (f *commitFrontier) note(term pb.Term, commit pb.Index) {
	at, _ := slices.BinarySearchFunc(f.steps, term, func(s commitStep, t pb.Term) int {
		return cmpTerm(s.term, t)
	})
	// Dominated by a step with a smaller-or-equal term and larger commit?
	if at < len(f.steps) && f.steps[at].term == term && f.steps[at].commit >= commit {
		return
	}
	if at > 0 && f.steps[at-1].commit >= commit {
		return
	}
	// Drop the steps this one dominates (larger-or-equal term, smaller commit).
	end := at
	for end < len(f.steps) && f.steps[end].commit <= commit {
		end++
	}
	f.steps = slices.Replace(f.steps, at, end, commitStep{term: term, commit: commit})
}

// before returns the largest index known committed in a term below t.
func (f *commitFrontier) before(t pb.Term) pb.Index {
	at, _ := slices.BinarySearchFunc(f.steps, t, func(s commitStep, t pb.Term) int {
		return cmpTerm(s.term, t)
	})
	if at == 0 {
		return 0
	}
	return f.steps[at-1].commit
}

func cmpTerm(a, b pb.Term) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (c *checker) noteCommit(term pb.Term, commit pb.Index) {
	if commit > 0 {
		c.completeness.note(term, commit)
	}
}

func (c *checker) checkCompleteness(id pb.NodeID, v *logView, role raft.Role, term pb.Term) {
	if role != raft.Leader {
		return
	}
	need := c.completeness.before(term)
	if need == 0 {
		return
	}
	if need > v.last() {
		c.failf("Leader Completeness (§5.4): leader %d of term %d has log up to %d, but %d was committed in an earlier term",
			id, term, v.last(), need)
		return
	}
	at := max(need, v.base) // a snapshot holds everything before it
	want, known := c.committed.chainAt(at)
	got, _ := v.chainAt(at)
	if known && got != want {
		c.failf("Leader Completeness (§5.4): leader %d of term %d lacks committed entries up to %d (its log differs at or before %d)",
			id, term, need, at)
	}
}
