package raft_test

import (
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// closedPromise is the ClosedPromiseTicks these tests run with: two ticks
// past the default lease of electionTicks/2.
const closedPromise = electionTicks/2 + 2

func withClosedPromise(cfg *raft.Config) { cfg.ClosedPromiseTicks = closedPromise }

// followersOf returns the members other than l.
func followersOf(c *cluster, l pb.NodeID) []pb.NodeID {
	var out []pb.NodeID
	for _, id := range c.ids {
		if id != l {
			out = append(out, id)
		}
	}
	return out
}

// electedAfterDeath kills the leader of a settled cluster (every link cut,
// as a dead process's), reports the closed connections to the followers
// if report is set, and returns how many ticks after the leader's last
// heartbeat a new leader was elected (fails after 4 election timeouts).
func electedAfterDeath(t *testing.T, n int, report bool) int {
	c := newCluster(t, n, withClosedPromise)
	l := c.waitLeader()
	c.one("before", n, 10*electionTicks)
	c.tick(1) // a heartbeat round every follower answers
	c.cut[l] = true
	c.say("%d dies", l)
	if report {
		for _, id := range followersOf(c, l) {
			c.cores[id].ReportClosed(l)
		}
	}
	for ticks := 1; ticks <= 4*electionTicks; ticks++ {
		c.tick(1)
		for _, id := range followersOf(c, l) {
			if c.cores[id].Role() == raft.Leader {
				return ticks
			}
		}
	}
	t.Fatalf("no new leader within %d ticks of %d's death", 4*electionTicks, l)
	return 0
}

// TestClosedLeaderEarlyElection shows that followers told that their
// connection to the leader closed elect a new leader soon after their cut
// refusal ends (ClosedPromiseTicks after the last heartbeat, plus at most
// the campaign's jitter and a retry), where followers with no such signal
// wait out at least an election timeout.
func TestClosedLeaderEarlyElection(t *testing.T) {
	for _, n := range []int{3, 5} {
		early := electedAfterDeath(t, n, true)
		// The refusal ends closedPromise ticks after the heartbeat; the
		// campaign starts within the jitter (a tick at one heartbeat tick)
		// after, and a lost first try is retried as soon.
		if early > closedPromise+4 {
			t.Errorf("%d members: elected %d ticks after the leader's death with the signal, want at most %d",
				n, early, closedPromise+4)
		}
		if early < closedPromise {
			t.Errorf("%d members: elected %d ticks after the leader's death, before the cut refusal (%d) ended",
				n, early, closedPromise)
		}
		late := electedAfterDeath(t, n, false)
		if late < electionTicks {
			t.Errorf("%d members: elected %d ticks after the leader's death without the signal, want at least %d",
				n, late, electionTicks)
		}
	}
}

// TestClosedSignalDoesNotDeposeLiveLeader shows that a follower wrongly
// told its connection to a live leader closed does not depose it: if it
// hears the leader again (the link was reset and reconnected) it does not
// campaign at all, and if it does not (the link stays down), the voters
// that still hear the leader refuse its PreVotes, so the leader keeps its
// term.
func TestClosedSignalDoesNotDeposeLiveLeader(t *testing.T) {
	t.Run("reconnected", func(t *testing.T) {
		c := newCluster(t, 3, withClosedPromise)
		l := c.waitLeader()
		c.one("before", 3, 10*electionTicks)
		term := c.cores[l].Term()
		a := followersOf(c, l)[0]
		c.cores[a].ReportClosed(l)
		for range 3 * electionTicks {
			c.tick(1)
			if role := c.cores[a].Role(); role != raft.Follower {
				t.Fatalf("%d became %s though it heard leader %d after the signal", a, role, l)
			}
		}
		if c.leader() != l || c.cores[l].Term() != term {
			t.Fatalf("leader %d term %d, want %d to keep leading term %d", c.leader(), c.cores[l].Term(), l, term)
		}
	})
	t.Run("link down", func(t *testing.T) {
		for _, n := range []int{3, 5} {
			c := newCluster(t, n, withClosedPromise)
			l := c.waitLeader()
			c.one("before", n, 10*electionTicks)
			term := c.cores[l].Term()
			a := followersOf(c, l)[0]
			c.cutLink[[2]pb.NodeID{l, a}], c.cutLink[[2]pb.NodeID{a, l}] = true, true
			c.cores[a].ReportClosed(l)
			c.resetCounters()
			for range 3 * electionTicks {
				c.tick(1)
				if c.leader() != l || c.cores[l].Term() != term {
					t.Fatalf("%d members: leader %d term %d, want %d to keep leading term %d",
						n, c.leader(), c.cores[l].Term(), l, term)
				}
			}
			if c.cores[a].Term() != term {
				t.Fatalf("%d members: %d moved to term %d: a PreVote of its was granted by a quorum", n, a, c.cores[a].Term())
			}
			if c.sent[pb.MsgPreVote] == 0 {
				t.Fatalf("%d members: %d never campaigned: the test shows nothing", n, a)
			}
		}
	})
}

// TestClosedSignalKeepsLeaseReadsSafe shows that a false signal cannot make
// a lease read stale: the leader lives but both its followers lose it at
// once (a firewall resetting its connections) and are told the connection
// closed. They elect a leader of their own and commit a write early, yet
// only after the old leader's lease has run out, so every lease read it
// answers in the meantime reaches every write committed before it.
func TestClosedSignalKeepsLeaseReadsSafe(t *testing.T) { closedSignalKeepsLeaseReadsSafe(t) }

func closedSignalKeepsLeaseReadsSafe(t testing.TB) {
	c := newCluster(t, 3, withClosedPromise)
	l := c.waitLeader()
	c.one("before", 3, 10*electionTicks)
	c.tick(1)
	ab := followersOf(c, l)
	c.say("%d's links reset and stay down; %d and %d are told they closed", l, ab[0], ab[1])
	for _, id := range ab {
		c.cutLink[[2]pb.NodeID{l, id}], c.cutLink[[2]pb.NodeID{id, l}] = true, true
		c.cores[id].ReportClosed(l)
	}
	var lead pb.NodeID
	var idx pb.Index
	leaseReads := 0
	for tick := 0; tick < 2*electionTicks; tick++ {
		c.tick(1)
		if lead == 0 {
			if n := c.leaderOf(ab...); n != 0 {
				lead = n
				idx = c.propose(lead, "write")
				c.drive()
				if got := c.cores[lead].Committed(); got < idx {
					t.Fatalf("%d did not commit its write at %d (commit %d)", lead, idx, got)
				}
			}
		}
		if c.cores[l].Role() != raft.Leader {
			break
		}
		if c.cores[l].LeaseValid() {
			leaseReads++
		}
		ctx := []byte{byte(tick)}
		if err := c.cores[l].LeaseRead(ctx); err != nil {
			t.Fatal(err)
		}
		c.drive()
		for _, rs := range c.reads[l] {
			if string(rs.Context) == string(ctx) && idx != 0 && rs.Index < idx {
				t.Fatalf("stale lease read: %d answered at %d, but %d committed a write at %d before it was asked",
					l, rs.Index, lead, idx)
			}
		}
	}
	if lead == 0 {
		t.Fatalf("no leader elected among %v", ab)
	}
	if leaseReads == 0 {
		t.Fatalf("%d held no lease after its links went down: the test shows nothing", l)
	}
}
