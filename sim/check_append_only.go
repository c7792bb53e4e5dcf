package sim

import (
	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Leader Append-Only (§5.3, Figure 3): a leader never overwrites or deletes
// entries in its log; it only appends new ones. While a replica leads in a
// term, the chain hash of its log up to the last index seen at the previous
// observation must not change: any rewrite or truncation, or a snapshot
// replacing the log, changes it.
func (c *checker) checkAppendOnly(id pb.NodeID, v *logView, role raft.Role, term pb.Term) {
	if role != raft.Leader {
		v.leadTerm = 0
		return
	}
	if v.leadTerm == term {
		ph, ok := v.chainAt(v.leadLast)
		if !ok || ph != v.leadPH {
			c.failf("Leader Append-Only (§5.3): leader %d of term %d changed its log at or before %d (log now (%d, %d])",
				id, term, v.leadLast, v.base, v.last())
			return
		}
	}
	v.leadTerm, v.leadLast, v.leadPH = term, v.last(), v.ph[len(v.ph)-1]
}
