package raft

import (
	"fmt"
	"math/rand/v2"

	"github.com/raftkv/raftkv/raft/tracker"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Raft is one server's consensus state machine. It is driven by Tick, Step
// and the request methods, and its output is collected with Ready and
// acknowledged with Advance. It is deterministic and not safe for concurrent
// use: one goroutine owns it.
type Raft struct {
	id  pb.NodeID
	cfg Config

	term pb.Term
	vote pb.NodeID
	lead pb.NodeID
	role Role

	log *raftLog
	trk *tracker.Tracker
	// confs lists configuration entries of the log: confs[0] is the latest
	// one at or below the commit index (or the snapshot's), the rest are
	// uncommitted, ascending. The last is in force (§6: a configuration
	// takes effect as soon as it is appended).
	confs []confRecord

	// removedNotice is the index of a committed configuration that a
	// MsgRemoved said leaves this server out (0: none); noticedRemoved
	// says whether it still holds (removed.go).
	removedNotice pb.Index

	electionElapsed  int
	heartbeatElapsed int
	// randomizedElection is in [ElectionTicks, 2*ElectionTicks).
	randomizedElection int
	rand               *rand.Rand
	// ticks counts every Tick, for lease bookkeeping.
	ticks uint64
	// voteLeaseEnd is the tick before which this server refuses (pre)votes:
	// it answered a leader less than an election timeout ago, and that
	// answer may back the leader's read lease (dissertation §6.4.1). A
	// restart forgets the leader but not the promise, so a server that may
	// have answered one before it started refuses for its first election
	// timeout too.
	voteLeaseEnd uint64
	// heardAt is 1 + the tick of the last message this server answered
	// the leader of its term (0: none since it started).
	heardAt uint64
	// earlyCampaigns is how many early campaigns are left since the runtime
	// reported the connection to the leader closed, with nothing heard
	// from a leader since (closed.go).
	earlyCampaigns int

	// Leader state.
	leadTransferee pb.NodeID
	// leaseForfeited is set once this leader sent TimeoutNow in its term: the
	// target may win at any later time (voters grant a transfer campaign
	// inside their vote lease, and the message may be late), so lease
	// reads are off until the term ends.
	leaseForfeited bool
	uncommitted    uncommittedQueue
	// appendPending asks Ready to send new entries (or a new commit index)
	// to every follower: batching proposals into one message per follower.
	appendPending bool
	reads         readIndexState

	msgs []pb.Message
	// proposeBuf is reused by Propose to build entries.
	proposeBuf []pb.Entry
	// readStates wait to be handed out in the next Ready.
	readStates []ReadState

	// Ready bookkeeping.
	nextReadyID   uint64
	outstanding   []readyRecord
	prevSoft      SoftState
	prevHard      pb.HardState // as last handed out
	durableHard   pb.HardState // as last advanced
	stepsDisabled bool
}

type confRecord struct {
	index pb.Index
	conf  pb.ConfState
}

type readyRecord struct {
	id          uint64
	hard        pb.HardState
	lastEntry   pb.Entry // index and term of the last entry handed out (0 if none)
	snapIndex   pb.Index
	lastApplied pb.Index
}

// New builds a core from its durable state.
func New(c Config) (*Raft, error) {
	cfg, err := c.withDefaults()
	if err != nil {
		return nil, err
	}
	hs, cs, err := cfg.Storage.InitialState()
	if err != nil {
		return nil, fmt.Errorf("raft: initial state: %w", err)
	}
	lg, err := newLog(cfg.Storage, cfg.MaxApplyBytes)
	if err != nil {
		return nil, err
	}
	r := &Raft{
		id:   cfg.ID,
		cfg:  cfg,
		log:  lg,
		trk:  tracker.New(cfg.MaxInflightMsgs, cfg.MaxInflightBytes),
		rand: rand.New(rand.NewPCG(cfg.Seed, uint64(cfg.ID))),
	}
	if hs.Commit != 0 {
		if hs.Commit > lg.lastIndex() {
			return nil, fmt.Errorf("raft: hard state commit %d past the log's last index %d",
				hs.Commit, lg.lastIndex())
		}
		// The commit index may lag the snapshot: only a term or vote change
		// makes the hard state durable at once, while a snapshot is written
		// when the application takes it. A snapshot holds only committed
		// entries, so the later of the two is the commit index.
		lg.committed = max(lg.committed, hs.Commit)
	}
	r.term, r.vote = hs.Term, hs.Vote
	if hs.Term > bootstrapTerm && !mutated(MutationRestartForgetsLease) {
		// Only a server at a later term can have answered a leader (the
		// answer leaves once that term is durable); one that did may be
		// backing a lease still. Every such answer was given before this
		// start, so the shorter promise of a closed connection, counted
		// from the start, outlasts its lease too (closed.go).
		r.voteLeaseEnd = uint64(cfg.ElectionTicks)
		if r.ClosedPromiseTicks() != 0 {
			r.voteLeaseEnd = uint64(cfg.ClosedPromiseTicks)
		}
	}
	if cfg.Applied > 0 {
		if cfg.Applied > lg.lastIndex() {
			return nil, fmt.Errorf("raft: applied %d past the log's last index %d", cfg.Applied, lg.lastIndex())
		}
		// The application's snapshot may be newer than both the durable
		// commit index and the point the log was compacted to (the log keeps
		// a margin behind the newest snapshot). The application applies only
		// committed entries, so what it applied is committed.
		lg.committed = max(lg.committed, cfg.Applied)
		lg.applying = max(lg.applying, cfg.Applied)
		lg.applied = lg.applying
	}
	if err := r.loadConfs(cs); err != nil {
		return nil, err
	}
	r.prevHard = r.hardState()
	r.durableHard = r.prevHard
	r.becomeFollower(r.term, pb.None)
	r.prevSoft = r.softState()
	return r, nil
}

// loadConfs rebuilds the configuration history from the snapshot's
// configuration and the configuration entries after it.
func (r *Raft) loadConfs(snapConf pb.ConfState) error {
	base := r.log.firstIndex() - 1
	r.confs = []confRecord{{index: base, conf: snapConf}}
	const chunk = 4 << 20
	for lo := base + 1; lo <= r.log.lastIndex(); {
		ents, err := r.log.slice(lo, r.log.lastIndex()+1, chunk)
		if err != nil {
			return fmt.Errorf("raft: reading log for configurations: %w", err)
		}
		for i := range ents {
			if ents[i].Type == pb.EntryConfChange {
				cs, err := pb.DecodeConfState(ents[i].Data)
				if err != nil {
					return fmt.Errorf("raft: configuration entry %d: %w", ents[i].Index, err)
				}
				r.confs = append(r.confs, confRecord{index: ents[i].Index, conf: cs})
			}
		}
		lo = ents[len(ents)-1].Index + 1
	}
	r.compactConfs()
	r.applyConf()
	return nil
}

func (r *Raft) hardState() pb.HardState {
	return pb.HardState{Term: r.term, Vote: r.vote, Commit: r.log.committed}
}

func (r *Raft) softState() SoftState { return SoftState{Lead: r.lead, Role: r.role} }

// ID returns this server's id.
func (r *Raft) ID() pb.NodeID { return r.id }

// conf returns the configuration in force.
func (r *Raft) conf() pb.ConfState { return r.confs[len(r.confs)-1].conf }

// promotable reports whether this server may campaign: it votes in the
// configuration in force, or in the last committed one while a later one
// that leaves it out is pending. Such a server may still be needed to elect
// a leader until that configuration commits (dissertation §4.2.2); it does
// not count its own vote then (the tally counts members only).
func (r *Raft) promotable() bool {
	if r.noticedRemoved() {
		return false
	}
	for i := range r.confs {
		if r.confs[i].conf.IsVoter(r.id) {
			return true
		}
	}
	return false
}

// resetRandomizedElection draws a new election timeout: randomized timeouts
// make split votes rare and resolve them quickly (§5.2).
func (r *Raft) resetRandomizedElection() {
	r.randomizedElection = r.cfg.ElectionTicks + r.rand.IntN(r.cfg.ElectionTicks)
}

func (r *Raft) reset(term pb.Term) {
	if r.term != term {
		r.term = term
		r.vote = pb.None
	}
	r.lead = pb.None
	r.electionElapsed = 0
	r.heartbeatElapsed = 0
	r.resetRandomizedElection()
	r.abortLeaderTransfer()
	r.leaseForfeited = false
	r.trk.ResetVotes()
	r.uncommitted.reset()
	r.appendPending = false
	r.reads.reset()
	last := r.log.lastIndex()
	r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
		learner := pr.IsLearner
		*pr = *tracker.NewProgress(last+1, r.cfg.MaxInflightMsgs, r.cfg.MaxInflightBytes, learner)
		if id == r.id {
			pr.Match = r.stableLastIndex()
			// A leader always counts itself as active for CheckQuorum;
			// the periodic reset in tickLeader skips it.
			pr.RecentActive = true
		}
	})
}

