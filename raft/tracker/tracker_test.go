package tracker

import (
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft/quorum"
	pb "github.com/raftkv/raftkv/raftpb"
)

func conf(voters, outgoing, learners []pb.NodeID) Config {
	return ConfigFromState(pb.ConfState{Voters: voters, VotersOutgoing: outgoing, Learners: learners})
}

func nodes(v ...pb.NodeID) []pb.NodeID { return v }

// TestTrackerSetConfig shows how a new configuration changes the leader's
// view (§6: a configuration is used as soon as it is appended): members
// that stay keep their progress, newcomers start probing at the given
// index, members that left are forgotten unless they are retiring (still
// replicated to so that they learn of their removal), and learners are
// marked.
func TestTrackerSetConfig(t *testing.T) {
	tr := New(4, 0)
	tr.SetConfig(conf(nodes(1, 2, 3), nil, nil), nil, 10)
	if got := tr.IDs(); !slices.Equal(got, nodes(1, 2, 3)) {
		t.Fatalf("ids %v, want [1 2 3]", got)
	}
	tr.Progress[2].MaybeUpdate(7)
	old2 := tr.Progress[2]

	// Replace 3 by 4 (joint), add learner 5, and keep replicating to 3.
	tr.SetConfig(conf(nodes(1, 2, 4), nodes(1, 2, 3), nodes(5)), nil, 20)
	if got := tr.IDs(); !slices.Equal(got, nodes(1, 2, 3, 4, 5)) {
		t.Fatalf("joint: ids %v, want [1 2 3 4 5]", got)
	}
	if tr.Progress[2] != old2 || tr.Progress[2].Match != 7 {
		t.Fatalf("member 2 lost its progress: %s", tr.Progress[2])
	}
	if pr := tr.Progress[4]; pr.Next != 20 || pr.Match != 0 || pr.State != StateProbe || !pr.RecentActive {
		t.Fatalf("newcomer 4: %s active=%v, want probe match=0 next=20, active", pr, pr.RecentActive)
	}
	if !tr.Progress[5].IsLearner || tr.Progress[4].IsLearner || tr.Progress[3].IsLearner {
		t.Fatalf("learner flags: 3=%v 4=%v 5=%v, want only 5", tr.Progress[3].IsLearner, tr.Progress[4].IsLearner, tr.Progress[5].IsLearner)
	}

	// Leave the joint config; 3 is retiring until C_new commits.
	tr.SetConfig(conf(nodes(1, 2, 4), nil, nodes(5)), nodes(3), 30)
	if got := tr.IDs(); !slices.Equal(got, nodes(1, 2, 3, 4, 5)) {
		t.Fatalf("retiring 3: ids %v, want [1 2 3 4 5]", got)
	}
	if tr.Voters.Contains(3) || tr.Committed() != 0 {
		t.Fatalf("retiring 3 must not vote: voters %v", tr.Voters)
	}
	// C_new committed: 3 is gone.
	tr.SetConfig(conf(nodes(1, 2, 4), nil, nodes(5)), nil, 30)
	if _, ok := tr.Progress[3]; ok || slices.Contains(tr.IDs(), 3) {
		t.Fatalf("removed member 3 still tracked: %v", tr.IDs())
	}
	var visited []pb.NodeID
	tr.Visit(func(id pb.NodeID, pr *Progress) { visited = append(visited, id) })
	if !slices.Equal(visited, nodes(1, 2, 4, 5)) {
		t.Fatalf("visit order %v, want [1 2 4 5]", visited)
	}
}

// TestConfigIsLearner shows that a learner that is also an outgoing voter
// (a voter being demoted, joint) still votes until the change completes.
func TestConfigIsLearner(t *testing.T) {
	c := conf(nodes(1, 2), nodes(1, 2, 3), nodes(3, 4))
	for id, want := range map[pb.NodeID]bool{1: false, 3: false, 4: true, 9: false} {
		if got := c.IsLearner(id); got != want {
			t.Errorf("IsLearner(%d) = %v, want %v", id, got, want)
		}
	}
}

