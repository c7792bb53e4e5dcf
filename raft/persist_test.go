package raft_test

import (
	"math/rand/v2"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// checkNoCommittedLost fails unless every member has applied (again, after
// its restarts) every entry any member ever applied; the harness already
// checked that they are the same entries.
func (c *cluster) checkNoCommittedLost() {
	c.t.Helper()
	var last pb.Index
	for i := range c.committed {
		last = max(last, i)
	}
	for _, id := range c.ids {
		ents := *c.applied[id]
		if len(ents) == 0 || ents[len(ents)-1].Index < last {
			got := pb.Index(0)
			if len(ents) > 0 {
				got = ents[len(ents)-1].Index
			}
			c.t.Fatalf("member %d applied up to %d after restarts, but %d was committed", id, got, last)
		}
		if c.cores[id].Committed() < last {
			c.t.Fatalf("member %d commit index %d, but %d was committed", id, c.cores[id].Committed(), last)
		}
	}
}

// TestPersistCrashAllAtOnce shows that when every member crashes at once,
// also with proposals in flight and unsynced writes lost, the restarted
// cluster loses no committed entry.
func TestPersistCrashAllAtOnce(t *testing.T) {
	c := newCluster(t, 3, nil)
	for round := 0; round < 5; round++ {
		for i := 0; i < 5; i++ {
			c.one(cmdN("r", round*10+i), 3, 20*electionTicks)
		}
		if l := c.leader(); l != 0 {
			c.propose(l, cmdN("inflight", round)) // may or may not survive
		}
		for _, id := range c.ids {
			c.crash(id)
		}
		for _, id := range c.ids {
			if c.cores[id].Committed() == 0 {
				t.Fatalf("member %d restarted with nothing committed", id)
			}
		}
		c.one(cmdN("after", round), 3, 20*electionTicks)
		c.checkNoCommittedLost()
	}
}

// TestPersistCrashOneAtATime shows that members crashing and restarting one
// at a time, the leader every other time, lose no committed entry.
func TestPersistCrashOneAtATime(t *testing.T) {
	c := newCluster(t, 5, nil)
	c.waitLeader()
	for round := 0; round < 10; round++ {
		victim := c.ids[round%len(c.ids)]
		if round%2 == 0 {
			victim = c.waitLeader()
		}
		for i := 0; i < 3; i++ {
			c.one(cmdN("r", round*10+i), 5, 20*electionTicks)
		}
		c.crash(victim)
		c.one(cmdN("after", round), 5, 30*electionTicks)
		c.checkNoCommittedLost()
	}
}

// TestPersistRandomCrashPoints shows that members crashing at random points
// of the Ready loop (before sync, losing the Ready; after sync before
// replying; after replying before applying and advancing) lose no committed
// entry, never vote twice in a term and never go back a term (checked by
// the harness on every message and restart).
func TestPersistRandomCrashPoints(t *testing.T) {
	c := newCluster(t, 5, nil)
	rng := rand.New(rand.NewPCG(99, 1))
	crashes := map[crashPhase]int{}
	var at crashPhase // where this Ready crashes (0: nowhere)
	c.crashHook = func(id pb.NodeID, p crashPhase) bool {
		if p == crashBeforeSync { // the first point of each Ready
			at = 0
			if rng.IntN(30) == 0 {
				at = crashPhase(1 + rng.IntN(3))
			}
		}
		if p == at {
			crashes[p]++
			return true
		}
		return false
	}
	for i := 0; i < 100; i++ {
		c.one(cmdN("c", i), 3, 100*electionTicks)
	}
	c.crashHook = nil
	c.one("last", 5, 30*electionTicks)
	c.checkNoCommittedLost()
	t.Logf("crashes by phase: %v", crashes)
	for _, p := range []crashPhase{crashBeforeSync, crashAfterPersist, crashAfterSend} {
		if crashes[p] == 0 {
			t.Fatalf("no crash at phase %d: %v", p, crashes)
		}
	}
}