// stableLastIndex is the last index known durable locally.
func (r *Raft) stableLastIndex() pb.Index {
	if r.log.unstable.snapshot != nil {
		return 0
	}
	return r.log.unstable.offset - 1
}

// followerRole is the passive role this server takes given the
// configuration in force.
func (r *Raft) followerRole() Role {
	switch {
	case r.noticedRemoved():
		return Removed
	case r.trk.Voters.Contains(r.id):
		return Follower
	case r.trk.IsLearner(r.id):
		return Learner
	default:
		return Removed
	}
}

func (r *Raft) becomeFollower(term pb.Term, lead pb.NodeID) {
	r.reset(term)
	r.lead = lead
	r.role = r.followerRole()
}

func (r *Raft) becomePreCandidate() {
	// PreVote changes neither term nor vote (dissertation §9.6).
	r.role = PreCandidate
	r.lead = pb.None
	r.trk.ResetVotes()
}

// becomeCandidate starts an election (§5.2): increment currentTerm and vote
// for itself.
func (r *Raft) becomeCandidate() {
	r.reset(r.term + 1)
	r.vote = r.id
	r.role = Candidate
}

func (r *Raft) becomeLeader() {
	r.reset(r.term)
	r.earlyCampaigns = 0
	r.lead = r.id
	r.role = Leader
	// A leader outside its latest configuration has no progress of its own
	// (§4.2.2: it manages a cluster that does not include it).
	if pr := r.trk.Progress[r.id]; pr != nil {
		pr.BecomeReplicate()
		pr.Match = r.stableLastIndex()
	}
	// A leader appends a no-op of its term at once: earlier entries commit
	// only indirectly through it (§5.4.2, Figure 8), and ReadIndex waits
	// for it (§8).
	r.appendLocal([]pb.Entry{{Type: pb.EntryNormal}})
}

