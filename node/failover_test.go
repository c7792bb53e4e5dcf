package node_test

import (
	"testing"
	"time"

	"github.com/raftkv/raftkv/node"
	pb "github.com/raftkv/raftkv/raftpb"
)

// failoverTimers are the timers of the failover tests: long enough that a
// loaded machine's scheduling does not decide them, short enough to run
// quickly. The closed-connection promise is then 29 ticks of 5 ms
// (node/timing.go).
func failoverTimers(cfg *node.Config) {
	cfg.TickInterval, cfg.ElectionTimeout = 50*time.Millisecond, 500*time.Millisecond
}

// waitNewLeader returns a leader other than old, waiting up to 10s.
func waitNewLeader(t *testing.T, c *tcluster, old pb.NodeID) pb.NodeID {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for id, m := range c.members {
			if id != old && m.n != nil && m.n.Status().Role.String() == "leader" {
				return id
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("no new leader within 10s")
	return 0
}

// TestFailoverAfterLeaderStops shows the early election after a leader's
// process ends: its connections close (the in-memory network reports it
// as the kernel would), and a follower elects itself well before the
// shortest election timeout (500 ms) would have let it campaign. A kill
// whose signal a late tick made the followers ignore (a loaded machine)
// takes an election timeout, so the best of three kills is judged.
func TestFailoverAfterLeaderStops(t *testing.T) {
	c := newTClusterWith(t, 3, 0, func(c *tcluster) { c.tweak = failoverTimers })
	best := time.Hour
	for kill := range 3 {
		c.propose(uint64(kill + 1))
		old := c.leader()
		start := time.Now()
		c.stop(old)
		lead := waitNewLeader(t, c, old)
		took := time.Since(start)
		t.Logf("kill %d: %d stopped, %d leads after %v", kill+1, old, lead, took.Round(time.Millisecond))
		best = min(best, took)
		c.start(old, false)
	}
	if best >= 500*time.Millisecond {
		t.Fatalf("fastest failover of three took %v, no faster than an election timeout", best)
	}
}

// TestResetLinkKeepsLeader shows that a reset connection between a live
// leader and one follower (reported closed at both ends, as a reset link
// is, while messages keep flowing) costs no election: the leader keeps its
// term through several election timeouts of repeated resets.
func TestResetLinkKeepsLeader(t *testing.T) {
	c := newTClusterWith(t, 3, 0, func(c *tcluster) { c.tweak = failoverTimers })
	c.propose(1)
	lead := c.leader()
	term := c.members[lead].n.Status().Term
	f := c.followersOf(lead)[0]
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		c.net.Reset(lead, f)
		time.Sleep(20 * time.Millisecond)
	}
	if st := c.members[lead].n.Status(); st.Role.String() != "leader" || st.Term != term {
		t.Fatalf("leader %d is %s in term %d after link resets, want leader of term %d", lead, st.Role, st.Term, term)
	}
}

// TestResetLinkDownKeepsLeader shows that a follower that loses a live
// leader for good and is told its connection closed (a firewall answering
// with RST) does not depose it: the other follower still hears the leader
// and refuses its PreVotes.
func TestResetLinkDownKeepsLeader(t *testing.T) {
	c := newTClusterWith(t, 3, 0, func(c *tcluster) { c.tweak = failoverTimers })
	c.propose(1)
	lead := c.leader()
	term := c.members[lead].n.Status().Term
	f := c.followersOf(lead)[0]
	c.net.Cut(lead, f, true)
	c.net.Reset(lead, f)
	time.Sleep(2 * time.Second)
	if st := c.members[lead].n.Status(); st.Role.String() != "leader" || st.Term != term {
		t.Fatalf("leader %d is %s in term %d, want leader of term %d", lead, st.Role, st.Term, term)
	}
	if st := c.members[f].n.Status(); st.Term != term {
		t.Fatalf("follower %d moved to term %d: a PreVote of its won", f, st.Term)
	}
	c.net.Heal()
}
