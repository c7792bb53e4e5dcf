package sim

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/raft"
	"github.com/raftkv/raftkv/raft/confchange"
	pb "github.com/raftkv/raftkv/raftpb"
)

// Membership scenarios (joint consensus, §6 and dissertation
// chapter 4), scripted on a quiet network with every checker running.

// TestRemovedServerDoesNotDisrupt shows that a server removed from the
// configuration while cut off, which campaigns because it never received
// its removal, changes nobody's term for 50 election timeouts (PreVote and
// the vote lease, §6), and that once back it is told it was removed
// (raft/removed.go): it reports role removed and stops campaigning.
func TestRemovedServerDoesNotDisrupt(t *testing.T) {
	c := newScripted(t, 4, 4)
	lead := c.waitLeader()
	victim := pb.NodeID(1)
	if victim == lead.id {
		victim = 2
	}
	c.run(5)
	// Cut the victim off as the change starts, so it never hears that it
	// was removed and its election timer runs out again and again.
	c.proposeVoters(without(lead.core.ConfState().Voters, victim)...)
	c.isolate(victim)
	rest := without([]pb.NodeID{1, 2, 3, 4}, victim)
	c.waitConf(rest...)
	for o := range c.reps {
		c.net.cut[victim][o+1], c.net.cut[o+1][victim] = false, false
	}
	terms := map[pb.NodeID]pb.Term{}
	for _, id := range rest {
		terms[id] = c.replica(id).core.Term()
	}
	campaigns, lastCampaign := 0, 0
	for i := 0; i < 50*ElectionTicks; i++ {
		c.run(1)
		if c.replica(victim).core.Role() == raft.PreCandidate {
			campaigns++
			lastCampaign = i
		}
	}
	if campaigns == 0 {
		t.Fatalf("removed server %d never campaigned", victim)
	}
	if role := c.replica(victim).core.Role(); role != raft.Removed || lastCampaign > 10*ElectionTicks {
		t.Fatalf("removed server %d is %s, last campaigned at tick %d of %d", victim, role, lastCampaign, 50*ElectionTicks)
	}
	for _, id := range rest {
		if got := c.replica(id).core.Term(); got != terms[id] {
			t.Fatalf("replica %d's term moved from %d to %d while removed %d campaigned", id, terms[id], got, victim)
		}
	}
	if c.leader() != lead {
		t.Fatalf("leadership moved from %d", lead.id)
	}
	c.finish()
}

// TestReplaceMajorityUnderLoad shows {1,2,3} -> {3,4,5} while a client
// sends a command every tick: 4 and 5 join as learners, one joint change
// replaces two voters at once, and every command is committed exactly once
// and applied in one order everywhere.
func TestReplaceMajorityUnderLoad(t *testing.T) {
	c := newScripted(t, 5, 3)
	c.waitLeader()
	c.startLoad()
	c.run(20)
	c.addLearners(4, 5)
	c.run(20)
	c.proposeVoters(3, 4, 5)
	c.waitConf(3, 4, 5)
	c.run(50)
	c.finish()
	if l := c.leader(); l == nil || l.id < 3 {
		t.Fatalf("leader %v is not in {3,4,5}", l)
	}
}

// TestRemoveLeader shows that a leader removing itself keeps leading until
// C_new commits, steps down then (§6), and a member of C_new leads next.
func TestRemoveLeader(t *testing.T) {
	c := newScripted(t, 3, 3)
	old := c.waitLeader()
	c.startLoad()
	c.run(10)
	_, idx := c.proposeVoters(without([]pb.NodeID{1, 2, 3}, old.id)...)
	for i := 0; i < 3*LivenessTicks && old.core.Committed() < idx+1; i++ {
		if old.core.Committed() <= idx && old.core.Role() != raft.Leader {
			t.Fatalf("t%d: leader %d stepped down before C_new committed (commit %d, joint at %d)",
				c.now, old.id, old.core.Committed(), idx)
		}
		c.run(1)
	}
	c.runUntil(LivenessTicks, "the removed leader steps down", func() bool { return old.core.Role() != raft.Leader })
	next := c.waitLeader()
	if next == old {
		t.Fatalf("removed leader %d leads again", old.id)
	}
	c.waitConf(without([]pb.NodeID{1, 2, 3}, old.id)...)
	c.finish()
}

