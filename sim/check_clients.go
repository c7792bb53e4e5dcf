package sim

import (
	"encoding/binary"

	pb "github.com/raftkv/raftkv/raftpb"
)

// What clients see (Figure 3 seen from outside, and §6.4 for reads):
//   - a command whose Propose returned (index, term) is committed exactly
//     when an entry of that term is applied at that index, and then it must
//     be that command; every command a client saw committed is in the final
//     log;
//   - no command is applied at two indexes (the simulated clients never
//     retry, so a duplicate is the core's doing).
//
// Reads are checked in check_reads.go.
type clientHistory struct {
	pending map[pb.Index][]proposal
	acked   []proposal
	applied map[uint64]pb.Index // command id -> index it was applied at
}

type proposal struct {
	index pb.Index
	term  pb.Term
	cmd   uint64
	by    pb.NodeID // the leader that proposed it
}

func newClientHistory() clientHistory {
	return clientHistory{
		pending: map[pb.Index][]proposal{},
		applied: map[uint64]pb.Index{},
	}
}

// command encodes a client command: its id, then padding of any length.
func command(id uint64, pad int) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+pad), id)
	return append(b, make([]byte, pad)...)
}

func commandID(data []byte) (uint64, bool) {
	if len(data) < 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(data), true
}

func (c *checker) onPropose(by pb.NodeID, first pb.Index, term pb.Term, cmds []uint64) {
	for i, id := range cmds {
		idx := first + pb.Index(i)
		c.clients.pending[idx] = append(c.clients.pending[idx], proposal{index: idx, term: term, cmd: id, by: by})
	}
}

// forgetUndurableTerm drops the pending proposals of a leader that crashes
// before its term was durable. A sole voter leads at once, before its term
// and vote reach the disk (nothing it does is seen outside until they do:
// its messages wait for the fsync, its clients for the apply); after the
// crash it may lead that term again with other entries at the same
// indexes, so (index, term) no longer names one proposal. Its clients saw
// no answer: the outcome is unknown, and only "applied at most once" holds.
//
// Election Safety likewise forgets the replica's claim to lead that term:
// no message of it left before the term was durable, and after the crash
// another server may lead it (Figure 2: a term is safe only once stored).
func (c *checker) forgetUndurableTerm(r *replica) {
	durable := r.store.DurableHardState().Term
	c.election.forget(r.id, durable)
	for idx, ps := range c.clients.pending {
		keep := ps[:0]
		for _, p := range ps {
			if p.by != r.id || p.term <= durable {
				keep = append(keep, p)
			}
		}
		if len(keep) == 0 {
			delete(c.clients.pending, idx)
		} else {
			c.clients.pending[idx] = keep
		}
	}
}

// onCommand runs when an index is applied for the first time anywhere.
func (c *checker) onCommand(r *replica, e *pb.Entry) {
	id, isCmd := c.s.entryCommandID(e.Data)
	isCmd = isCmd && e.Type == pb.EntryNormal
	if isCmd {
		if at, dup := c.clients.applied[id]; dup {
			c.failf("clients: command %d applied at %d and again at %d", id, at, e.Index)
			return
		}
		c.clients.applied[id] = e.Index
	}
	for _, p := range c.clients.pending[e.Index] {
		if p.term != e.Term {
			continue // that leader's entry was overwritten: not committed
		}
		if !isCmd || id != p.cmd {
			c.failf("clients: command %d proposed at %d/%d, but another entry of that term is applied there",
				p.cmd, p.index, p.term)
			return
		}
		c.clients.acked = append(c.clients.acked, p)
		c.s.stats.Acked++
	}
	delete(c.clients.pending, e.Index)
}

// checkAcked holds every command a client saw committed to the final log
// of replica r (the final leader).
func (c *checker) checkAcked(r *replica) {
	v := c.views[r.id]
	for _, p := range c.clients.acked {
		switch {
		case p.index > v.last():
			c.failf("clients: command %d committed at %d/%d is missing from the final log of %d (last %d)",
				p.cmd, p.index, p.term, r.id, v.last())
			return
		case p.index > v.base && v.termAt(p.index) != p.term:
			c.failf("clients: command %d committed at %d/%d is replaced in the final log of %d (term %d)",
				p.cmd, p.index, p.term, r.id, v.termAt(p.index))
			return
		}
	}
}