// TestTrackerCommitted shows the commit index from matchIndex: a quorum of
// voters; learners and retiring members hold entries without counting.
func TestTrackerCommitted(t *testing.T) {
	tr := New(4, 0)
	tr.SetConfig(conf(nodes(1, 2, 3), nil, nodes(4)), nodes(5), 1)
	for id, m := range map[pb.NodeID]pb.Index{1: 9, 4: 9, 5: 9, 2: 3} {
		tr.Progress[id].MaybeUpdate(m)
	}
	if got := tr.Committed(); got != 3 {
		t.Fatalf("committed %d, want 3 (learner 4 and retiring 5 do not count)", got)
	}
	tr.Progress[3].MaybeUpdate(8)
	if got := tr.Committed(); got != 8 {
		t.Fatalf("committed %d, want 8", got)
	}
	// Joint with a C_new that has not caught up: C_new holds it back.
	tr.SetConfig(conf(nodes(1, 6, 7), nodes(1, 2, 3), nil), nil, 1)
	if got := tr.Committed(); got != 0 {
		t.Fatalf("joint committed %d, want 0 until C_new holds entries", got)
	}
	tr.Progress[6].MaybeUpdate(5)
	if got := tr.Committed(); got != 5 {
		t.Fatalf("joint committed %d, want 5", got)
	}
}

// TestTrackerVotes shows the vote count: the first answer of each voter
// counts, and the tally follows the configuration.
func TestTrackerVotes(t *testing.T) {
	tr := New(4, 0)
	tr.SetConfig(conf(nodes(1, 2, 3), nil, nil), nil, 1)
	tr.RecordVote(1, true)
	tr.RecordVote(2, false)
	tr.RecordVote(2, true) // a second answer (duplicated message) is ignored
	if got := tr.TallyVotes(); got != quorum.VotePending {
		t.Fatalf("1 granted, 2 rejected: %s, want pending", got)
	}
	tr.RecordVote(3, true)
	if got := tr.TallyVotes(); got != quorum.VoteWon {
		t.Fatalf("1 and 3 granted: %s, want won", got)
	}
	tr.ResetVotes()
	if got := tr.TallyVotes(); got != quorum.VotePending || len(tr.Votes) != 0 {
		t.Fatalf("after reset: %s with %v, want pending and no votes", got, tr.Votes)
	}
}

// TestTrackerQuorumActive shows CheckQuorum's test: a majority of voters
// heard from recently.
func TestTrackerQuorumActive(t *testing.T) {
	tr := New(4, 0)
	tr.SetConfig(conf(nodes(1, 2, 3), nil, nodes(4)), nil, 1)
	for _, id := range tr.IDs() {
		tr.Progress[id].RecentActive = id == 1 || id == 4
	}
	if tr.QuorumActive() {
		t.Fatal("voter 1 and learner 4 active: a quorum of voters is not")
	}
	tr.Progress[3].RecentActive = true
	if !tr.QuorumActive() {
		t.Fatal("voters 1 and 3 active: a quorum is")
	}
}

// TestTrackerIsSingleton: one voter, not joint.
func TestTrackerIsSingleton(t *testing.T) {
	for _, tc := range []struct {
		c    Config
		want bool
	}{
		{conf(nodes(1), nil, nil), true},
		{conf(nodes(1), nil, nodes(2)), true},
		{conf(nodes(1, 2), nil, nil), false},
		{conf(nodes(1), nodes(1, 2), nil), false},
	} {
		tr := New(1, 0)
		tr.SetConfig(tc.c, nil, 1)
		if got := tr.IsSingleton(); got != tc.want {
			t.Errorf("%+v: IsSingleton %v, want %v", tc.c, got, tc.want)
		}
	}
}
