package raft_test

import (
	"math"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TestRegressionLeaderCountsItselfForCheckQuorum pins a bug where the
// leader's own progress was never marked active, so with one follower of
// three cut off, CheckQuorum saw 1 of 3 active and the healthy leader
// stepped down every second election timeout.
func TestRegressionLeaderCountsItselfForCheckQuorum(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	term := c.cores[lead].Term()
	f := c.ids[0]
	if f == lead {
		f = c.ids[1]
	}
	c.cut[f] = true
	c.tick(10 * electionTicks)
	if c.leader() != lead || c.cores[lead].Term() != term {
		t.Fatalf("leader %d at term %d, want %d at %d", c.leader(), c.cores[c.leader()].Term(), lead, term)
	}
}

// TestRegressionLostAppendEntriesResent pins a bug where an AppendEntries
// lost while the follower was in the replicate state was never resent: the
// entries stayed uncommitted until some later proposal made the follower
// reject. Now a heartbeat answer from a follower that has not acknowledged
// everything draws an empty AppendEntries that uncovers the gap.
func TestRegressionLostAppendEntriesResent(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	for _, id := range c.ids {
		if id != lead {
			c.cut[id] = true
		}
	}
	idx := c.propose(lead, "lost-once")
	c.drive() // the AppendEntries leave and are lost
	clear(c.cut)
	c.tick(3) // no new proposal
	if got := c.cores[lead].Committed(); got < idx {
		t.Fatalf("commit %d, the entry at %d was never resent", got, idx)
	}
}

// TestRegressionTermOverflow pins a bug where a server pushed to the largest
// term by a forged message campaigned in term 0 (the term wrapped around),
// so its own peers refused its messages as invalid.
func TestRegressionTermOverflow(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	f := c.ids[0]
	if f == lead {
		f = c.ids[1]
	}
	err := c.cores[f].Step(pb.Message{Type: pb.MsgHeartbeat, From: 9, To: f, Term: math.MaxUint64})
	if err != nil {
		t.Fatal(err)
	}
	c.byzantine = true
	c.tick(10 * electionTicks) // the harness fails on any message a peer refuses
	if got := c.cores[f].Term(); got != math.MaxUint64 {
		t.Fatalf("term %d, want it to stay at the largest", got)
	}
}

// TestRegressionAppendRespPastLastIndex pins a panic: an AppendEntriesResp
// acknowledging an index past the leader's log moved the follower's Next
// past it, and the next send failed to read the term there.
func TestRegressionAppendRespPastLastIndex(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	f := c.ids[0]
	if f == lead {
		f = c.ids[1]
	}
	for _, reject := range []bool{false, true} {
		m := pb.Message{Type: pb.MsgAppendEntriesResp, From: f, To: lead, Term: c.cores[lead].Term(),
			Index: 1 << 40, Reject: reject, Hint: 1 << 40}
		if err := c.cores[lead].Step(m); err != nil {
			t.Fatal(err)
		}
		c.drive()
	}
	c.one("y", 3, 10*electionTicks)
	if pr := c.cores[lead].Status().Progress[f]; pr.Match != c.cores[lead].Status().LastIndex {
		t.Fatalf("follower progress %+v", pr)
	}
	if c.cores[lead].Role() != raft.Leader {
		t.Fatal("leader lost leadership")
	}
}

// TestLeaseReadDuringTransferNeedsQuorum pins the lease hole found while
// building the simulator: once a leader has sent TimeoutNow, the target may
// win an election at once (voters grant a transfer campaign inside their
// lease), so a lease read must fall back to a ReadIndex round.
func TestLeaseReadDuringTransferNeedsQuorum(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.tick(3)
	var target pb.NodeID
	for _, id := range c.ids {
		if id != lead {
			target = id
			break
		}
	}
	// Hold every message so the transfer is in flight, not completed.
	for _, id := range c.ids {
		if id != lead {
			c.cut[id] = true
		}
	}
	if err := c.cores[lead].TransferLeader(target); err != nil {
		t.Fatal(err)
	}
	if err := c.cores[lead].LeaseRead([]byte("r")); err != nil {
		t.Fatal(err)
	}
	rd := c.cores[lead].Ready()
	if len(rd.ReadStates) != 0 {
		t.Fatalf("lease read answered at once during a transfer: %+v", rd.ReadStates)
	}
}