// Tick advances logical time by one tick. It returns an error only when
// the core has failed (Err).
func (r *Raft) Tick() error {
	if r.log.err != nil {
		return r.log.err
	}
	r.ticks++
	if r.role == Leader {
		r.tickLeader()
		return r.log.err
	}
	r.electionElapsed++
	if r.promotable() && r.electionElapsed >= r.randomizedElection {
		r.electionElapsed = 0
		r.campaign(false)
	}
	return r.log.err
}

func (r *Raft) tickLeader() {
	r.heartbeatElapsed++
	r.electionElapsed++
	if r.electionElapsed >= r.cfg.ElectionTicks {
		r.electionElapsed = 0
		if !r.cfg.DisableCheckQuorum {
			if !r.trk.QuorumActive() {
				// CheckQuorum: this leader may be cut off; stop serving.
				r.becomeFollower(r.term, pb.None)
				return
			}
			r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
				if id != r.id {
					pr.RecentActive = false
				}
			})
		}
		// An unfinished transfer is abandoned after an election timeout.
		r.abortLeaderTransfer()
	}
	if r.heartbeatElapsed >= r.cfg.HeartbeatTicks {
		r.heartbeatElapsed = 0
		r.bcastHeartbeat()
		// Probing followers whose probe went unanswered get another.
		r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
			if id != r.id && pr.State == tracker.StateProbe {
				pr.ProbeSent = false
			}
		})
		r.appendPending = true
	}
	r.SendCommit()
}

