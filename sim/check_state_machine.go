package sim

import (
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// State Machine Safety (§5.4.3, Figure 3): if a server has applied a log
// entry at a given index, no other server will ever apply a different log
// entry for that index.
//
// committedLog is the one log every replica must agree on: for each index,
// the chain hash of the committed prefix up to it, and, once some replica
// applied it, the entry's term and hash. Replicas are held to it when they
// apply an entry, restore a snapshot, and report a commit index (a commit
// index is a promise about the whole prefix, checked through its chain
// hash). With the kv state machine, replicas at the same applied index
// must also have kv stores with the same Hash: the real state machine,
// fed the same commands, must reach the same state (kv's determinism).
type committedLog struct {
	ents []committedEntry // indexed by log index; [0] unused
}

type committedEntry struct {
	chain   uint64 // 0: not known yet
	term    pb.Term
	hash    uint64
	applied bool
	// kvHash is kv.Store.Hash of the first replica seen at this applied
	// index, if kvKnown.
	kvHash  uint64
	kvKnown bool
}

func (l *committedLog) at(i pb.Index) *committedEntry {
	for pb.Index(len(l.ents)) <= i {
		l.ents = append(l.ents, committedEntry{})
	}
	return &l.ents[i]
}

func (l *committedLog) chainAt(i pb.Index) (uint64, bool) {
	if i == 0 {
		return 0, true
	}
	if i >= pb.Index(len(l.ents)) || l.ents[i].chain == 0 {
		return 0, false
	}
	return l.ents[i].chain, true
}

// onApply checks an entry a replica applies against every earlier
// application at that index.
func (c *checker) onApply(r *replica, e *pb.Entry, hash, chain uint64) {
	ce := c.committed.at(e.Index)
	switch {
	case ce.applied:
		if ce.term != e.Term || ce.hash != hash || ce.chain != chain {
			c.failf("State Machine Safety (§5.4.3): replica %d applies %d/%d, but %d/%d was applied there before",
				r.id, e.Index, e.Term, e.Index, ce.term)
		}
		return
	case ce.chain != 0 && ce.chain != chain:
		c.failf("State Machine Safety (§5.4.3): replica %d applies %d/%d after a history that differs from the committed log",
			r.id, e.Index, e.Term)
		return
	}
	ce.chain, ce.term, ce.hash, ce.applied = chain, e.Term, hash, true
	c.firstApply(r, e)
}

// firstApply records the first application of an index anywhere.
func (c *checker) firstApply(r *replica, e *pb.Entry) {
	text := ""
	if e.Type == pb.EntryConfChange {
		cs, _ := pb.DecodeConfState(e.Data)
		text = "conf " + cs.String()
		c.s.stats.ConfChanges++
	}
	c.s.trace.add(event{kind: evCommit, node: r.id, a: uint64(e.Index), b: uint64(e.Term), text: text})
	c.onCommand(r, e)
}

// onRestore checks a snapshot a replica installs against the committed log.
func (c *checker) onRestore(r *replica, img image) {
	c.s.stats.Installs++
	if want, ok := c.committed.chainAt(img.index); ok && want != img.chain {
		c.failf("State Machine Safety (§5.4.3): replica %d restores a snapshot at %d/%d that differs from the committed log",
			r.id, img.index, img.term)
		return
	}
	c.committed.at(img.index).chain = img.chain
	c.onKVState(r)
}

// kvHashEvery spaces the kv comparisons: a full hash costs a pass over the
// state (and a 64 KiB buffer), and a divergence persists until the next
// compared index.
const kvHashEvery = 8

// onKVState compares the replica's kv store with every other one seen at
// its applied index. It runs after every applied index that is a multiple
// of kvHashEvery, so that all replicas hash at the same indexes, and after
// every restored snapshot.
func (c *checker) onKVState(r *replica) {
	if r.sm.kv == nil {
		return
	}
	h := r.sm.kv.Hash()
	ce := c.committed.at(r.sm.applied)
	switch {
	case !ce.kvKnown:
		ce.kvHash, ce.kvKnown = h, true
	case ce.kvHash != h:
		c.failf("State Machine Safety (§5.4.3): replica %d's kv store at applied index %d hashes to %016x, another replica's to %016x",
			r.id, r.sm.applied, h, ce.kvHash)
	}
}

// checkCommitted holds the replica's committed prefix to the committed log
// and extends the committed log with what only this replica knows yet.
func (c *checker) checkCommitted(id pb.NodeID, v *logView, commit pb.Index) {
	if commit <= v.base {
		return // the snapshot was checked when it was restored
	}
	got, _ := v.chainAt(commit)
	if want, ok := c.committed.chainAt(commit); ok {
		if want != got {
			c.failf("State Machine Safety (§5.4.3): replica %d commits up to %d a log that differs from the committed log",
				id, commit)
		}
		return
	}
	for i := max(pb.Index(len(c.committed.ents)), v.base+1); i <= commit; i++ {
		c.committed.at(i).chain = v.ph[i-v.base]
	}
	// Fill the index itself even when the log was already long enough.
	c.committed.at(commit).chain = got
}

func (l *committedLog) String() string { return fmt.Sprintf("committed log of %d", len(l.ents)-1) }
