package raft

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/raftkv/raftkv/raft/confchange"
	"github.com/raftkv/raftkv/raft/tracker"
	pb "github.com/raftkv/raftkv/raftpb"
)

// ErrInvariant is wrapped by every error CheckInvariants returns.
var ErrInvariant = errors.New("raft: invariant violated")

// CheckInvariants reports the first documented invariant of the core's
// state that does not hold, naming the values. The test harness and the
// simulator call it after every Step, Tick and Advance, so that a state
// that broke an invariant is caught where it broke rather than when it
// later misbehaves. It reads storage (a few Term lookups) and visits every
// member: cheap, but not meant for the production path. A core in its
// failed state (Err) promises nothing but to refuse work, so it is not
// checked.
func (r *Raft) CheckInvariants() error {
	if r.log.err != nil {
		return nil
	}
	for _, check := range []func() error{r.checkLog, r.checkRole, r.checkConfs, r.checkProgress, r.checkReadys, r.checkLease} {
		if err := check(); err != nil {
			return fmt.Errorf("%w: member %d term %d %s: %w", ErrInvariant, r.id, r.term, r.role, err)
		}
	}
	return nil
}

// checkLog: applied <= applying <= committed <= lastIndex (raftLog); the
// snapshot the log starts from is committed; an entry is handed out for
// persistence before it is applied; the unstable suffix is contiguous and
// may replace only a durable suffix; no entry has a term past ours.
func (r *Raft) checkLog() error {
	l := r.log
	u := &l.unstable
	first, last := l.firstIndex(), l.lastIndex()
	if !(l.applied <= l.applying && l.applying <= l.committed && l.committed <= last) {
		return fmt.Errorf("log: want applied %d <= applying %d <= committed %d <= last %d",
			l.applied, l.applying, l.committed, last)
	}
	if first == 0 || first > last+1 {
		return fmt.Errorf("log: first index %d, last index %d", first, last)
	}
	if l.committed+1 < first {
		return fmt.Errorf("log: committed %d below the snapshot at %d", l.committed, first-1)
	}
	if !(u.offset <= u.offsetInProgress && u.offsetInProgress <= u.offset+pb.Index(len(u.entries))) {
		return fmt.Errorf("unstable: want offset %d <= in progress %d <= end %d",
			u.offset, u.offsetInProgress, u.offset+pb.Index(len(u.entries)))
	}
	if l.applying >= u.offsetInProgress && u.snapshot == nil {
		return fmt.Errorf("log: applying %d not yet handed out for persistence (in progress from %d)",
			l.applying, u.offsetInProgress)
	}
	for i := range u.entries {
		if want := u.offset + pb.Index(i); u.entries[i].Index != want {
			return fmt.Errorf("unstable: entry %d has index %d, want %d", i, u.entries[i].Index, want)
		}
		if i > 0 && u.entries[i].Term < u.entries[i-1].Term {
			return fmt.Errorf("unstable: term falls from %d to %d at index %d",
				u.entries[i-1].Term, u.entries[i].Term, u.entries[i].Index)
		}
	}
	if u.snapshot != nil {
		if u.snapshot.Index+1 != u.offset {
			return fmt.Errorf("unstable: snapshot at %d, entries from %d", u.snapshot.Index, u.offset)
		}
	} else if sl := l.storage.LastIndex(); u.offset > sl+1 {
		return fmt.Errorf("unstable: offset %d leaves a gap after the durable last index %d", u.offset, sl)
	}
	lastTerm, err := l.term(last)
	if err != nil {
		return fmt.Errorf("log: term of last index %d: %w", last, err)
	}
	if lastTerm > r.term {
		return fmt.Errorf("log: last entry %d has term %d past the current term %d", last, lastTerm, r.term)
	}
	if l.committed >= first {
		if _, err := l.term(l.committed); err != nil {
			return fmt.Errorf("log: term of committed index %d: %w", l.committed, err)
		}
	}
	return nil
}

// checkRole: terms and votes only move forward and what was handed out is
// never ahead of memory; a candidate and a leader voted for themselves
// (§5.2); a leader leads; passive roles follow the configuration.
func (r *Raft) checkRole() error {
	for _, hs := range []pb.HardState{r.prevHard, r.durableHard} {
		if hs.Term > r.term || (hs.Term == r.term && hs.Vote != pb.None && hs.Vote != r.vote) {
			return fmt.Errorf("hard state %+v handed out, now term %d vote %d", hs, r.term, r.vote)
		}
		if hs.Commit > r.log.committed {
			return fmt.Errorf("hard state %+v handed out, now commit %d", hs, r.log.committed)
		}
	}
	switch r.role {
	case Leader:
		if r.lead != r.id || r.vote != r.id {
			return fmt.Errorf("leader with lead %d vote %d", r.lead, r.vote)
		}
	case Candidate:
		if r.vote != r.id || r.lead != pb.None {
			return fmt.Errorf("candidate with vote %d lead %d", r.vote, r.lead)
		}
	case PreCandidate:
		if r.lead != pb.None {
			return fmt.Errorf("precandidate with lead %d", r.lead)
		}
	default:
		if want := r.followerRole(); r.role != want {
			return fmt.Errorf("role %s, the configuration %s makes it %s", r.role, r.conf(), want)
		}
	}
	if (r.role == Candidate || r.role == PreCandidate) && !r.promotable() {
		return fmt.Errorf("campaigning without a vote in %s", r.conf())
	}
	if r.role != Leader && (r.leadTransferee != pb.None || len(r.reads.pending) > 0 || len(r.reads.rounds) > 0) {
		return fmt.Errorf("%s holds leader state: transferee %d, %d reads pending, %d rounds",
			r.role, r.leadTransferee, len(r.reads.pending), len(r.reads.rounds))
	}
	n := len(r.reads.pending)
	for _, round := range r.reads.rounds {
		n += len(round.reqs)
	}
	if n != r.reads.count || n > MaxPendingReads {
		return fmt.Errorf("reads: %d held, counted %d (limit %d)", n, r.reads.count, MaxPendingReads)
	}
	return nil
}

