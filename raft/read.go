package raft

import (
	"encoding/binary"
	"slices"

	pb "github.com/raftkv/raftkv/raftpb"
)

// MaxPendingReads bounds the reads a leader holds waiting for confirmation.
const MaxPendingReads = 1 << 16

// leaseRoundsMax bounds the heartbeat rounds a leader remembers the send
// tick of. It needs one per tick of the lease window (half an election
// timeout) at most; past this bound the oldest is forgotten, and an answer
// to it no longer backs the lease, which only costs a ReadIndex round.
const leaseRoundsMax = 256

// readIndexState numbers the leader's heartbeat rounds and batches ReadIndex
// requests (dissertation §6.4): every heartbeat carries its round's number
// and every answer echoes it. Every request that arrives before the next
// Ready joins one round; a round is confirmed when a quorum has answered it
// or a later round. The same answers back the read lease (§6.4.1), which
// runs from when the newest round a quorum answered was sent.
type readIndexState struct {
	// pending have not been sent out in a round yet.
	pending []readRequest
	rounds  []readRound
	// seq is the last round number handed out; rounds of one leader (one
	// term) are numbered in the order they are sent.
	seq uint64
	// sent holds, for each of the recent ticks in which a round was sent,
	// the first round sent then: round s was sent at the tick of the last
	// entry whose seq is at most s. Entries whose tick has left the lease
	// window are dropped.
	sent []roundSent
	// acked is, per follower, the highest round it answered.
	acked map[pb.NodeID]roundAck
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

type roundSent struct {
	seq, tick uint64
}

type roundAck struct {
	seq uint64
	// leaseEnd is the tick at which this answer stops backing the lease:
	// the round's send tick plus the lease window (0: it backs none).
	leaseEnd uint64
}

func (s *readIndexState) reset() {
	s.pending, s.rounds, s.count = nil, nil, 0
	s.sent = s.sent[:0]
	clear(s.acked)
}

// newRound numbers a heartbeat round sent at tick now and forgets the send
// ticks that have left the lease window.
func (s *readIndexState) newRound(now, window uint64) uint64 {
	s.seq++
	drop := 0
	for drop < len(s.sent) && (s.sent[drop].tick+window <= now || len(s.sent)-drop >= leaseRoundsMax) {
		drop++
	}
	if drop > 0 {
		s.sent = append(s.sent[:0], s.sent[drop:]...)
	}
	if n := len(s.sent); n == 0 || s.sent[n-1].tick != now {
		s.sent = append(s.sent, roundSent{seq: s.seq, tick: now})
	}
	return s.seq
}

// sentTick returns the tick round seq was sent at, if it is still within
// the lease window.
func (s *readIndexState) sentTick(seq uint64) (uint64, bool) {
	for i := len(s.sent) - 1; i >= 0; i-- {
		if s.sent[i].seq <= seq {
			return s.sent[i].tick, true
		}
	}
	return 0, false
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
// answered a heartbeat round sent less than LeaseTicks (at most half an
// election timeout) ago,
// so no other leader can have been elected: a voter refuses campaigns for a
// full election timeout after it received a leader's message (and for its
// first election timeout after it starts), and it received the round no
// earlier than it was sent. The lease runs from the send, not from the
// answer's arrival, so a late answer shortens it instead of stretching it.
// It relies on bounded clock drift alone, as every lease does: half an
// election timeout on the leader's clock must not outlast a full one on a
// voter's.
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
	if !r.LeaseValid() {
		return r.leaderReadIndex(readRequest{ctx: ctx, from: r.id})
	}
	r.readStates = append(r.readStates, ReadState{Index: r.log.committed, Context: ctx})
	return nil
}

// LeaseValid reports whether LeaseRead would answer at once: this server
// leads, CheckQuorum is on, an entry of its term is committed, no transfer
// is under way or was begun in the term, and the lease is held.
func (r *Raft) LeaseValid() bool {
	lease := r.leaseHeld() || mutated(MutationLeaseWithoutLease)
	return r.role == Leader && !r.cfg.DisableCheckQuorum && r.committedInTerm() && lease &&
		r.leadTransferee == pb.None && !r.leaseForfeited
}

// LeaseTicks is Config.LeaseTicks: how long, from its send, an answered
// heartbeat round backs the lease. The runtime needs it to check that its
// ticks kept pace with the clock over that span.
func (r *Raft) LeaseTicks() int { return r.cfg.LeaseTicks }

func (r *Raft) leaseTicks() uint64 { return uint64(r.cfg.LeaseTicks) }

// LeaseSince returns the tick at which the newest heartbeat round that a
// quorum answered (or a later one) was sent, if the lease is held: the
// lease rests on that send, and the runtime checks by its clock that the
// tick was less than the lease ago (a core's ticks may lag the clock).
func (r *Raft) LeaseSince() (tick uint64, ok bool) {
	if r.role != Leader || !r.leaseHeld() {
		return 0, false
	}
	// The lease ends of the answers that still count, newest first: the
	// newest one that a quorum reached is the round the lease rests on.
	var ends []uint64
	for _, a := range r.reads.acked {
		if a.leaseEnd > r.ticks && !slices.Contains(ends, a.leaseEnd) {
			ends = append(ends, a.leaseEnd)
		}
	}
	slices.Sort(ends)
	for i := len(ends) - 1; i >= 0; i-- {
		e := ends[i]
		if r.trk.Voters.Active(func(id pb.NodeID) bool { return id == r.id || r.reads.acked[id].leaseEnd >= e }) {
			return e - r.leaseTicks(), true
		}
	}
	// A leader that is a quorum by itself needs no answer.
	return r.ticks, true
}

func (r *Raft) leaseHeld() bool {
	return r.trk.Voters.Active(func(id pb.NodeID) bool {
		return id == r.id || r.ticks < r.reads.acked[id].leaseEnd
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
	seq := r.bcastHeartbeat()
	r.reads.rounds = append(r.reads.rounds, readRound{seq: seq, reqs: r.reads.pending})
	r.reads.pending = nil
}

// readAck records that a follower answered round ctx: it backs the lease
// from the round's send tick, and every read round a quorum has now
// confirmed is released.
func (r *Raft) readAck(from pb.NodeID, ctx []byte) {
	if len(ctx) != 8 {
		return
	}
	seq := binary.BigEndian.Uint64(ctx)
	if seq > r.reads.seq {
		return
	}
	if r.reads.acked == nil {
		r.reads.acked = map[pb.NodeID]roundAck{}
	}
	if r.reads.acked[from].seq >= seq {
		return
	}
	ack := roundAck{seq: seq}
	if sent, ok := r.reads.sentTick(seq); ok {
		ack.leaseEnd = sent + r.leaseTicks()
	}
	if mutated(MutationLeaseFromArrival) {
		ack.leaseEnd = r.ticks + r.leaseTicks()
	}
	r.reads.acked[from] = ack
	for len(r.reads.rounds) > 0 {
		round := r.reads.rounds[0]
		ok := r.trk.Voters.Active(func(id pb.NodeID) bool {
			return id == r.id || r.reads.acked[id].seq >= round.seq
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