func (r *Raft) send(m pb.Message) {
	m.From = r.id
	if m.Term == 0 {
		m.Term = r.term
	}
	r.msgs = append(r.msgs, m)
}

// Step feeds a message received from another server. Messages for someone
// else, from nobody, or of a runtime-only type are refused with an error;
// stale or irrelevant messages are dropped silently, as the protocol asks.
// A failed core (Err) refuses every message with its failure.
func (r *Raft) Step(m pb.Message) error {
	if err := r.step(m); err != nil {
		return err
	}
	return r.log.err
}

func (r *Raft) step(m pb.Message) error {
	if r.log.err != nil {
		return r.log.err
	}
	if m.Type.IsLocal() {
		return ErrStepLocal
	}
	if !m.Type.Valid() || m.To != r.id || m.From == pb.None || m.From == r.id || m.Term == 0 {
		return fmt.Errorf("%w: %s", ErrInvalidMessage, m)
	}
	if r.stepRemoved(m) {
		return nil
	}
	if !r.stepTerm(m) {
		return nil
	}
	switch m.Type {
	case pb.MsgRequestVote, pb.MsgPreVote:
		r.handleVoteRequest(m)
		return nil
	}
	switch r.role {
	case Leader:
		r.stepLeader(m)
	case Candidate, PreCandidate:
		r.stepCandidate(m)
	default:
		r.stepFollower(m)
	}
	return nil
}

// stepTerm applies the term rules that come before any handler (Figure 2,
// "all servers"; §9.6 for PreVote and the vote lease). It reports whether
// the message should be handled further.
func (r *Raft) stepTerm(m pb.Message) bool {
	switch {
	case m.Term > r.term:
		if m.Type == pb.MsgRequestVote || m.Type == pb.MsgPreVote {
			if r.inLease() && !isTransfer(m) {
				// Heard from a leader recently: ignore, so that a removed or
				// partitioned server cannot disrupt the cluster (§6).
				return false
			}
		}
		switch {
		case m.Type == pb.MsgPreVote:
			// A PreVote does not change our term.
		case m.Type == pb.MsgPreVoteResp && !m.Reject:
			// Granted pre-votes carry the future term; counted below.
		default:
			lead := pb.None
			if m.Type == pb.MsgAppendEntries || m.Type == pb.MsgHeartbeat || m.Type == pb.MsgInstallSnapshot {
				lead = m.From
			}
			r.becomeFollower(m.Term, lead)
		}
		return true
	case m.Term < r.term:
		switch m.Type {
		case pb.MsgAppendEntries, pb.MsgHeartbeat:
			// Tell a stale leader about the newer term; with CheckQuorum or
			// PreVote it might otherwise never learn of it.
			r.send(pb.Message{To: m.From, Type: pb.MsgAppendEntriesResp, Index: 0, Reject: true})
		case pb.MsgPreVote:
			r.send(pb.Message{To: m.From, Type: pb.MsgPreVoteResp, Reject: true})
		}
		return false
	}
	return true
}

