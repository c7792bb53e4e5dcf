package raft

import (
	"fmt"

	"github.com/raftkv/raftkv/raft/tracker"
	pb "github.com/raftkv/raftkv/raftpb"
)

// HasReady reports whether Ready would return any work.
func (r *Raft) HasReady() bool {
	if r.log.err != nil {
		return false // a failed core hands out nothing more
	}
	if r.role == Leader && (r.appendPending || (len(r.reads.pending) > 0 && r.committedInTerm())) {
		return true
	}
	if r.softState() != r.prevSoft || r.hardState() != r.prevHard {
		return true
	}
	u := &r.log.unstable
	if u.snapshot != nil && !u.snapshotInProgress {
		return true
	}
	return len(r.log.nextUnstable()) > 0 || len(r.msgs) > 0 || len(r.readStates) > 0 ||
		r.log.hasNextCommitted()
}

// Ready returns the work accumulated since the previous Ready; see the Ready
// type for what the runtime must do with it.
func (r *Raft) Ready() Ready {
	if r.log.err != nil {
		return Ready{}
	}
	r.flushAppends()
	r.flushReads()
	r.nextReadyID++
	rd := Ready{ID: r.nextReadyID, HardState: r.hardState()}
	if ss := r.softState(); ss != r.prevSoft {
		// Allocated only when it changed (taking &ss would move ss to the
		// heap on every Ready).
		rd.SoftState = new(SoftState)
		*rd.SoftState = ss
		r.prevSoft = ss
	}
	rd.HardStateChanged = rd.HardState != r.prevHard
	r.prevHard = rd.HardState
	u := &r.log.unstable
	if u.snapshot != nil && !u.snapshotInProgress {
		s := *u.snapshot
		rd.Snapshot = &s
	}
	rd.Entries = r.log.nextUnstable()
	u.acceptInProgress()
	rd.CommittedEntries = r.log.nextCommitted()
	if n := len(rd.CommittedEntries); n > 0 {
		r.log.applying = rd.CommittedEntries[n-1].Index
	}
	if rd.Snapshot != nil {
		r.log.applying = max(r.log.applying, rd.Snapshot.Index)
	}
	r.splitMessages(&rd)
	rd.ReadStates = r.readStates
	r.readStates = nil
	rd.MustSync = rd.Snapshot != nil || len(rd.Entries) > 0 ||
		rd.HardState.Term != r.durableHard.Term || rd.HardState.Vote != r.durableHard.Vote

	rec := readyRecord{id: rd.ID, hard: rd.HardState, lastApplied: r.log.applying}
	if n := len(rd.Entries); n > 0 {
		rec.lastEntry = rd.Entries[n-1]
		rec.lastEntry.Data = nil
	}
	if rd.Snapshot != nil {
		rec.snapIndex = rd.Snapshot.Index
	}
	if r.log.err != nil {
		// A read failed while building it: what it holds may rest on what
		// could not be read, so none of it is handed out.
		return Ready{}
	}
	r.outstanding = append(r.outstanding, rec)
	return rd
}

// splitMessages sorts messages into those that may leave at once and those
// that must wait for this Ready to be durable: every message while our
// term or vote is not yet durable (currentTerm and votedFor are persisted
// before any message of the term leaves, Figure 2), and acknowledgements of
// entries (the follower promises it stored them).
func (r *Raft) splitMessages(rd *Ready) {
	if mutated(MutationSendBeforePersist) && len(r.msgs) > 0 {
		rd.Messages = append([]pb.Message(nil), r.msgs...)
		clear(r.msgs)
		r.msgs = r.msgs[:0]
		return
	}
	termDurable := r.termDurable()
	after := 0
	for i := range r.msgs {
		if !termDurable || r.msgs[i].Type == pb.MsgAppendEntriesResp {
			after++
		}
	}
	// The Ready owns its slices (the runtime may keep them); r.msgs is a
	// buffer reused across Readys.
	if now := len(r.msgs) - after; now > 0 {
		rd.Messages = make([]pb.Message, 0, now)
	}
	if after > 0 {
		rd.MessagesAfterPersist = make([]pb.Message, 0, after)
	}
	for _, m := range r.msgs {
		if !termDurable || m.Type == pb.MsgAppendEntriesResp {
			rd.MessagesAfterPersist = append(rd.MessagesAfterPersist, m)
		} else {
			rd.Messages = append(rd.Messages, m)
		}
	}
	clear(r.msgs) // drop references to entries and contexts
	r.msgs = r.msgs[:0]
}

// termDurable reports whether the current term and vote are durable (as of
// the last advanced Ready). Terms and votes only move forward, so then every
// outstanding Ready carries them too.
func (r *Raft) termDurable() bool {
	hs := r.hardState()
	return hs.Term == r.durableHard.Term && hs.Vote == r.durableHard.Vote
}