// TestLeaderCrashWhileJoint shows that when the leader crashes with
// C_old,new appended on a majority but C_new not yet, the next leader
// completes the change itself.
func TestLeaderCrashWhileJoint(t *testing.T) {
	c := newScripted(t, 5, 3)
	c.waitLeader()
	c.startLoad()
	c.addLearners(4, 5)
	c.run(20)
	lead, _ := c.proposeVoters(1, 4, 5)
	c.runUntil(10, "a majority of both halves holding C_old,new", func() bool {
		n := 0
		for _, r := range c.reps {
			if r != lead && r.core.ConfState().Joint() {
				n++
			}
		}
		return n >= 3
	})
	if cs := lead.core.ConfState(); !cs.Joint() {
		t.Fatalf("leader already left the joint configuration: %s", cs)
	}
	lead.downUntil = c.now + 5*ElectionTicks
	c.crash(lead, "test")
	next := c.waitLeader()
	if next == lead {
		t.Fatal("crashed leader leads")
	}
	c.waitConf(1, 4, 5)
	c.finish()
}

// TestPartitionDuringJoint shows that while C_old,new is in force and the
// cluster splits between the old and new majorities, neither side commits
// (each lacks a majority of the other half), and after healing the change
// completes with every command committed exactly once.
func TestPartitionDuringJoint(t *testing.T) {
	c := newScripted(t, 5, 3)
	c.waitLeader()
	c.startLoad()
	c.addLearners(4, 5)
	c.run(20)
	// Split at once: C_old,new is appended on the leader but committed
	// nowhere, and it takes effect on append.
	lead, _ := c.proposeVoters(3, 4, 5)
	if !lead.core.ConfState().Joint() {
		t.Fatalf("leader %d not in C_old,new: %s", lead.id, lead.core.ConfState())
	}
	c.split([]pb.NodeID{1, 2}, []pb.NodeID{3, 4, 5})
	frozen := c.maxApplied()
	c.run(20 * ElectionTicks)
	if got := c.maxApplied(); got > frozen {
		t.Fatalf("entries up to %d applied (%d before) while the joint majorities were split", got, frozen)
	}
	c.net.healAll()
	c.waitConf(3, 4, 5)
	c.finish()
}

// TestLaggingLearnerCannotBePromoted shows that promoting a learner more
// than MaxLearnerLag entries behind fails with raft.ErrLearnerLagging, and
// succeeds once it has caught up.
func TestLaggingLearnerCannotBePromoted(t *testing.T) {
	c := newScripted(t, 4, 3)
	c.waitLeader()
	c.addLearners(4)
	c.isolate(4)
	c.startLoad()
	c.run(3 * int(c.p.maxLearnerLag))
	lead := c.leader()
	_, _, err := lead.core.ProposeConfChange(confchange.SetVoters(lead.core.ConfState(), []pb.NodeID{1, 2, 3, 4}))
	if !errors.Is(err, raft.ErrLearnerLagging) {
		t.Fatalf("promoting a lagging learner: %v, want ErrLearnerLagging", err)
	}
	c.net.healAll()
	c.runUntil(LivenessTicks, "the learner catching up", func() bool {
		l := c.leader()
		return l != nil && l.core.Status().Progress[4].Match+c.p.maxLearnerLag >= l.core.Status().LastIndex
	})
	c.proposeVoters(1, 2, 3, 4)
	c.waitConf(1, 2, 3, 4)
	c.finish()
}

// TestAddToClusterMissingAMember shows that with one of three voters down,
// a fourth server can still join as a learner, be promoted, and the
// cluster of four (three running) keeps committing.
func TestAddToClusterMissingAMember(t *testing.T) {
	c := newScripted(t, 4, 3)
	lead := c.waitLeader()
	down := pb.NodeID(1)
	if down == lead.id {
		down = 2
	}
	c.replica(down).downUntil = ^uint64(0)
	c.crash(c.replica(down), "test")
	c.startLoad()
	c.run(10)
	c.addLearners(4)
	c.run(20)
	c.proposeVoters(1, 2, 3, 4)
	c.waitConf(1, 2, 3, 4)
	c.run(30)
	if c.load.next == 0 || len(c.load.done) == 0 {
		t.Fatal("nothing committed")
	}
	c.finish()
}

