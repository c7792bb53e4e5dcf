package raft_test

import (
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Rules of Figure 2 that the scenario tests exercise only in passing, each
// shown on its own. docs/guide.md links here from its Figure 2 table.

// heldFrom returns the held messages of type typ sent by from.
func heldFrom(c *cluster, from pb.NodeID, typ pb.MessageType) []pb.Message {
	var out []pb.Message
	for _, m := range c.held {
		if m.From == from && m.Type == typ {
			out = append(out, m)
		}
	}
	return out
}

// TestAppendEntriesStaleTermRejected shows AppendEntries receiver rule 1: an
// AppendEntries of an older term is refused, and the answer carries the
// receiver's term so that the stale leader learns it has been replaced.
func TestAppendEntriesStaleTermRejected(t *testing.T) {
	c := leaderS1(t, 3, 3)
	c.hold = true
	last := c.cores[2].Status().LastIndex
	stale := pb.Message{Type: pb.MsgAppendEntries, From: 3, To: 2, Term: 1, Index: last, LogTerm: 2,
		Entries: []pb.Entry{{Index: last + 1, Term: 1, Data: []byte("stale")}}, Commit: last + 1}
	if err := c.cores[2].Step(stale); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	resp := heldFrom(c, 2, pb.MsgAppendEntriesResp)
	if len(resp) != 1 || !resp[0].Reject || resp[0].Term != 2 || resp[0].To != 3 {
		t.Fatalf("answer to a term-1 AppendEntries: %v, want one rejection at term 2", resp)
	}
	if st := c.cores[2].Status(); st.LastIndex != last || st.Term != 2 || st.Lead != 1 {
		t.Fatalf("S2 changed: last %d term %d lead %d", st.LastIndex, st.Term, st.Lead)
	}
}

// TestRequestVoteStaleTermRefused shows RequestVote receiver rule 1: a vote
// request of an older term is not granted, and changes neither the
// receiver's term nor its vote.
func TestRequestVoteStaleTermRefused(t *testing.T) {
	c := leaderS1(t, 3, 3)
	c.hold = true
	before := c.cores[2].Status()
	stale := pb.Message{Type: pb.MsgRequestVote, From: 3, To: 2, Term: 1, Index: 100, LogTerm: 1}
	if err := c.cores[2].Step(stale); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	for _, m := range heldFrom(c, 2, pb.MsgRequestVoteResp) {
		if !m.Reject {
			t.Fatalf("S2 granted a term-1 vote: %v", m)
		}
	}
	if after := c.cores[2].Status(); after.Term != before.Term || after.Vote != before.Vote {
		t.Fatalf("S2 went from term %d vote %d to term %d vote %d", before.Term, before.Vote, after.Term, after.Vote)
	}
}

// TestCandidateFollowsLeaderOfItsTerm shows the candidate rule "if
// AppendEntries is received from a new leader, convert to follower": S1
// and S3 campaign in the same term, S1 wins with S2's vote, and S3 follows
// S1 as soon as S1's first AppendEntries reaches it, without a new term.
func TestCandidateFollowsLeaderOfItsTerm(t *testing.T) {
	c := newCluster(t, 3, figure8Config)
	c.hold = true
	c.campaign(1)
	c.campaign(3)
	if r := c.cores[3]; r.Role() != raft.Candidate || r.Term() != 2 {
		t.Fatalf("S3 is %s at term %d, want a candidate at term 2", r.Role(), r.Term())
	}
	c.deliver(msgIs(pb.MsgRequestVote, 1, 2))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 2, 1))
	wantLeader(t, c, 1, 2)
	c.discard(func(m pb.Message) bool { return m.Type != pb.MsgAppendEntries })
	c.deliver(msgIs(pb.MsgAppendEntries, 1, 3))
	if r := c.cores[3]; r.Role() != raft.Follower || r.Term() != 2 || r.Lead() != 1 {
		t.Fatalf("S3 is %s at term %d following %d, want a follower of S1 at term 2", r.Role(), r.Term(), r.Lead())
	}
}
