// Package quorum is the arithmetic of majorities: which index a set of
// voters has committed and how an election stands. It holds joint
// configurations (§6): there a decision needs a majority of each half.
//
// Everything here is a pure function of its inputs; nothing is safe or
// unsafe for concurrent use because nothing is shared.
package quorum

import (
	"slices"

	pb "github.com/raftkv/raftkv/raftpb"
)

// VoteResult is the state of an election.
type VoteResult uint8

const (
	// VotePending: neither won nor lost yet.
	VotePending VoteResult = iota
	VoteLost
	VoteWon
)

func (v VoteResult) String() string {
	return [...]string{"pending", "lost", "won"}[v]
}

// Majority is a set of voters, sorted and without duplicates.
type Majority []pb.NodeID

// NewMajority returns the sorted, deduplicated set of ids.
func NewMajority(ids ...pb.NodeID) Majority {
	m := slices.Clone(ids)
	slices.Sort(m)
	return slices.Compact(m)
}

// Contains reports whether id is a voter of m.
func (m Majority) Contains(id pb.NodeID) bool {
	_, ok := slices.BinarySearch(m, id)
	return ok
}

// Quorum is the number of voters that make a majority. An empty set needs no
// votes: it imposes no restriction (the missing half of a non-joint config).
func (m Majority) Quorum() int {
	if len(m) == 0 {
		return 0
	}
	return len(m)/2 + 1
}

// AckedIndex reports, for a voter, the highest index it is known to hold.
type AckedIndex func(id pb.NodeID) (idx pb.Index, ok bool)

// CommittedIndex returns the highest index held by a majority of m. An empty
// set returns the largest Index so that, joined with another set, it does
// not restrict.
func (m Majority) CommittedIndex(acked AckedIndex) pb.Index {
	if len(m) == 0 {
		return ^pb.Index(0)
	}
	// Small clusters: a stack array avoids allocation on the commit path.
	var stack [7]pb.Index
	var idx []pb.Index
	if len(m) <= len(stack) {
		idx = stack[:len(m)]
	} else {
		idx = make([]pb.Index, len(m))
	}
	for i, id := range m {
		v, _ := acked(id)
		idx[i] = v
	}
	slices.Sort(idx)
	// Sorted ascending: the value at len-quorum is held by at least quorum voters.
	return idx[len(idx)-m.Quorum()]
}

// VoteResult tallies votes (true = granted; absent = not yet answered).
func (m Majority) VoteResult(votes map[pb.NodeID]bool) VoteResult {
	if len(m) == 0 {
		return VoteWon
	}
	granted, missing := 0, 0
	for _, id := range m {
		v, ok := votes[id]
		switch {
		case !ok:
			missing++
		case v:
			granted++
		}
	}
	q := m.Quorum()
	if granted >= q {
		return VoteWon
	}
	if granted+missing >= q {
		return VotePending
	}
	return VoteLost
}

// Active reports whether a majority of m is in the set for which active
// returns true (used by CheckQuorum and ReadIndex acknowledgement).
func (m Majority) Active(active func(id pb.NodeID) bool) bool {
	if len(m) == 0 {
		return true
	}
	n := 0
	for _, id := range m {
		if active(id) {
			n++
		}
	}
	return n >= m.Quorum()
}

// Joint is a configuration of one (Joint[1] empty) or two majorities.
// Joint[0] is the incoming (or only) set, Joint[1] the outgoing one.
type Joint [2]Majority

// IsJoint reports whether both halves are in force.
func (j Joint) IsJoint() bool { return len(j[1]) > 0 }

// Contains reports whether id votes in either half.
func (j Joint) Contains(id pb.NodeID) bool { return j[0].Contains(id) || j[1].Contains(id) }

// IDs returns the sorted union of both halves.
func (j Joint) IDs() []pb.NodeID {
	out := append(slices.Clone(j[0]), j[1]...)
	slices.Sort(out)
	return slices.Compact(out)
}

// CommittedIndex is the highest index held by a majority of each half.
func (j Joint) CommittedIndex(acked AckedIndex) pb.Index {
	a, b := j[0].CommittedIndex(acked), j[1].CommittedIndex(acked)
	if a == ^pb.Index(0) && b == ^pb.Index(0) {
		return 0 // no voters at all: nothing is committed
	}
	return min(a, b)
}

// VoteResult is won only when both halves are won, lost when either is lost.
func (j Joint) VoteResult(votes map[pb.NodeID]bool) VoteResult {
	if len(j[0]) == 0 && len(j[1]) == 0 {
		return VoteLost
	}
	a, b := j[0].VoteResult(votes), j[1].VoteResult(votes)
	if a == b {
		return a
	}
	if a == VoteLost || b == VoteLost {
		return VoteLost
	}
	return VotePending
}

// Active reports whether a majority of each half is active.
func (j Joint) Active(active func(id pb.NodeID) bool) bool {
	if len(j[0]) == 0 && len(j[1]) == 0 {
		return false
	}
	return j[0].Active(active) && j[1].Active(active)
}
