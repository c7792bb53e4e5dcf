// Package confchange computes membership transitions by joint consensus
// (§6, Figures 10 and 11) as pure functions of configurations.
//
// A change from C_old to C_new goes through C_old,new: Enter builds the
// joint configuration, Leave the final one. A change that leaves the voter
// set as it is (adding or removing learners only) needs no joint phase,
// since learners never count towards a quorum.
//
// Invariants of every configuration produced here (checked by Validate): id
// lists sorted and without duplicates, no zero id, at least one voter in the
// incoming half, learners disjoint from incoming voters.
package confchange

import (
	"errors"
	"fmt"
	"slices"

	pb "github.com/raftkv/raftkv/raftpb"
)

// ErrInvalid is wrapped by every error about a malformed configuration.
var ErrInvalid = errors.New("confchange: invalid configuration")

// ErrJoint is returned when a change is asked for while a joint
// configuration is still in force.
var ErrJoint = errors.New("confchange: a membership change is already in progress")

// Target is the configuration a change should end in.
type Target struct {
	Voters   []pb.NodeID
	Learners []pb.NodeID
	// Context becomes the configuration's Context (members' addresses).
	Context []byte
}

func normalise(ids []pb.NodeID) []pb.NodeID {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

// Validate checks the invariants of a configuration.
func Validate(c pb.ConfState) error {
	for _, l := range [][]pb.NodeID{c.Voters, c.VotersOutgoing, c.Learners} {
		for i, id := range l {
			if id == pb.None {
				return fmt.Errorf("%w: member id 0", ErrInvalid)
			}
			if i > 0 && l[i-1] >= id {
				return fmt.Errorf("%w: ids not sorted and unique: %v", ErrInvalid, l)
			}
		}
	}
	if len(c.Voters) == 0 {
		return fmt.Errorf("%w: no voters", ErrInvalid)
	}
	for _, id := range c.Learners {
		if _, ok := slices.BinarySearch(c.Voters, id); ok {
			return fmt.Errorf("%w: %d is both voter and learner", ErrInvalid, id)
		}
	}
	return nil
}

// Enter returns the configuration that starts the change from cur to t:
// joint when the voter set changes, final otherwise. cur must not be joint.
func Enter(cur pb.ConfState, t Target) (pb.ConfState, error) {
	if cur.Joint() {
		return pb.ConfState{}, ErrJoint
	}
	next := pb.ConfState{Voters: normalise(t.Voters), Learners: normalise(t.Learners), Context: t.Context}
	if err := Validate(next); err != nil {
		return pb.ConfState{}, err
	}
	if !slices.Equal(next.Voters, cur.Voters) {
		next.VotersOutgoing = slices.Clone(cur.Voters)
	}
	return next, nil
}

// Leave returns C_new for the joint configuration cur.
func Leave(cur pb.ConfState) (pb.ConfState, error) {
	if !cur.Joint() {
		return pb.ConfState{}, fmt.Errorf("%w: leave of a configuration that is not joint", ErrInvalid)
	}
	return pb.ConfState{Voters: slices.Clone(cur.Voters), Learners: slices.Clone(cur.Learners), Context: cur.Context}, nil
}

// AddLearner returns the target that adds id as a learner.
func AddLearner(cur pb.ConfState, id pb.NodeID) (Target, error) {
	if cur.Contains(id) {
		return Target{}, fmt.Errorf("%w: %d is already a member", ErrInvalid, id)
	}
	return Target{Voters: cur.Voters, Learners: append(slices.Clone(cur.Learners), id), Context: cur.Context}, nil
}

// AddVoter returns the target that adds id (new, or a learner) as a voter.
func AddVoter(cur pb.ConfState, id pb.NodeID) (Target, error) {
	if slices.Contains(cur.Voters, id) {
		return Target{}, fmt.Errorf("%w: %d is already a voter", ErrInvalid, id)
	}
	learners := slices.DeleteFunc(slices.Clone(cur.Learners), func(x pb.NodeID) bool { return x == id })
	return Target{Voters: append(slices.Clone(cur.Voters), id), Learners: learners, Context: cur.Context}, nil
}

// Remove returns the target without id.
func Remove(cur pb.ConfState, id pb.NodeID) (Target, error) {
	if !cur.Contains(id) {
		return Target{}, fmt.Errorf("%w: %d is not a member", ErrInvalid, id)
	}
	drop := func(x pb.NodeID) bool { return x == id }
	return Target{
		Voters:   slices.DeleteFunc(slices.Clone(cur.Voters), drop),
		Learners: slices.DeleteFunc(slices.Clone(cur.Learners), drop),
		Context:  cur.Context,
	}, nil
}

// SetVoters returns the target whose voters are exactly voters; current
// members left out are removed, learners named become voters.
func SetVoters(cur pb.ConfState, voters []pb.NodeID) Target {
	in := func(x pb.NodeID) bool { return slices.Contains(voters, x) }
	return Target{
		Voters:   slices.Clone(voters),
		Learners: slices.DeleteFunc(slices.Clone(cur.Learners), in),
		Context:  cur.Context,
	}
}
