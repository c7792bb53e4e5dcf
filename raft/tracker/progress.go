package tracker

import (
	"fmt"

	pb "github.com/raftkv/raftkv/raftpb"
)

// State is how the leader is sending to a follower.
type State uint8

const (
	// StateProbe: one AppendEntries at a time until the follower's log is
	// found to match (after election or a rejection).
	StateProbe State = iota
	// StateReplicate: the logs match; entries are pipelined optimistically
	// within the inflight window.
	StateReplicate
	// StateSnapshot: the follower needs entries the leader compacted away;
	// nothing is sent until the snapshot is reported.
	StateSnapshot
)

func (s State) String() string { return [...]string{"probe", "replicate", "snapshot"}[s] }

// Progress is the leader's view of one follower (Figure 2: nextIndex and
// matchIndex, plus flow control).
//
// Invariants: Match < Next; in StateSnapshot, PendingSnapshot > 0.
type Progress struct {
	Match, Next pb.Index
	State       State
	// PendingSnapshot is the index of the snapshot being sent.
	PendingSnapshot pb.Index
	// RecentActive is set by any message from the follower and cleared
	// every election timeout by CheckQuorum.
	RecentActive bool
	// ProbeSent pauses a probing follower until it answers or a heartbeat
	// interval passes.
	ProbeSent bool
	Inflights *Inflights
	IsLearner bool
	// SentCommit is the highest commit index sent to the follower.
	SentCommit pb.Index
}

// NewProgress returns a progress in StateProbe that will first send next.
func NewProgress(next pb.Index, maxInflight int, maxInflightBytes uint64, learner bool) *Progress {
	return &Progress{Next: next, Inflights: NewInflights(maxInflight, maxInflightBytes), IsLearner: learner}
}

func (p *Progress) reset(s State) {
	p.State = s
	p.ProbeSent = false
	p.PendingSnapshot = 0
	p.Inflights.Reset()
}

// BecomeProbe resends from just after what is known to match.
func (p *Progress) BecomeProbe() {
	if p.State == StateSnapshot {
		pending := p.PendingSnapshot
		p.reset(StateProbe)
		p.Next = max(p.Match+1, pending+1)
		return
	}
	p.reset(StateProbe)
	p.Next = p.Match + 1
}

// BecomeReplicate starts pipelining after Match.
func (p *Progress) BecomeReplicate() {
	p.reset(StateReplicate)
	p.Next = p.Match + 1
}

// BecomeSnapshot waits for the snapshot at index to be installed.
func (p *Progress) BecomeSnapshot(index pb.Index) {
	p.reset(StateSnapshot)
	p.PendingSnapshot = index
}

// MaybeUpdate records that the follower holds everything up to n. It
// reports whether Match advanced.
func (p *Progress) MaybeUpdate(n pb.Index) bool {
	updated := false
	if p.Match < n {
		p.Match = n
		updated = true
		p.ProbeSent = false
	}
	p.Next = max(p.Next, n+1)
	return updated
}

// SentEntries records an AppendEntries carrying entries up to last (bytes
// of payload) just sent.
func (p *Progress) SentEntries(last pb.Index, count int, bytes uint64) {
	switch p.State {
	case StateReplicate:
		if count > 0 {
			p.Next = last + 1
			p.Inflights.Add(last, bytes)
		}
	case StateProbe:
		p.ProbeSent = true
	default:
		panic(fmt.Sprintf("tracker: sending entries in state %s", p.State))
	}
}

// MaybeDecrTo handles a rejection of the AppendEntries whose prevLogIndex
// was rejected: Next moves to hint+1, where hint is the follower's
// suggestion already reconciled with the leader's log by the caller, and a
// replicating follower falls back to probing. It reports whether the
// rejection was current (a stale one changes nothing).
func (p *Progress) MaybeDecrTo(rejected, hint pb.Index) bool {
	switch p.State {
	case StateReplicate:
		// Stale if it rejects an index already known to match.
		if rejected <= p.Match {
			return false
		}
		p.reset(StateProbe)
	case StateProbe:
		// Only the latest probe (Next-1) counts.
		if p.Next-1 != rejected {
			return false
		}
		p.ProbeSent = false
	default:
		return false
	}
	p.Next = max(min(rejected, hint+1), p.Match+1)
	return true
}

// IsPaused reports whether the leader should hold back new entries.
func (p *Progress) IsPaused() bool {
	switch p.State {
	case StateProbe:
		return p.ProbeSent
	case StateReplicate:
		return p.Inflights.Full()
	default:
		return true
	}
}

func (p *Progress) String() string {
	s := fmt.Sprintf("%s match=%d next=%d", p.State, p.Match, p.Next)
	if p.IsLearner {
		s += " learner"
	}
	if p.State == StateSnapshot {
		s += fmt.Sprintf(" snap=%d", p.PendingSnapshot)
	}
	if n := p.Inflights.Count(); n > 0 {
		s += fmt.Sprintf(" inflight=%d/%dB", n, p.Inflights.Bytes())
	}
	return s
}
