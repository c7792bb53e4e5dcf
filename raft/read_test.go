package raft_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// readyLeader returns a 3-member cluster whose leader has committed its
// no-op and a command, with messages held from then on.
func readyLeader(t *testing.T, tweak func(*raft.Config)) (*cluster, pb.NodeID) {
	c := newCluster(t, 3, tweak)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	c.tick(1)
	c.hold = true
	return c, lead
}

func readCount(c *cluster, id pb.NodeID, ctx string) int {
	n := 0
	for _, rs := range c.reads[id] {
		if string(rs.Context) == ctx {
			n++
		}
	}
	return n
}

// isReadHeartbeat: every heartbeat is a numbered round; with messages held
// and no tick, the only heartbeats are the rounds reads started.
func isReadHeartbeat(m pb.Message) bool { return m.Type == pb.MsgHeartbeat }

// TestReadIndexNeedsQuorum shows that a ReadIndex is released only once a
// heartbeat round it started is answered by a quorum (the leader and one of
// two followers), at the commit index of the time it was asked.
func TestReadIndexNeedsQuorum(t *testing.T) {
	c, lead := readyLeader(t, nil)
	commit := c.cores[lead].Committed()
	if err := c.cores[lead].ReadIndex([]byte("r")); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	f1, f2 := c.ids[0], c.ids[1]
	if f1 == lead {
		f1 = c.ids[2]
	} else if f2 == lead {
		f2 = c.ids[2]
	}
	if got := len(c.reads[lead]); got != 0 {
		t.Fatalf("released %d reads before any heartbeat answer", got)
	}
	// The round reaches both followers, but only f1's answer arrives.
	c.deliver(isReadHeartbeat)
	c.discard(msgIs(pb.MsgHeartbeatResp, f2, lead))
	if got := len(c.reads[lead]); got != 0 {
		t.Fatalf("released %d reads before a quorum answered", got)
	}
	c.deliver(msgIs(pb.MsgHeartbeatResp, f1, lead))
	if len(c.reads[lead]) != 1 || string(c.reads[lead][0].Context) != "r" || c.reads[lead][0].Index != commit {
		t.Fatalf("reads %+v, want one at %d", c.reads[lead], commit)
	}
}

// TestReadIndexBatched shows that many reads asked between two Readys share
// one heartbeat round (one heartbeat per follower) and are released
// together.
func TestReadIndexBatched(t *testing.T) {
	c, lead := readyLeader(t, nil)
	const n = 100
	for i := 0; i < n; i++ {
		if err := c.cores[lead].ReadIndex([]byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	c.readyAll()
	hb := 0
	for _, m := range c.held {
		if isReadHeartbeat(m) {
			hb++
		}
	}
	if hb != 2 {
		t.Fatalf("%d reads sent %d read heartbeats, want one per follower", n, hb)
	}
	c.deliver(isReadHeartbeat)
	c.deliver(msgIs(pb.MsgHeartbeatResp, 0, lead))
	if got := len(c.reads[lead]); got != n {
		t.Fatalf("released %d reads, want %d", got, n)
	}
	for i, rs := range c.reads[lead] {
		if string(rs.Context) != fmt.Sprint(i) || rs.Index != c.cores[lead].Committed() {
			t.Fatalf("read %d released as %+v", i, rs)
		}
	}
}

// TestReadIndexWaitsForNoop shows that a new leader releases no read, and
// starts no read round, before its no-op commits (until then it does not
// know the commit index, §8), and then releases it at or after the no-op.
func TestReadIndexWaitsForNoop(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.hold = true
	c.campaign(1)
	c.deliver(msgIs(pb.MsgPreVote, 1, 0))
	c.deliver(msgIs(pb.MsgPreVoteResp, 0, 1))
	c.deliver(msgIs(pb.MsgRequestVote, 1, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 1))
	wantLeader(t, c, 1, 2)
	noop := c.cores[1].Status().LastIndex
	if err := c.cores[1].ReadIndex([]byte("early")); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	// Heartbeats flow, AppendEntries do not: the no-op cannot commit.
	for i := 0; i < 3; i++ {
		c.discard(msgIs(pb.MsgAppendEntries, 1, 0))
		if c.deliver(isReadHeartbeat) > 0 {
			t.Fatal("a read round started before the no-op committed")
		}
		c.tickOne(1, 1)
		c.deliver(msgIs(pb.MsgHeartbeat, 1, 0))
		c.deliver(msgIs(pb.MsgHeartbeatResp, 0, 1))
	}
	if len(c.reads[1]) != 0 {
		t.Fatalf("released %+v before the no-op committed", c.reads[1])
	}
	// Heartbeat answers make the leader resend the no-op; let it through.
	c.tickOne(1, 1)
	c.deliver(msgIs(pb.MsgHeartbeat, 1, 0))
	c.deliver(msgIs(pb.MsgHeartbeatResp, 0, 1))
	c.deliver(msgIs(pb.MsgAppendEntries, 1, 0))
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 0, 1))
	if got := c.cores[1].Committed(); got < noop {
		t.Fatalf("no-op at %d not committed (commit %d)", noop, got)
	}
	if len(c.reads[1]) != 0 {
		t.Fatal("released without a heartbeat round")
	}
	c.deliver(isReadHeartbeat)
	c.deliver(msgIs(pb.MsgHeartbeatResp, 0, 1))
	if len(c.reads[1]) != 1 || c.reads[1][0].Index < noop {
		t.Fatalf("reads %+v, want one at or after the no-op %d", c.reads[1], noop)
	}
}

