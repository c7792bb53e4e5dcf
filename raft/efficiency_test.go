package raft_test

import (
	"bytes"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

func totalSent(c *cluster) int {
	n := 0
	for _, v := range c.sent {
		n += v
	}
	return n
}

// TestElectionMessageCount shows that electing a leader in a healthy
// 3-member cluster, and committing its no-op, takes at most 30 messages.
func TestElectionMessageCount(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.waitLeader()
	if n := totalSent(c); n > 30 {
		t.Fatalf("election took %d messages: %v", n, c.sent)
	}
	t.Logf("election took %d messages: %v", totalSent(c), c.sent)
}

// TestIdleHeartbeats shows that an idle 3-member cluster sends at most one
// heartbeat per follower per heartbeat interval, and nothing else but the
// answers.
func TestIdleHeartbeats(t *testing.T) {
	for _, hb := range []int{1, 3} {
		c := newCluster(t, 3, func(cfg *raft.Config) { cfg.HeartbeatTicks = hb })
		lead := c.waitLeader()
		c.one("x", 3, 10*electionTicks)
		c.tick(hb) // let the last commit index reach everyone
		c.resetCounters()
		const ticks = 300
		c.tick(ticks)
		intervals := ticks / hb
		for _, id := range c.ids {
			if id == lead {
				continue
			}
			if n := c.sentTo[id][pb.MsgHeartbeat]; n > intervals || n < intervals-1 {
				t.Fatalf("heartbeat every %d ticks: %d got %d heartbeats in %d intervals", hb, id, n, intervals)
			}
		}
		if n, hbs := totalSent(c), c.sent[pb.MsgHeartbeat]+c.sent[pb.MsgHeartbeatResp]; n != hbs {
			t.Fatalf("heartbeat every %d ticks: idle cluster sent %v", hb, c.sent)
		}
	}
}

// TestProposalBurstBatches shows that 1000 proposals made between two Readys
// reach each follower in O(1) AppendEntries (at most 3: the entries, the
// commit index, and slack), not one per proposal.
func TestProposalBurstBatches(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	c.tick(1)
	c.resetCounters()
	for i := 0; i < 1000; i++ {
		c.propose(lead, cmdN("burst", i))
	}
	c.drive()
	c.tick(1)
	for _, id := range c.ids {
		if n := len(c.commands(id)); n != 1001 {
			t.Fatalf("member %d applied %d commands", id, n)
		}
		if id == lead {
			continue
		}
		if n := c.sentTo[id][pb.MsgAppendEntries]; n > 3 {
			t.Fatalf("follower %d got %d AppendEntries for a burst of 1000 proposals", id, n)
		}
	}
}

// TestLargeEntriesSentOnce shows that 10 entries of 5000 bytes, proposed one
// per tick, cost each follower no more than one copy of each entry's data
// plus 10% in AppendEntries.
func TestLargeEntriesSentOnce(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	c.resetCounters()
	const n, size = 10, 5000
	for i := 0; i < n; i++ {
		if _, _, err := c.cores[lead].Propose(bytes.Repeat([]byte{byte(i)}, size)); err != nil {
			t.Fatal(err)
		}
		c.tick(1)
	}
	c.tick(3)
	for _, id := range c.ids {
		if got := len(*c.applied[id]); got != int(c.cores[lead].Committed()) {
			t.Fatalf("member %d applied %d entries, commit is %d", id, got, c.cores[lead].Committed())
		}
		if id == lead {
			continue
		}
		if b := c.entryBytes[id]; b > n*size*11/10 {
			t.Fatalf("follower %d received %d bytes of entry data for %d", id, b, n*size)
		}
	}
}

// TestFollowersLearnCommitWithoutATick shows that once an entry commits
// and nothing else is sent, the runtime's commit timer (drive stands in for
// it) has the leader send the followers the new commit index, not the
// next heartbeat: with no tick at all every follower applies the entry,
// and a server's watchers and reads waiting on its apply wait a round trip
// and the timer, not a heartbeat interval.
func TestFollowersLearnCommitWithoutATick(t *testing.T) {
	c, lead := idleAfterOneWrite(t)
	c.resetCounters()
	idx := c.propose(lead, "y")
	c.drive() // no tick: no heartbeat
	for _, id := range c.ids {
		if got := c.commands(id); len(got) == 0 || got[len(got)-1] != "y" {
			t.Fatalf("member %d applied %v without a tick, want y (index %d) last", id, got, idx)
		}
		if id == lead {
			continue
		}
		// One with the entry, one with the commit index.
		if n := c.sentTo[id][pb.MsgAppendEntries]; n != 2 {
			t.Fatalf("follower %d got %d AppendEntries for one proposal, want 2", id, n)
		}
	}
	commitSentWithoutHeartbeats(t, c, lead, "after SendCommit")
}

// idleAfterOneWrite starts 3 members with a heartbeat every 5 ticks, has
// "x" committed on all, and ticks to just after a heartbeat.
func idleAfterOneWrite(t *testing.T) (*cluster, pb.NodeID) {
	c := newCluster(t, 3, func(cfg *raft.Config) { cfg.HeartbeatTicks = 5 })
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	c.tick(5)
	c.drive()
	return c, lead
}

// commitSentWithoutHeartbeats fails unless the leader has sent every
// follower its commit index and no heartbeat went out.
func commitSentWithoutHeartbeats(t *testing.T, c *cluster, lead pb.NodeID, when string) {
	t.Helper()
	if n := c.sent[pb.MsgHeartbeat]; n != 0 {
		t.Fatalf("%d heartbeats sent %s, want none", n, when)
	}
	if c.cores[lead].CommitUnsent() {
		t.Fatalf("leader still reports a commit index unsent %s", when)
	}
}

// TestCommitIndexRidesOnTheNextAppendEntries shows that the leader does not
// send a new commit index in a message of its own when it commits: the
// next proposal's AppendEntries carries it, so a client that writes again
// on each answer costs each follower one AppendEntries per write, not two.
// Left alone, the commit index goes out on the next tick.
func TestCommitIndexRidesOnTheNextAppendEntries(t *testing.T) {
	c, lead := idleAfterOneWrite(t)
	c.lazyCommit = true
	c.resetCounters()
	followers := []pb.NodeID{}
	for _, id := range c.ids {
		if id != lead {
			followers = append(followers, id)
		}
	}
	last := func(id pb.NodeID) string {
		got := c.commands(id)
		if len(got) == 0 {
			return ""
		}
		return got[len(got)-1]
	}

	c.propose(lead, "y")
	c.drive()
	if last(lead) != "y" {
		t.Fatalf("leader applied %v, want y last", c.commands(lead))
	}
	for _, id := range followers {
		if last(id) != "x" {
			t.Fatalf("follower %d applied %v before any message carried y's commit, want x last", id, c.commands(id))
		}
	}
	if !c.cores[lead].CommitUnsent() {
		t.Fatal("leader does not report the commit index of y unsent")
	}
	for _, id := range followers {
		if c.cores[id].CommitUnsent() {
			t.Fatalf("follower %d reports a commit index unsent", id)
		}
	}

	c.propose(lead, "z")
	c.drive()
	for _, id := range followers {
		if last(id) != "y" {
			t.Fatalf("follower %d applied %v, want y last (z's AppendEntries carries y's commit)", id, c.commands(id))
		}
		if n := c.sentTo[id][pb.MsgAppendEntries]; n != 2 {
			t.Fatalf("follower %d got %d AppendEntries for two proposals, want 2", id, n)
		}
	}

	c.tick(1) // not a heartbeat tick: HeartbeatTicks is 5
	for _, id := range followers {
		if last(id) != "z" {
			t.Fatalf("follower %d applied %v after a tick, want z last", id, c.commands(id))
		}
		if n := c.sentTo[id][pb.MsgAppendEntries]; n != 3 {
			t.Fatalf("follower %d got %d AppendEntries, want 3 (the tick's carries the commit index)", id, n)
		}
	}
	commitSentWithoutHeartbeats(t, c, lead, "after the tick")
}
