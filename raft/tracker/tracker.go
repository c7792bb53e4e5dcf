// Package tracker keeps the leader's view of every member: the configuration
// in force, per-follower replication progress (Figure 2's nextIndex and
// matchIndex, with probe / replicate / snapshot flow control) and the votes
// of the current election.
//
// It is part of the deterministic core: no goroutines, no clock. Members
// are always visited in ascending id order so that the messages the core
// produces do not depend on map iteration order. Not safe for concurrent use.
package tracker

import (
	"slices"

	"github.com/raftkv/raftkv/raft/quorum"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Config is the configuration in force, split into voting halves and
// learners.
type Config struct {
	Voters   quorum.Joint
	Learners []pb.NodeID // sorted
}

// ConfigFromState converts a ConfState.
func ConfigFromState(cs pb.ConfState) Config {
	return Config{
		Voters:   quorum.Joint{quorum.NewMajority(cs.Voters...), quorum.NewMajority(cs.VotersOutgoing...)},
		Learners: quorum.NewMajority(cs.Learners...),
	}
}

// IsLearner reports whether id receives the log without voting.
func (c Config) IsLearner(id pb.NodeID) bool {
	_, ok := slices.BinarySearch(c.Learners, id)
	return ok && !c.Voters.Contains(id)
}

// Tracker holds the configuration, progress and votes.
type Tracker struct {
	Config
	Progress map[pb.NodeID]*Progress
	Votes    map[pb.NodeID]bool
	ids      []pb.NodeID // sorted ids of Progress

	maxInflight      int
	maxInflightBytes uint64
}

// New returns an empty tracker with the given flow-control limits.
func New(maxInflight int, maxInflightBytes uint64) *Tracker {
	return &Tracker{
		Progress:         map[pb.NodeID]*Progress{},
		Votes:            map[pb.NodeID]bool{},
		maxInflight:      maxInflight,
		maxInflightBytes: maxInflightBytes,
	}
}

// SetConfig installs cfg. Members that stay keep their progress; new ones
// start probing at next; members that left are dropped, except those in
// retiring: they are still replicated to (without voting or counting) so
// that they receive the configuration that removes them and learn it.
func (t *Tracker) SetConfig(cfg Config, retiring []pb.NodeID, next pb.Index) {
	t.Config = cfg
	ids := cfg.Voters.IDs()
	ids = append(ids, cfg.Learners...)
	ids = append(ids, retiring...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	keep := make(map[pb.NodeID]*Progress, len(ids))
	for _, id := range ids {
		pr, ok := t.Progress[id]
		if !ok {
			pr = NewProgress(next, t.maxInflight, t.maxInflightBytes, false)
			pr.RecentActive = true // a newcomer is given one election timeout
		}
		pr.IsLearner = cfg.IsLearner(id)
		keep[id] = pr
	}
	t.Progress = keep
	t.ids = ids
}

// IDs returns every member id in ascending order. The slice must not be
// modified.
func (t *Tracker) IDs() []pb.NodeID { return t.ids }

// Visit calls f for every member in ascending id order.
func (t *Tracker) Visit(f func(id pb.NodeID, pr *Progress)) {
	for _, id := range t.ids {
		f(id, t.Progress[id])
	}
}

// Committed returns the highest index stored on a quorum of voters (of
// each half when joint).
func (t *Tracker) Committed() pb.Index {
	return t.Voters.CommittedIndex(func(id pb.NodeID) (pb.Index, bool) {
		pr, ok := t.Progress[id]
		if !ok {
			return 0, false
		}
		return pr.Match, true
	})
}

// QuorumActive reports whether a quorum of voters was recently active.
func (t *Tracker) QuorumActive() bool {
	return t.Voters.Active(func(id pb.NodeID) bool {
		pr, ok := t.Progress[id]
		return ok && pr.RecentActive
	})
}

// ResetVotes forgets the current election.
func (t *Tracker) ResetVotes() { clear(t.Votes) }

// RecordVote records id's answer; the first answer of each voter counts.
func (t *Tracker) RecordVote(id pb.NodeID, granted bool) {
	if _, ok := t.Votes[id]; !ok {
		t.Votes[id] = granted
	}
}

// TallyVotes returns the election's state.
func (t *Tracker) TallyVotes() quorum.VoteResult { return t.Voters.VoteResult(t.Votes) }

// IsSingleton reports whether this is a one-voter, non-joint configuration.
func (t *Tracker) IsSingleton() bool { return len(t.Voters[0]) == 1 && len(t.Voters[1]) == 0 }
