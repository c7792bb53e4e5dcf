package sim

import (
	"fmt"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// checker holds the global history the safety properties are judged
// against. Each property lives in its own check_*.go file; this file wires
// them to the points where a replica's state becomes observable: after each
// batch of Readys it makes durable (afterPersist), when it applies or restores, sends, crashes
// and starts, and once per tick (sweep).
type checker struct {
	s     *Sim
	views [MaxReplicas + 1]*logView

	election     electionHistory
	matching     map[idxTerm]uint64
	committed    committedLog
	completeness commitFrontier
	persistence  persistenceHistory
	clients      clientHistory
	reads        readHistory
}

type idxTerm struct {
	index pb.Index
	term  pb.Term
}

func newChecker(s *Sim) checker {
	return checker{
		s:        s,
		election: electionHistory{leaders: map[pb.Term]pb.NodeID{}},
		matching: map[idxTerm]uint64{},
		persistence: persistenceHistory{
			votes: map[termVoter]pb.NodeID{},
		},
		clients: newClientHistory(),
		reads:   readHistory{asks: map[uint64]readAsk{}},
	}
}

func (c *checker) failf(format string, args ...any) { c.s.failf(format, args...) }

// logView is the checker's copy of a replica's durable log as chain hashes:
// ph[k] is the chain hash of the log up to index base+k, terms[k] that
// entry's term. base is the snapshot the log starts after.
type logView struct {
	base  pb.Index
	ph    []uint64
	terms []pb.Term
	// term is the highest term seen in this incarnation.
	term pb.Term
	// Leader Append-Only bookkeeping: while the replica leads in leadTerm,
	// its log up to leadLast must keep the chain hash leadPH.
	leadTerm pb.Term
	leadLast pb.Index
	leadPH   uint64
	// Commitment rule bookkeeping: the commit index last seen while the
	// replica led in ruleTerm.
	ruleTerm   pb.Term
	ruleCommit pb.Index
}

func (v *logView) last() pb.Index { return v.base + pb.Index(len(v.ph)) - 1 }

// chainAt returns the chain hash at i if the view holds it.
func (v *logView) chainAt(i pb.Index) (uint64, bool) {
	if i < v.base || i > v.last() {
		return 0, false
	}
	return v.ph[i-v.base], true
}

func (v *logView) termAt(i pb.Index) pb.Term { return v.terms[i-v.base] }

func (v *logView) reset(base pb.Index, term pb.Term, chain uint64) {
	v.base = base
	v.ph = append(v.ph[:0], chain)
	v.terms = append(v.terms[:0], term)
}

// append replaces the suffix from ents[0].Index, as Save does.
func (v *logView) append(ents []pb.Entry) error {
	from := ents[0].Index
	if from <= v.base || from > v.last()+1 {
		return fmt.Errorf("entries from %d do not fit a log of (%d, %d]", from, v.base, v.last())
	}
	k := int(from - v.base)
	v.ph, v.terms = v.ph[:k], v.terms[:k]
	for i := range ents {
		e := &ents[i]
		if e.Index != from+pb.Index(i) {
			return fmt.Errorf("entries not contiguous at %d", e.Index)
		}
		v.ph = append(v.ph, chainHash(v.ph[len(v.ph)-1], e.Term, entryHash(e)))
		v.terms = append(v.terms, e.Term)
	}
	return nil
}

// rebuild reads the view back from the replica's store (after a start).
// The log starts after a snapshot that holds committed entries only, so
// the committed log knows its chain hash.
func (c *checker) rebuild(r *replica) {
	v := &logView{}
	c.views[r.id] = v
	base := r.store.FirstIndex() - 1
	baseTerm, err := r.store.Term(base)
	if err != nil {
		c.failf("replica %d: reading its log back: term of %d: %v", r.id, base, err)
		return
	}
	chain, ok := c.committed.chainAt(base)
	if !ok {
		c.failf("replica %d: its log starts after %d/%d, which nobody committed", r.id, base, baseTerm)
		return
	}
	v.reset(base, baseTerm, chain)
	if last := r.store.LastIndex(); base < last {
		ents, err := r.store.Entries(base+1, last+1, 0)
		if err == nil {
			err = v.append(ents)
		}
		if err != nil {
			c.failf("replica %d: reading its log back: %v", r.id, err)
			return
		}
	}
	c.checkMatching(r.id, v, v.base)
}

func (c *checker) onStart(r *replica) {
	c.rebuild(r)
	c.checkRestart(r)
	c.views[r.id].term = r.core.Term()
}

func (c *checker) onCrash(r *replica) { c.views[r.id] = nil }

// afterPersist updates the replica's view with what a batch of Readys,
// durable together, persisted, and checks every property they could have
// affected.
func (c *checker) afterPersist(r *replica, batch []raft.Ready) {
	v := c.views[r.id]
	for i := range batch {
		rd := &batch[i]
		if rd.Snapshot != nil {
			chain, _ := c.committed.chainAt(rd.Snapshot.Index) // set at install
			v.reset(rd.Snapshot.Index, rd.Snapshot.Term, chain)
			c.checkMatching(r.id, v, v.base)
		}
		if len(rd.Entries) > 0 {
			if err := v.append(rd.Entries); err != nil {
				c.failf("replica %d: %v", r.id, err)
				return
			}
			c.checkMatching(r.id, v, rd.Entries[0].Index)
		}
		for _, rs := range rd.ReadStates {
			c.onReadState(r, rs)
		}
	}
	c.observe(r)
}

// observe checks the properties that depend on a replica's role, term and
// commit index; it runs after every Ready and once per tick.
func (c *checker) observe(r *replica) {
	v := c.views[r.id]
	role, term := r.core.Role(), r.core.Term()
	c.checkTermMonotonic(r, v, term)
	c.checkElection(r.id, role, term)
	c.checkAppendOnly(r.id, v, role, term)
	// Two commit indexes. The core's may run ahead of the durable log
	// while Readys wait for the disk: a follower learns the leader's
	// commit index with entries it has not persisted yet, and a leader
	// commits what a quorum of followers holds before its own fsync ends
	// (dissertation §10.2.1); the runtime applies only what is durable.
	// The one the replica has made durable is written after the entries
	// it covers, so it must never pass its durable log.
	coreCommit := r.core.Committed()
	commit := r.store.DurableHardState().Commit
	if commit > v.last() {
		c.failf("replica %d's durable commit index %d is beyond its durable log (last %d)", r.id, commit, v.last())
		return
	}
	c.checkCommitted(r.id, v, commit)
	// The commitment rule judges the core's commit index wherever the
	// durable log lets it see the entry there.
	ruleCommit := commit
	if coreCommit <= v.last() {
		ruleCommit = coreCommit
	}
	c.checkCommitRule(r.id, v, role, term, ruleCommit)
	// Everything up to the core's commit index is committed; the part the
	// durable log holds is what Leader Completeness can hold later leaders to.
	c.noteCommit(term, max(commit, min(coreCommit, v.last())))
	c.noteCommitted(coreCommit)
	c.checkCompleteness(r.id, v, role, term)
}

// sweep observes every running replica; the Sim calls it after every tick.
func (c *checker) sweep() {
	for _, r := range c.s.reps {
		if r.up() && c.s.err == nil {
			c.observe(r)
		}
	}
	if c.s.err == nil {
		c.checkLeases()
	}
}
