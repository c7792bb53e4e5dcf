package sim

import pb "github.com/raftkv/raftkv/raftpb"

// Log Matching (§5.3, Figure 3): if two logs contain an entry with the same
// index and term, the logs are identical in all entries up through that
// index. Every (index, term) any replica has ever persisted is recorded with
// the chain hash of the log up to it; a replica persisting the same (index,
// term) with a different prefix violates the property. Only entries a Ready
// wrote are checked, so the cost is proportional to what changed.
func (c *checker) checkMatching(id pb.NodeID, v *logView, from pb.Index) {
	for i := max(from, v.base, 1); i <= v.last(); i++ {
		k := idxTerm{index: i, term: v.termAt(i)}
		ph := v.ph[i-v.base]
		prev, ok := c.matching[k]
		if !ok {
			c.matching[k] = ph
			continue
		}
		if prev != ph {
			c.failf("Log Matching (§5.3): replica %d holds entry %d/%d after a log prefix that differs from another replica's",
				id, i, k.term)
			return
		}
	}
}
