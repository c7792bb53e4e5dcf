package raft

import (
	"encoding/binary"

	pb "github.com/raftkv/raftkv/raftpb"
)

// MaxPendingReads bounds the reads a leader holds waiting for confirmation.
const MaxPendingReads = 1 << 16

// readIndexState batches ReadIndex requests (dissertation §6.4): every
// request that arrives before the next Ready joins one heartbeat round; a
// round is confirmed when a quorum has answered it or a later round.
type readIndexState struct {
	// pending have not been sent out in a round yet.
	pending []readRequest
	rounds  []readRound
	seq     uint64
	// acked is the highest round each follower has answered.
	acked map[pb.NodeID]uint64
	count int
}

type readRequest struct {
	ctx   []byte
	from  pb.NodeID
	index pb.Index
}

type readRound struct {
	seq  uint64
	reqs []readRequest
}

func (s *readIndexState) reset() {
	s.pending, s.rounds, s.count = nil, nil, 0
	clear(s.acked)
}

// ReadIndex asks for the index at which a linearizable read may be served.
// The answer arrives as a ReadState with the same context in a later
// Ready. On a follower the request is forwarded to the leader.
func (r *Raft) ReadIndex(ctx []byte) error {
	if r.log.err != nil {
		return r.log.err
	}
	if r.role == Leader {
		return r.leaderReadIndex(readRequest{ctx: ctx, from: r.id})
	}
	if r.lead == pb.None || r.role == Removed {
		return &NotLeaderError{Leader: r.lead}
	}
	r.send(pb.Message{To: r.lead, Type: pb.MsgReadIndex, Context: ctx})
	return nil
}

// LeaseRead answers at once, without a heartbeat round, when the leader
// holds a lease (dissertation §6.4.1): CheckQuorum is on and a quorum
// answered within half an election timeout, so no other leader can have
// been elected (a voter refuses campaigns for a full election timeout after
// answering a leader, and for its first election timeout after it starts).
// It relies on bounded clock drift, as every lease does, and on an answer
// reaching the leader within half an election timeout of being sent.
func (r *Raft) LeaseRead(ctx []byte) error {
	if r.log.err != nil {
		return r.log.err
	}
	if r.role != Leader {
		return &NotLeaderError{Leader: r.lead}
	}
	// During a transfer the target may be told to campaign at once
	// (TimeoutNow), and voters grant such a campaign inside their lease:
	// the lease no longer excludes a new leader, so confirm with a round.
	// Once TimeoutNow is sent that stays so for the term, even if the
	// transfer is abandoned: the campaign may start late.
	lease := r.leaseHeld() || mutated(MutationLeaseWithoutLease)
	if r.cfg.DisableCheckQuorum || !r.committedInTerm() || !lease ||
		r.leadTransferee != pb.None || r.leaseForfeited {
		return r.leaderReadIndex(readRequest{ctx: ctx, from: r.id})
	}
	r.readStates = append(r.readStates, ReadState{Index: r.log.committed, Context: ctx})
	return nil
}

func (r *Raft) leaseHeld() bool {
	window := uint64(r.cfg.ElectionTicks / 2)
	return r.trk.Voters.Active(func(id pb.NodeID) bool {
		if id == r.id {
			return true
		}
		pr := r.trk.Progress[id]
		return pr != nil && r.ticks-pr.LastActiveTick < window
	})
}

// soleVoter reports whether this leader is a quorum by itself: the one
// voter of its configuration. A leader outside its configuration (it is
// removing itself, §4.2.2) is not, even when that configuration has one
// voter: that voter may already lead a later term.
func (r *Raft) soleVoter() bool { return r.trk.IsSingleton() && r.trk.Voters.Contains(r.id) }

func (r *Raft) committedInTerm() bool { return r.log.termOrZero(r.log.committed) == r.term }

func (r *Raft) leaderReadIndex(req readRequest) error {
	if r.reads.count >= MaxPendingReads {
		return ErrProposalDropped
	}
	if r.soleVoter() && r.committedInTerm() {
		r.releaseRead(readRequest{ctx: req.ctx, from: req.from, index: r.log.committed})
		return nil
	}
	r.reads.pending = append(r.reads.pending, req)
	r.reads.count++
	return nil
}

// flushReads starts a heartbeat round for the requests that arrived since
// the last one. It waits until an entry of this term is committed: before
// that the leader does not know the commit index (§8).
func (r *Raft) flushReads() {
	if r.role != Leader || len(r.reads.pending) == 0 || !r.committedInTerm() {
		return
	}
	for i := range r.reads.pending {
		r.reads.pending[i].index = r.log.committed
	}
	if r.soleVoter() {
		for _, req := range r.reads.pending {
			r.releaseRead(req)
		}
		r.reads.count -= len(r.reads.pending)
		r.reads.pending = nil
		return
	}
	r.reads.seq++
	r.reads.rounds = append(r.reads.rounds, readRound{seq: r.reads.seq, reqs: r.reads.pending})
	r.reads.pending = nil
	r.bcastHeartbeat(binary.BigEndian.AppendUint64(nil, r.reads.seq))
}

// readAck records that a follower answered round ctx and releases every
// round a quorum has now confirmed.
func (r *Raft) readAck(from pb.NodeID, ctx []byte) {
	if len(ctx) != 8 {
		return
	}
	seq := binary.BigEndian.Uint64(ctx)
	if seq > r.reads.seq {
		return
	}
	if r.reads.acked == nil {
		r.reads.acked = map[pb.NodeID]uint64{}
	}
	if r.reads.acked[from] >= seq {
		return
	}
	r.reads.acked[from] = seq
	for len(r.reads.rounds) > 0 {
		round := r.reads.rounds[0]
		ok := r.trk.Voters.Active(func(id pb.NodeID) bool {
			return id == r.id || r.reads.acked[id] >= round.seq
		})
		if !ok {
			return
		}
		for _, req := range round.reqs {
			r.releaseRead(req)
		}
		r.reads.count -= len(round.reqs)
		r.reads.rounds = r.reads.rounds[1:]
	}
}

func (r *Raft) releaseRead(req readRequest) {
	if req.from == r.id {
		r.readStates = append(r.readStates, ReadState{Index: req.index, Context: req.ctx})
		return
	}
	r.send(pb.Message{To: req.from, Type: pb.MsgReadIndexResp, Index: req.index, Context: req.ctx})
}
