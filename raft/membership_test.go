package raft_test

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// appliedConfs returns the configurations member id applied, in log order.
func (c *cluster) appliedConfs(id pb.NodeID) []string {
	c.t.Helper()
	var out []string
	for _, e := range *c.applied[id] {
		if e.Type != pb.EntryConfChange {
			continue
		}
		cs, err := pb.DecodeConfState(e.Data)
		if err != nil {
			c.t.Fatalf("member %d applied configuration entry %d that does not decode: %v", id, e.Index, err)
		}
		out = append(out, cs.String())
	}
	return out
}

// TestConfChangeAutoLeave shows the two phases of a change of voters (§6,
// Figure 11): the leader appends C_old,new, and once that is committed it
// appends C_new by itself, with no further request; every member applies
// the same sequence and ends in C_new.
func TestConfChangeAutoLeave(t *testing.T) {
	c := leaderS1(t, 5, 3)
	if _, _, err := c.cores[1].ProposeConfChange(confchange.Target{
		Voters: []pb.NodeID{1, 2, 3}, Learners: []pb.NodeID{4, 5}}); err != nil {
		t.Fatal(err)
	}
	c.drive()
	if _, _, err := c.cores[1].ProposeConfChange(confchange.Target{Voters: []pb.NodeID{1, 4, 5}}); err != nil {
		t.Fatal(err)
	}
	c.drive()
	want := []string{
		"voters=[1 2 3] learners=[]",
		"voters=[1 2 3] learners=[4 5]",
		"voters=[1 4 5]&&[1 2 3] learners=[]",
		"voters=[1 4 5] learners=[]",
	}
	for _, id := range []pb.NodeID{1, 4, 5} {
		got := c.appliedConfs(id)
		if len(got) != len(want) {
			t.Fatalf("member %d applied configurations %q, want %q", id, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("member %d applied configurations %q, want %q", id, got, want)
			}
		}
	}
	if got := c.cores[1].ConfState(); got.Joint() || got.String() != want[3] {
		t.Fatalf("leader's configuration %s, want %s", got, want[3])
	}
	// Removed members learn that they were removed: they were replicated to
	// until C_new committed, and no longer after.
	prs := c.cores[1].Status().Progress
	for _, id := range []pb.NodeID{2, 3} {
		if role := c.cores[id].Role(); role != raft.Removed {
			t.Errorf("member %d is %s, want removed", id, role)
		}
		if pr, ok := prs[id]; ok {
			t.Errorf("leader still tracks removed member %d: %+v", id, pr)
		}
	}
	c.one("after", 3, 100)
}

// TestConfChangeRefusals shows the changes the leader refuses, each with
// the error a caller can act on; a refused change appends nothing.
func TestConfChangeRefusals(t *testing.T) {
	c := newClusterOf(t, 5, 3, func(cfg *raft.Config) { cfg.MaxLearnerLag = 2 })
	c.campaign(1)
	c.drive()
	r := c.cores[1]
	if r.Role() != raft.Leader {
		t.Fatalf("S1 is %s, want leader", r.Role())
	}
	// 5 is cut off before it joins, so it stays behind.
	c.cut[5] = true
	if _, _, err := r.ProposeConfChange(confchange.Target{Voters: []pb.NodeID{1, 2, 3}, Learners: []pb.NodeID{4, 5}}); err != nil {
		t.Fatal(err)
	}
	// Until that change commits, no other may start.
	_, _, err := r.ProposeConfChange(confchange.Target{Voters: []pb.NodeID{1, 2, 3}, Learners: []pb.NodeID{4}})
	if !errors.Is(err, raft.ErrConfChangeInProgress) {
		t.Fatalf("second change while one is pending: %v, want ErrConfChangeInProgress", err)
	}
	c.drive()
	for i := 0; i < 5; i++ {
		c.propose(1, cmdN("w", i))
		c.drive()
	}
	last := r.Status().LastIndex
	for _, tc := range []struct {
		name   string
		target confchange.Target
		want   error
	}{
		{"a voter that never was a learner", confchange.Target{Voters: []pb.NodeID{1, 2, 3, 6}, Learners: []pb.NodeID{4, 5}}, confchange.ErrInvalid},
		{"a learner too far behind", confchange.Target{Voters: []pb.NodeID{1, 2, 3, 5}, Learners: []pb.NodeID{4}}, raft.ErrLearnerLagging},
		{"no voters at all", confchange.Target{Learners: []pb.NodeID{1, 2, 3, 4, 5}}, confchange.ErrInvalid},
		{"a member both voter and learner", confchange.Target{Voters: []pb.NodeID{1, 2, 3, 4}, Learners: []pb.NodeID{4, 5}}, confchange.ErrInvalid},
	} {
		_, _, err := r.ProposeConfChange(tc.target)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
		if got := r.Status().LastIndex; got != last {
			t.Fatalf("%s: refused change appended up to %d (was %d)", tc.name, got, last)
		}
	}
	var nl *raft.NotLeaderError
	if _, _, err := c.cores[2].ProposeConfChange(confchange.Target{Voters: []pb.NodeID{1, 2}}); !errors.As(err, &nl) || nl.Leader != 1 {
		t.Fatalf("change proposed to a follower: %v, want NotLeaderError naming 1", err)
	}
	// The caught-up learner can be promoted.
	if _, _, err := r.ProposeConfChange(confchange.Target{Voters: []pb.NodeID{1, 2, 3, 4}, Learners: []pb.NodeID{5}}); err != nil {
		t.Fatalf("promoting caught-up learner 4: %v", err)
	}
	c.drive()
	if got := r.ConfState().String(); got != "voters=[1 2 3 4] learners=[5]" {
		t.Fatalf("configuration %s after promoting 4", got)
	}
}
