package raft

import pb "github.com/raftkv/raftkv/raftpb"

// A leader that dies (kill -9, a crash) leaves its followers waiting a full
// randomized election timeout, although the kernel closed its connections
// at once. ReportClosed lets the runtime pass that signal on, and a
// follower that gets it campaigns early; but a closed or refused
// connection is no proof that the leader is dead (a reset link, a firewall
// answering with RST), so the signal may not weaken what the vote
// refusal protects.
//
// The refusal (inLease) protects the leader's lease: a lease read needs a
// quorum that answered a heartbeat round sent less than LeaseTicks ago on
// the leader's clock, and any later leader needs the vote of one of them.
// A voter normally refuses for ElectionTicks after each heartbeat it
// answers. With the signal it refuses instead until ClosedPromiseTicks
// after the last message it answered the leader. Either promise outlasts
// every lease the voter's answers back, provided ClosedPromiseTicks of the
// voter's ticks outlast LeaseTicks of the leader's from the send: an
// answer is received no earlier than it was sent, and the runtime keeps
// the rest true (driver.ClosedPromiseTicks: tick rounding, delayed ticks,
// clock drift). So whether the signal is right or wrong, no voter grants a
// vote while an answer of its still backs a lease, and lease reads stay
// safe; the signal only decides which of the two promises applies.
//
// The signal cannot depose a live leader either: the follower's own
// promise ends early, but a PreVote (and a vote) needs a quorum, and the
// voters that still hear the leader refuse it for a full election timeout.
// A partition closes nothing, so it still costs an election timeout. A
// message from the leader after the signal cancels it: the leader lives.
//
// The same bound shortens the promise a start keeps (New): any answer a
// restarted voter gave was given before the start, so ClosedPromiseTicks
// from the start outlast its lease as well; a voter restarted just before
// the leader died then does not hold up the election for a full election
// timeout.

// ClosedPromiseTicks is Config.ClosedPromiseTicks (0: the signal is
// ignored), for the runtime to check it against its own timing.
func (r *Raft) ClosedPromiseTicks() int {
	if r.cfg.DisablePreVote || r.cfg.DisableCheckQuorum {
		return 0
	}
	return r.cfg.ClosedPromiseTicks
}

// ReportClosed tells the core that the runtime's connection to id was
// closed by the other end, or a new one refused. A follower of id (with
// ClosedPromiseTicks set, PreVote and CheckQuorum on) cuts its vote
// refusal as above and campaigns, with PreVote, soon after it ends.
func (r *Raft) ReportClosed(id pb.NodeID) {
	if r.log.err != nil || r.ClosedPromiseTicks() == 0 {
		return
	}
	if r.role != Follower || id == pb.None || id != r.lead || r.heardAt == 0 || !r.promotable() {
		return
	}
	end := r.heardAt - 1 + uint64(r.cfg.ClosedPromiseTicks)
	if mutated(MutationClosedDropsPromise) {
		end = r.ticks
	}
	// Never later than the full promise.
	r.voteLeaseEnd = min(r.voteLeaseEnd, end)
	r.earlyCampaigns = maxEarlyCampaigns
	r.campaignEarly(1)
}

// maxEarlyCampaigns bounds the early campaign timers one signal sets: the
// first, and one per (Pre)Vote round it starts or loses, for a retry if
// that round splits between followers that got the signal together or
// meets a voter whose refusal runs a tick longer. A follower cut off from
// a live leader gives up after these and waits like any other.
const maxEarlyCampaigns = 6

// campaignEarly brings the election timer forward so that this follower
// (or stalled candidate) campaigns soon: no earlier than its vote refusal
// ends and after ticks from now, plus a random delay of up to half a
// heartbeat interval (at least two ticks), so that followers that got the
// signal together rarely split the vote. A later message from a leader, or
// a vote granted, resets the timer and with it this.
func (r *Raft) campaignEarly(after int) {
	if r.earlyCampaigns == 0 {
		return
	}
	r.earlyCampaigns--
	jitter := max(2, r.cfg.HeartbeatTicks/2)
	at := max(r.voteLeaseEnd, r.ticks+uint64(after)) + uint64(r.rand.IntN(jitter+1))
	wait := int(at - r.ticks)
	r.electionElapsed = max(r.electionElapsed, r.randomizedElection-wait)
}

// retryEarly schedules the next early campaign a heartbeat interval from
// now: the (Pre)Vote round just started or lost may be a split between
// followers that got the signal together.
func (r *Raft) retryEarly() { r.campaignEarly(r.cfg.HeartbeatTicks) }