func without(ids []pb.NodeID, x pb.NodeID) []pb.NodeID {
	var out []pb.NodeID
	for _, id := range ids {
		if id != x {
			out = append(out, id)
		}
	}
	return out
}

// TestReadIndexOnLeaderOutsideItsConfig pins the bug simulation seed 8271
// found: a leader that appended C_new = {x} without itself treated the
// one-voter configuration as its own and answered ReadIndex at once; cut
// off, it answered reads with a commit index x had long passed.
func TestReadIndexOnLeaderOutsideItsConfig(t *testing.T) {
	c := newScripted(t, 3, 3)
	old := c.waitLeader()
	x := pb.NodeID(1)
	if x == old.id {
		x = 2
	}
	c.proposeVoters(x)
	c.runUntil(LivenessTicks, "C_new appended at x", func() bool {
		cs := c.confOf(x)
		return !cs.Joint() && len(cs.Voters) == 1
	})
	c.isolate(old.id)
	frozen := c.maxApplied()
	c.runUntil(LivenessTicks, "x leading and committing", func() bool {
		return c.replica(x).core.Role() == raft.Leader && c.maxApplied() > frozen
	})
	if old.core.Role() != raft.Leader {
		t.Skipf("leader %d stepped down before the read; the scenario did not arise", old.id)
	}
	c.nextRead++
	c.check.onReadRequest(c.nextRead, false, false)
	if err := old.core.ReadIndex(command(c.nextRead, 0)); err != nil {
		t.Fatal(err)
	}
	c.drain(old)
	c.run(5) // the checker fails the test if the read is answered stale
	c.net.healAll()
	c.finish()
}

// TestLostAppendIsResent pins the bug simulation seed 17 found: a follower
// took an AppendEntries, failed its fsync and restarted without the entry;
// the leader, replicating to it with nothing newer to send, never resent
// it, and with the third voter down nothing committed again (§5.3: the
// leader retries AppendEntries indefinitely).
func TestLostAppendIsResent(t *testing.T) {
	c := newScripted(t, 3, 3)
	lead := c.waitLeader()
	c.run(5)
	var down, flaky *replica
	for _, r := range c.reps {
		if r != lead && down == nil {
			down = r
		} else if r != lead {
			flaky = r
		}
	}
	down.downUntil = ^uint64(0)
	c.crash(down, "test")
	flaky.store.FailNextSync()
	idx, term, err := c.propose(lead, [][]byte{command(1, 0)}, []uint64{1})
	if err != nil {
		t.Fatal(err)
	}
	c.runUntil(LivenessTicks, "the entry committed", func() bool {
		ce := c.check.committed.at(idx)
		return ce.applied && ce.term == term
	})
	if c.stats.Crashes != 2 {
		t.Fatalf("%d crashes, want the follower's fsync failure too", c.stats.Crashes)
	}
}

// TestRemovedServerStillNeededWhileCNewPending pins the bug simulation
// seed 39 found: a leader appended C_new = {x} (leaving itself out) and
// crashed before x got it. Restarted, it saw itself outside its latest
// configuration and neither campaigned nor voted, while x, still in
// C_old,new, needed its vote and could not get it (its log is shorter):
// no leader ever again. Such a server must still campaign until C_new
// commits (dissertation §4.2.2).
func TestRemovedServerStillNeededWhileCNewPending(t *testing.T) {
	c := newScripted(t, 3, 3)
	old := c.waitLeader()
	var x, other pb.NodeID
	for _, r := range c.reps {
		if r != old && x == 0 {
			x = r.id
		} else if r != old {
			other = r.id
		}
	}
	c.proposeVoters(old.id, x) // C_old = {old, x} first
	c.waitConf(old.id, x)
	c.isolate(other)
	c.proposeVoters(x)
	c.runUntil(LivenessTicks, "C_new appended by the leader", func() bool {
		cs := old.core.ConfState()
		return !cs.Joint() && len(cs.Voters) == 1
	})
	c.net.cut[old.id][x] = true // C_new never reaches x
	old.downUntil = c.now + 1
	c.crash(old, "test")
	c.run(2)
	c.net.healAll()
	c.waitConf(x)
	c.finish()
}