// TakeMessages hands out, ahead of the next Ready, the messages that Ready
// would put in Messages (those that may leave at once), and keeps the rest
// for it. A runtime that bounds the Readys waiting for its fsync calls it
// while that bound is reached, so that a member whose disk stalls still
// answers heartbeats and sends them: its peers must not take a slow disk
// for a dead server. Nothing is handed out while the term or vote is not
// durable.
func (r *Raft) TakeMessages() []pb.Message {
	if r.log.err != nil || len(r.msgs) == 0 || !r.termDurable() {
		return nil
	}
	var out []pb.Message
	keep := r.msgs[:0]
	for _, m := range r.msgs {
		if m.Type == pb.MsgAppendEntriesResp {
			keep = append(keep, m)
		} else {
			out = append(out, m)
		}
	}
	clear(r.msgs[len(keep):]) // drop references to entries and contexts
	r.msgs = keep
	return out
}

// Advance acknowledges that rd has been handled as the Ready type
// describes. Readys must be advanced in the order they were handed out.
func (r *Raft) Advance(rd Ready) error {
	if r.log.err != nil {
		return r.log.err
	}
	if len(r.outstanding) == 0 || r.outstanding[0].id != rd.ID {
		want := uint64(0)
		if len(r.outstanding) > 0 {
			want = r.outstanding[0].id
		}
		return fmt.Errorf("%w: got Ready %d, want %d", ErrReadyOrder, rd.ID, want)
	}
	rec := r.outstanding[0]
	// Shift rather than reslice, so the buffer keeps its capacity.
	n := copy(r.outstanding, r.outstanding[1:])
	r.outstanding = r.outstanding[:n]
	if rec.snapIndex > 0 {
		r.log.stableSnapTo(rec.snapIndex)
	}
	if rec.lastEntry.Index > 0 {
		r.log.stableTo(rec.lastEntry.Index, rec.lastEntry.Term)
	}
	r.durableHard = rec.hard
	r.log.applied = max(r.log.applied, rec.lastApplied)
	if r.role == Leader {
		if pr := r.trk.Progress[r.id]; pr != nil && pr.MaybeUpdate(r.stableLastIndex()) {
			if r.maybeCommit() {
				r.appendPending = true
			}
		}
	}
	return r.log.err
}

// Err returns the failure that stopped the core (it wraps
// ErrStorageFailed), or nil. A failed core hands out no more Readys or
// messages, and Step, Tick, Advance and every request return this error.
func (r *Raft) Err() error { return r.log.err }

// Outstanding is the number of Readys handed out and not yet advanced.
func (r *Raft) Outstanding() int { return len(r.outstanding) }

// Status is a snapshot of the core's state for observation.
type Status struct {
	ID             pb.NodeID
	Role           Role
	Term           pb.Term
	Vote           pb.NodeID
	Lead           pb.NodeID
	Commit         pb.Index
	Applied        pb.Index
	FirstIndex     pb.Index
	LastIndex      pb.Index
	Conf           pb.ConfState
	LeadTransferee pb.NodeID
	// Err is the failure that stopped the core (see Raft.Err), or nil.
	Err error
	// ElectionElapsed counts the ticks since the election timer was last
	// reset; a follower or candidate campaigns when it reaches
	// ElectionTimeout, the timeout drawn for this term (§5.2).
	ElectionElapsed, ElectionTimeout int
	// Progress is set on the leader: one entry per member.
	Progress map[pb.NodeID]ProgressStatus
}

// ProgressStatus is the leader's view of one member.
type ProgressStatus struct {
	Match, Next   pb.Index
	State         string
	Learner       bool
	RecentActive  bool
	InflightMsgs  int
	InflightBytes uint64
}

// Status returns the current state.
func (r *Raft) Status() Status {
	s := Status{
		ID: r.id, Role: r.role, Term: r.term, Vote: r.vote, Lead: r.lead,
		Commit: r.log.committed, Applied: r.log.applied,
		FirstIndex: r.log.firstIndex(), LastIndex: r.log.lastIndex(),
		Conf: r.conf(), LeadTransferee: r.leadTransferee, Err: r.log.err,
		ElectionElapsed: r.electionElapsed, ElectionTimeout: r.randomizedElection,
	}
	if r.role == Leader {
		s.Progress = map[pb.NodeID]ProgressStatus{}
		r.trk.Visit(func(id pb.NodeID, pr *tracker.Progress) {
			s.Progress[id] = ProgressStatus{
				Match: pr.Match, Next: pr.Next, State: pr.State.String(), Learner: pr.IsLearner,
				RecentActive: pr.RecentActive, InflightMsgs: pr.Inflights.Count(),
				InflightBytes: pr.Inflights.Bytes(),
			}
		})
	}
	return s
}

// Term returns the current term.
func (r *Raft) Term() pb.Term { return r.term }

// Role returns the current role.
func (r *Raft) Role() Role { return r.role }

// Lead returns the leader known to this server (0 if none).
func (r *Raft) Lead() pb.NodeID { return r.lead }

// Committed returns the commit index.
func (r *Raft) Committed() pb.Index { return r.log.committed }
