package raft_test

import (
	"encoding/binary"
	"math"
	"reflect"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// fuzzInput reads the fuzzer's bytes; past the end it reads zeros.
type fuzzInput struct{ b []byte }

func (in *fuzzInput) done() bool { return len(in.b) == 0 }

func (in *fuzzInput) byte() byte {
	if len(in.b) == 0 {
		return 0
	}
	v := in.b[0]
	in.b = in.b[1:]
	return v
}

func (in *fuzzInput) n(k int) int { return int(in.byte()) % k }

func (in *fuzzInput) u64() uint64 {
	var buf [8]byte
	copy(buf[:], in.b)
	in.b = in.b[min(8, len(in.b)):]
	return binary.LittleEndian.Uint64(buf[:])
}

func (in *fuzzInput) bytes() []byte {
	n := in.n(16)
	out := make([]byte, min(n, len(in.b)))
	copy(out, in.b)
	in.b = in.b[len(out):]
	return out
}

// index picks an index around r's log, or an impossible one.
func (in *fuzzInput) index(r *raft.Raft) pb.Index {
	st := r.Status()
	switch in.n(9) {
	case 0:
		return 0
	case 1:
		return st.Commit
	case 2:
		return st.LastIndex
	case 3:
		return st.LastIndex + 1
	case 4:
		return st.LastIndex - min(st.LastIndex, pb.Index(in.n(4)+1))
	case 5:
		return math.MaxUint64
	case 6:
		return math.MaxUint64 / 2
	case 7:
		return pb.Index(in.u64())
	}
	return pb.Index(in.byte())
}

// term picks a term around r's, or an impossible one.
func (in *fuzzInput) term(r *raft.Raft) pb.Term {
	t := r.Term()
	switch in.n(8) {
	case 0:
		return 0
	case 1, 2:
		return t
	case 3:
		return t + 1
	case 4:
		return t - min(t, 1)
	case 5:
		return math.MaxUint64
	case 6:
		return pb.Term(in.u64())
	}
	return pb.Term(in.byte())
}

func (in *fuzzInput) ids() []pb.NodeID {
	var ids []pb.NodeID
	mask := in.byte()
	for i := 0; i < 6; i++ {
		if mask&(1<<i) != 0 {
			ids = append(ids, pb.NodeID(i))
		}
	}
	return ids
}

func (in *fuzzInput) conf() pb.ConfState {
	return pb.ConfState{Voters: in.ids(), VotersOutgoing: in.ids(), Learners: in.ids()}
}

func (in *fuzzInput) entries(r *raft.Raft, prev pb.Index, term pb.Term) []pb.Entry {
	n := in.n(4)
	ents := make([]pb.Entry, n)
	for i := range ents {
		e := &ents[i]
		if in.n(4) == 0 {
			e.Index, e.Term = in.index(r), in.term(r)
		} else {
			e.Index, e.Term = prev+pb.Index(i)+1, term
		}
		switch in.n(4) {
		case 0:
			e.Type = pb.EntryConfChange
			e.Data = pb.AppendConfState(nil, in.conf())
		case 1:
			e.Type = pb.EntryConfChange
			e.Data = in.bytes()
		case 2:
			e.Type = pb.EntryType(in.byte())
			e.Data = in.bytes()
		default:
			e.Data = in.bytes()
		}
	}
	return ents
}

// message builds a message for core r, often malformed or impossible:
// unknown or missing senders, wrong recipients, any type (local and
// unknown ones too), terms and indexes far off, garbage entries.
func (in *fuzzInput) message(r *raft.Raft) pb.Message {
	m := pb.Message{
		// Every type, local and unknown ones too (MsgRemoved is the last
		// known one).
		Type: pb.MessageType(in.n(int(pb.MsgRemoved) + 3)),
		From: pb.NodeID(in.n(7)),
		To:   r.ID(),
	}
	if in.n(8) == 0 {
		m.To = pb.NodeID(in.n(7))
	}
	m.Term = in.term(r)
	m.Index = in.index(r)
	m.LogTerm = in.term(r)
	m.Commit = in.index(r)
	m.Reject = in.n(2) == 0
	m.Hint = in.index(r)
	m.HintTerm = in.term(r)
	if in.n(2) == 0 {
		m.Entries = in.entries(r, m.Index, m.Term)
	}
	if in.n(6) == 0 {
		m.Snapshot = &pb.SnapshotMeta{Index: in.index(r), Term: in.term(r), Conf: in.conf()}
	}
	switch in.n(4) {
	case 0:
		m.Context = binary.BigEndian.AppendUint64(nil, uint64(in.byte()))
	case 1:
		m.Context = in.bytes()
	case 2:
		m.Context = []byte("transfer")
	}
	return m
}

// localState is what must not change when Step refuses a message, and must
// not go back in any case.
type localState struct {
	status   raft.Status
	hasReady bool
}

// FuzzStep feeds a 3-member cluster a sequence of operations chosen by the
// fuzzer: ticks, proposals, reads, transfers, membership changes, crashes,
// cuts, and random, malformed messages (unknown members, impossible terms
// and indexes, garbage entries, wrong recipients) stepped into a core. It
// shows the core never panics; a message Step refuses changes nothing; a
// member's term and commit index never go back, nor does what it applied
// change. Election Safety and State Machine Safety across members are
// checked until a forged message is accepted (the protocol does not promise
// them against forgeries); messages the cores send each other must always be
// accepted.
func FuzzStep(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 2})
	f.Add([]byte{4, 1, 2, 1, 3, 3, 3, 3, 0, 5, 5, 1, 0})
	f.Add([]byte{4, 0, 3, 2, 5, 5, 5, 5, 5, 0, 0, 0, 0, 0, 4, 0, 8, 1, 0})
	f.Add([]byte{3, 1, 4, 2, 0, 9, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 7, 0, 0, 0})
	f.Add([]byte{6, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 5, 2, 0, 0, 4, 2, 2, 1, 5, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 512 {
			return
		}
		c := newCluster(t, 3, nil)
		c.waitLeader()
		c.one("seed", 3, 10*electionTicks)
		in := &fuzzInput{b: data}
		maxTerm := map[pb.NodeID]pb.Term{}
		for steps := 0; !in.done() && steps < 200; steps++ {
			id := c.ids[in.n(3)]
			r := c.cores[id]
			switch in.n(10) {
			case 0:
				c.tick(1 + in.n(3))
			case 1:
				c.tickOne(id, 1+in.n(electionTicks*2))
			case 2:
				_, _, _ = r.Propose(in.bytes())
			case 3, 4, 5:
				m := in.message(r)
				before := localState{r.Status(), r.HasReady()}
				err := r.Step(m)
				after := localState{r.Status(), r.HasReady()}
				if err != nil && !reflect.DeepEqual(before, after) {
					t.Fatalf("Step(%s) failed (%v) but changed the core:\n%+v\n%+v", m, err, before, after)
				}
				if err == nil && !reflect.DeepEqual(before, after) {
					c.byzantine = true
				}
				c.drive()
			case 6:
				c.crash(id)
			case 7:
				c.cut[id] = !c.cut[id]
			case 8:
				switch in.n(4) {
				case 0:
					_ = r.ReadIndex(in.bytes())
				case 1:
					_ = r.LeaseRead(in.bytes())
				case 2:
					_ = r.TransferLeader(pb.NodeID(in.n(5)))
				case 3:
					_, _, _ = r.ProposeConfChange(confchange.Target{Voters: in.ids(), Learners: in.ids()})
				}
			case 9:
				switch in.n(3) {
				case 0:
					r.ReportUnreachable(pb.NodeID(in.n(5)))
				case 1:
					r.ReportSnapshot(pb.NodeID(in.n(5)), in.n(2) == 0)
				case 2:
					c.drive()
				}
			}
			c.drive()
			for _, id := range c.ids {
				// Forged messages must not break a member's own invariants.
				c.checkCore(id, "a fuzz step")
				tm := c.cores[id].Term()
				if tm < maxTerm[id] {
					t.Fatalf("member %d went from term %d back to %d", id, maxTerm[id], tm)
				}
				maxTerm[id] = tm
			}
		}
		// Local invariant of every member: what it applied is a log it
		// never rewrote (checked by the applier's order check) and its
		// commit index covers it.
		for _, id := range c.ids {
			ents := *c.applied[id]
			if n := len(ents); n > 0 && ents[n-1].Index > c.cores[id].Committed() {
				t.Fatalf("member %d applied %d past its commit index %d", id, ents[n-1].Index, c.cores[id].Committed())
			}
		}
	})
}