// checkConfs: confs[0] is at or below the commit index, the rest above it
// and ascending, all within the log; each is valid; the tracker holds the
// last (§6: a configuration is in force once appended).
func (r *Raft) checkConfs() error {
	if len(r.confs) == 0 {
		return errors.New("confs: no configuration")
	}
	for i, c := range r.confs {
		if c.index > r.log.lastIndex() {
			return fmt.Errorf("confs: configuration at %d past last index %d", c.index, r.log.lastIndex())
		}
		if i == 0 && c.index > r.log.committed {
			return fmt.Errorf("confs: base configuration at %d above commit %d", c.index, r.log.committed)
		}
		if i > 0 && (c.index <= r.log.committed || c.index <= r.confs[i-1].index) {
			return fmt.Errorf("confs: pending configuration at %d, previous at %d, commit %d",
				c.index, r.confs[i-1].index, r.log.committed)
		}
		// A server that has not yet learned any configuration holds the
		// empty one; every other must be valid.
		if len(c.conf.Voters)+len(c.conf.VotersOutgoing)+len(c.conf.Learners) > 0 {
			if err := confchange.Validate(c.conf); err != nil {
				return fmt.Errorf("confs: configuration at %d: %w", c.index, err)
			}
		}
	}
	want := tracker.ConfigFromState(r.conf())
	if !slices.Equal(want.Voters[0], r.trk.Voters[0]) || !slices.Equal(want.Voters[1], r.trk.Voters[1]) ||
		!slices.Equal(want.Learners, r.trk.Learners) {
		return fmt.Errorf("tracker holds %v learners %v, the configuration in force is %s",
			r.trk.Voters, r.trk.Learners, r.conf())
	}
	for _, id := range append(r.conf().Voters, append(r.conf().VotersOutgoing, r.conf().Learners...)...) {
		if r.trk.Progress[id] == nil {
			return fmt.Errorf("tracker: member %d of %s has no progress", id, r.conf())
		}
	}
	return nil
}

// checkProgress (leader): every follower's progress keeps Match < Next <=
// lastIndex+1 with its window consistent; the leader's own Match is its
// durable last index (it counts itself only after its fsync, §10.2.1).
func (r *Raft) checkProgress() error {
	if r.role != Leader {
		return nil
	}
	last := r.log.lastIndex()
	var err error
	r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
		if err != nil {
			return
		}
		if e := pr.CheckInvariants(); e != nil {
			err = fmt.Errorf("member %d: %w", id, e)
			return
		}
		if pr.Next > last+1 {
			err = fmt.Errorf("member %d: next %d past last index %d", id, pr.Next, last)
			return
		}
		if pr.IsLearner != r.trk.IsLearner(id) {
			err = fmt.Errorf("member %d: learner flag %v, configuration %s", id, pr.IsLearner, r.conf())
			return
		}
		if id == r.id && pr.Match != r.stableLastIndex() {
			err = fmt.Errorf("leader's own match %d, durable last index %d", pr.Match, r.stableLastIndex())
		}
	})
	return err
}

// checkReadys: Readys outstanding are numbered in order and none is ahead
// of the last handed out.
func (r *Raft) checkReadys() error {
	for i, rec := range r.outstanding {
		if rec.id > r.nextReadyID || (i > 0 && rec.id <= r.outstanding[i-1].id) {
			return fmt.Errorf("readys: outstanding %d after %d, last handed out %d",
				rec.id, r.outstanding[max(i-1, 0)].id, r.nextReadyID)
		}
		if rec.lastApplied > r.log.applying {
			return fmt.Errorf("readys: Ready %d applies to %d, applying is %d", rec.id, rec.lastApplied, r.log.applying)
		}
	}
	return nil
}

// checkLease: only a leader holds heartbeat rounds; the send ticks it keeps
// are at most leaseRoundsMax, ascending in round and tick, none past the
// last round or the clock; no answer backs the lease for longer than the
// lease window from now (§6.4.1: the lease runs from a send, which is past).
func (r *Raft) checkLease() error {
	s := &r.reads
	if r.role != Leader && (len(s.sent) > 0 || len(s.acked) > 0) {
		return fmt.Errorf("lease: %s holds %d round send ticks and %d answers", r.role, len(s.sent), len(s.acked))
	}
	if len(s.sent) > leaseRoundsMax {
		return fmt.Errorf("lease: %d round send ticks kept, limit %d", len(s.sent), leaseRoundsMax)
	}
	for i, e := range s.sent {
		if e.seq > s.seq || e.tick > r.ticks || (i > 0 && (e.seq <= s.sent[i-1].seq || e.tick <= s.sent[i-1].tick)) {
			return fmt.Errorf("lease: round send ticks %v out of order (last round %d, tick %d)", s.sent, s.seq, r.ticks)
		}
	}
	for _, id := range slices.Sorted(maps.Keys(s.acked)) {
		a := s.acked[id]
		if a.seq > s.seq || a.leaseEnd > r.ticks+r.leaseTicks() {
			return fmt.Errorf("lease: member %d answered round %d backing the lease to tick %d (last round %d, tick %d)",
				id, a.seq, a.leaseEnd, s.seq, r.ticks)
		}
	}
	return nil
}