// inLease reports whether this server refuses (pre)votes: it leads, or it
// answered a leader within the minimum election timeout (or may have, just
// before it started). The rule protects both the cluster from disruptive
// servers (§6, §9.6) and the leader's read lease (§6.4.1): a leader counts
// an answer toward its lease for LeaseTicks (at most half an election
// timeout) from when it sent the heartbeat answered, and the voter that
// received that heartbeat votes for nobody else for a full election
// timeout from receiving it, or, once its connection to the leader closed,
// for ClosedPromiseTicks (closed.go).
func (r *Raft) inLease() bool {
	if r.cfg.DisableCheckQuorum {
		return false
	}
	return r.role == Leader || r.ticks < r.voteLeaseEnd
}

// heardLeader records a message from the leader of our term, which this
// server is about to answer.
func (r *Raft) heardLeader(from pb.NodeID) {
	r.electionElapsed = 0
	r.lead = from
	r.voteLeaseEnd = r.ticks + uint64(r.cfg.ElectionTicks)
	r.heardAt = r.ticks + 1
	// The leader is heard: whatever closed, it lives (a reset link).
	r.earlyCampaigns = 0
}

var campaignTransfer = []byte("transfer")

func isTransfer(m pb.Message) bool { return string(m.Context) == string(campaignTransfer) }

// handleVoteRequest is the RequestVote (and PreVote) receiver (Figure 2):
// grant if this server has not voted for anyone else in the term (§5.2) and
// the candidate's log is at least as up to date as its own (§5.4.1, the
// election restriction). A term older than ours was refused by stepTerm.
func (r *Raft) handleVoteRequest(m pb.Message) {
	resp := pb.MessageType(pb.MsgRequestVoteResp)
	if m.Type == pb.MsgPreVote {
		resp = pb.MsgPreVoteResp
	}
	// Every server answers, member or not, learner or voter: the candidate's
	// configuration may count it even where ours does not (§4.2.2, servers
	// process requests without consulting their configurations).
	canVote := r.vote == m.From ||
		(r.vote == pb.None && r.lead == pb.None) ||
		(m.Type == pb.MsgPreVote && m.Term > r.term) ||
		(mutated(MutationDoubleVote) && m.Term == r.term)
	if canVote && r.log.isUpToDate(m.Index, m.LogTerm) {
		if m.Type == pb.MsgRequestVote {
			r.electionElapsed = 0
			r.vote = m.From
		}
		// The answer carries the requested term so the candidate counts it.
		r.send(pb.Message{To: m.From, Type: resp, Term: m.Term})
		return
	}
	r.send(pb.Message{To: m.From, Type: resp, Reject: true})
}

// stepFollower handles a message as a follower (or learner): it answers the
// leader's RPCs and resets its election timer on each (Figure 2, "Rules for
// Servers: Followers", §5.2).
func (r *Raft) stepFollower(m pb.Message) {
	switch m.Type {
	case pb.MsgAppendEntries:
		r.heardLeader(m.From)
		r.handleAppendEntries(m)
	case pb.MsgHeartbeat:
		r.heardLeader(m.From)
		r.handleHeartbeat(m)
	case pb.MsgInstallSnapshot:
		r.heardLeader(m.From)
		r.handleInstallSnapshot(m)
	case pb.MsgTimeoutNow:
		if r.promotable() && r.role != Removed {
			// Campaign at once, skipping PreVote: the leader asked (§3.10).
			r.campaign(true)
		}
	case pb.MsgReadIndexResp:
		r.readStates = append(r.readStates, ReadState{Index: m.Index, Context: m.Context})
	}
}

func (r *Raft) stepCandidate(m pb.Message) {
	switch m.Type {
	case pb.MsgAppendEntries, pb.MsgHeartbeat, pb.MsgInstallSnapshot:
		// A leader of our term exists (§5.2): step down and follow it.
		r.becomeFollower(m.Term, m.From)
		r.stepFollower(m)
	case pb.MsgRequestVoteResp, pb.MsgPreVoteResp:
		if (r.role == Candidate) != (m.Type == pb.MsgRequestVoteResp) {
			return
		}
		r.handleVoteResponse(m)
	}
}
