package raft_test

import (
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// changeConf has the leader propose target and drives the cluster until
// the leader's configuration is target, committed and not joint.
func changeConf(t *testing.T, c *cluster, lead pb.NodeID, target confchange.Target) pb.Index {
	t.Helper()
	if _, _, err := c.cores[lead].ProposeConfChange(target); err != nil {
		t.Fatalf("propose %+v: %v", target, err)
	}
	for i := 0; i < 10*electionTicks; i++ {
		cs := c.cores[lead].ConfState()
		if !cs.Joint() && slices.Equal(cs.Voters, target.Voters) && slices.Equal(cs.Learners, target.Learners) &&
			c.cores[lead].Committed() == c.cores[lead].Status().LastIndex {
			return c.cores[lead].Status().LastIndex
		}
		c.tick(1)
	}
	t.Fatalf("configuration %+v did not commit on %d: %s", target, lead, c.cores[lead].ConfState())
	return 0
}

// voteRequestsFrom counts the vote requests a member sends, and the
// removal notices sent to it.
func voteRequestsFrom(c *cluster, id pb.NodeID) (votes, notices *int) {
	votes, notices = new(int), new(int)
	c.onSend = func(m pb.Message) {
		switch {
		case m.From == id && (m.Type == pb.MsgPreVote || m.Type == pb.MsgRequestVote):
			*votes++
		case m.To == id && m.Type == pb.MsgRemoved:
			*notices++
		}
	}
	return votes, notices
}

// TestRemovedVoterCutOffLearnsItWasRemoved: S3 is removed while cut off,
// so it never receives the entry that removes it. Back, it campaigns with
// PreVote; S1 and S2 answer that a committed configuration leaves it out,
// S3 reports role Removed and stops campaigning, and S1 keeps leading in
// the same term.
func TestRemovedVoterCutOffLearnsItWasRemoved(t *testing.T) {
	c := leaderS1(t, 3, 3)
	c.cut[3] = true
	changeConf(t, c, 1, confchange.Target{Voters: []pb.NodeID{1, 2}})
	c.tick(4 * electionTicks)
	if role := c.cores[3].Role(); role == raft.Removed {
		t.Fatalf("S3 is removed before it heard from anyone")
	}
	votes, notices := voteRequestsFrom(c, 3)
	delete(c.cut, 3)
	c.tick(4 * electionTicks)
	if role := c.cores[3].Role(); role != raft.Removed || *notices == 0 {
		t.Fatalf("S3 is %s after %d vote requests and %d notices, want removed", role, *votes, *notices)
	}
	*votes = 0
	c.tick(10 * electionTicks)
	if *votes != 0 || c.cores[3].Role() != raft.Removed {
		t.Fatalf("S3 sent %d vote requests after it was told, and is %s", *votes, c.cores[3].Role())
	}
	wantLeader(t, c, 1, 2)
}

// TestRemovedVoterHoldingItsRemovalIsTold: S3 appends C_new, which leaves
// it out, but the leader stops replicating to it once C_new commits, so S3
// never learns that it committed and, by its own committed configuration,
// may still campaign (§4.2.2). Its vote request shows it holds the leader's
// log up to C_new, so it is told too.
func TestRemovedVoterHoldingItsRemovalIsTold(t *testing.T) {
	c := leaderS1(t, 3, 3)
	ci := changeConf(t, c, 1, confchange.Target{Voters: []pb.NodeID{1, 2}})
	if c.cores[3].Status().LastIndex < ci {
		t.Fatalf("S3 holds up to %d, want C_new at %d", c.cores[3].Status().LastIndex, ci)
	}
	votes, notices := voteRequestsFrom(c, 3)
	c.tick(4 * electionTicks)
	if role := c.cores[3].Role(); role != raft.Removed || *notices == 0 || *votes == 0 {
		t.Fatalf("S3 is %s after %d vote requests and %d notices, want told it is removed", role, *votes, *notices)
	}
	*votes = 0
	c.tick(10 * electionTicks)
	if *votes != 0 {
		t.Fatalf("S3 sent %d vote requests after it was told", *votes)
	}
	wantLeader(t, c, 1, 2)
}

// TestReaddedMemberIsNeverToldRemoved pins the safety side of the notice:
// a member added again after its removal must not be stopped by a
// receiver that has not seen the re-adding entries. Of {1,2,3,4}, S3 is
// removed and told. S4 is cut off; S1 adds S3 back as a learner (S3's
// notice ends when it appends that entry) and promotes it. Then S1 is cut
// off and S4 is back: S4's committed configuration, {1,2,4}, still leaves
// S3 out, but S3's vote requests show a log S4 does not hold, so S4 sends
// no notice, and S2 or S3 is elected.
func TestReaddedMemberIsNeverToldRemoved(t *testing.T) {
	c := newCluster(t, 4, nil)
	c.campaign(1)
	wantLeader(t, c, 1, 2)
	c.cut[3] = true
	changeConf(t, c, 1, confchange.Target{Voters: []pb.NodeID{1, 2, 4}})
	delete(c.cut, 3)
	c.tick(4 * electionTicks)
	if role := c.cores[3].Role(); role != raft.Removed {
		t.Fatalf("S3 is %s, want removed", role)
	}

	c.cut[4] = true
	changeConf(t, c, 1, confchange.Target{Voters: []pb.NodeID{1, 2, 4}, Learners: []pb.NodeID{3}})
	if role := c.cores[3].Role(); role != raft.Learner {
		t.Fatalf("S3 is %s after it was added back as a learner, want learner", role)
	}
	changeConf(t, c, 1, confchange.Target{Voters: []pb.NodeID{1, 2, 3, 4}})
	if role := c.cores[3].Role(); role != raft.Follower {
		t.Fatalf("S3 is %s after its promotion, want follower", role)
	}

	votes, notices := voteRequestsFrom(c, 3)
	c.cut[1] = true
	delete(c.cut, 4)
	var lead pb.NodeID
	for i := 0; i < 20*electionTicks && lead == pb.None; i++ {
		c.tick(1)
		if c.cores[3].Role() == raft.Removed {
			t.Fatal("S3, a voter, reports role removed")
		}
		lead = c.leaderOf(2, 3, 4)
	}
	if *votes == 0 || *notices != 0 {
		t.Fatalf("S3 sent %d vote requests and was sent %d removal notices; want some and none", *votes, *notices)
	}
	if lead != 2 && lead != 3 {
		t.Fatalf("leader of {2,3,4} is %d, want 2 or 3", lead)
	}
}

// TestForgedRemovalNoticeForOwnConfigurationIsIgnored: a notice naming an
// index at or before a configuration that includes the receiver is stale
// (the receiver was added again since), and changes nothing.
func TestForgedRemovalNoticeForOwnConfigurationIsIgnored(t *testing.T) {
	c := leaderS1(t, 3, 3)
	before := c.cores[2].Status()
	if err := c.cores[2].Step(pb.Message{Type: pb.MsgRemoved, From: 3, To: 2, Term: 1, Index: 1, LogTerm: 1}); err != nil {
		t.Fatal(err)
	}
	if after := c.cores[2].Status(); after.Role != raft.Follower || after.Term != before.Term {
		t.Fatalf("S2 after a stale notice: %+v", after)
	}
	c.tick(electionTicks)
	wantLeader(t, c, 1, 2)
}