// TestReadIndexOnFollower shows that a follower forwards a read to the
// leader and releases it itself once the leader has confirmed it.
func TestReadIndexOnFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	f := c.followerOf(lead)
	if err := c.cores[f].ReadIndex([]byte("f")); err != nil {
		t.Fatal(err)
	}
	c.drive()
	if readCount(c, f, "f") != 1 || readCount(c, lead, "f") != 0 {
		t.Fatalf("follower reads %+v, leader reads %+v", c.reads[f], c.reads[lead])
	}
	if rs := c.reads[f][0]; rs.Index != c.cores[lead].Committed() {
		t.Fatalf("released at %d, commit %d", rs.Index, c.cores[lead].Committed())
	}
}

// TestReadIndexDeposedLeader shows that a leader deposed while its read
// round is in flight releases nothing: with CheckQuorum off it still thinks
// it leads when its round reaches the followers, but they answer from a
// newer term and that deposes it instead.
func TestReadIndexDeposedLeader(t *testing.T) {
	c, old := readyLeader(t, func(cfg *raft.Config) { cfg.DisableCheckQuorum = true })
	if err := c.cores[old].ReadIndex([]byte("stale")); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	round := c.held
	c.held = nil
	c.hold = false
	c.cut[old] = true
	c.tick(2 * electionTicks)
	lead := c.waitLeader()
	c.one("y", 2, 10*electionTicks)
	delete(c.cut, old)
	if c.cores[old].Role() != raft.Leader {
		t.Fatal("the old leader stepped down on its own")
	}
	for _, m := range round {
		if isReadHeartbeat(m) {
			c.step(m)
		}
	}
	c.drive()
	c.tick(3 * electionTicks)
	if n := readCount(c, old, "stale"); n != 0 {
		t.Fatalf("deposed leader released its read: %+v", c.reads[old])
	}
	if c.leader() != lead || c.cores[old].Role() != raft.Follower {
		t.Fatalf("leader %d, old leader %s", c.leader(), c.cores[old].Role())
	}
	var nle *raft.NotLeaderError
	if err := c.cores[old].LeaseRead(nil); !errors.As(err, &nle) || nle.Leader != lead {
		t.Fatalf("LeaseRead on the old leader: %v", err)
	}
}
