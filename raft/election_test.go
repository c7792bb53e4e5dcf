package raft_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

const electionTicks = raft.DefaultElectionTicks

// TestInitialElection shows that a new cluster elects one leader whose term
// every member agrees on, and that without faults neither the leader nor the
// term changes over 50 election timeouts.
func TestInitialElection(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.tick(1) // let the leader's first heartbeat reach everyone
	term := c.cores[lead].Term()
	for _, id := range c.ids {
		if got := c.cores[id].Term(); got != term {
			t.Fatalf("member %d is at term %d, leader %d at %d", id, got, lead, term)
		}
		if got := c.cores[id].Lead(); got != lead {
			t.Fatalf("member %d follows %d, want %d", id, got, lead)
		}
	}
	for i := 0; i < 50*electionTicks; i++ {
		c.tick(1)
		for _, id := range c.ids {
			if c.cores[id].Term() != term || c.cores[id].Lead() != lead {
				t.Fatalf("tick %d: member %d at term %d following %d; want term %d, leader %d",
					i, id, c.cores[id].Term(), c.cores[id].Lead(), term, lead)
			}
		}
	}
	if len(c.leaders) != 1 {
		t.Fatalf("leaders by term: %v, want one", c.leaders)
	}
}

// TestReElection shows that a new leader is elected when the leader is cut
// off, that the old leader rejoins as a follower without raising the term
// (PreVote), and that no leader exists while no majority is connected.
func TestReElection(t *testing.T) {
	c := newCluster(t, 3, nil)
	old := c.waitLeader()

	c.cut[old] = true
	c.tick(2 * electionTicks)
	lead := c.waitLeader()
	if lead == old {
		t.Fatal("the cut-off leader still leads")
	}
	term := c.cores[lead].Term()

	delete(c.cut, old)
	c.tick(5 * electionTicks)
	if c.leader() != lead || c.cores[lead].Term() != term {
		t.Fatalf("the old leader's return changed leadership: leader %d term %d, want %d term %d",
			c.leader(), c.cores[c.leader()].Term(), lead, term)
	}
	if c.cores[old].Role() != raft.Follower || c.cores[old].Term() != term || c.cores[old].Lead() != lead {
		t.Fatalf("old leader is %s at term %d following %d", c.cores[old].Role(), c.cores[old].Term(), c.cores[old].Lead())
	}

	// Two of three cut off: nobody may lead.
	other := c.ids[0]
	for other == lead {
		other++
	}
	c.cut[lead], c.cut[other] = true, true
	c.tick(10 * electionTicks)
	for _, id := range c.ids {
		if c.cores[id].Role() == raft.Leader {
			t.Fatalf("member %d leads term %d without a majority", id, c.cores[id].Term())
		}
	}

	// One returns: a majority again, a leader again.
	delete(c.cut, other)
	c.waitLeader()
}

// TestManyElections shows, with 7 members of which 3 random ones are cut off
// again and again, that no term has two leaders (checked by the harness
// after every Ready) and that a leader exists whenever a majority is
// connected.
func TestManyElections(t *testing.T) {
	c := newCluster(t, 7, nil)
	c.waitLeader()
	rng := rand.New(rand.NewPCG(7, 42))
	for iter := 0; iter < 30; iter++ {
		clear(c.cut)
		for _, i := range rng.Perm(7)[:3] {
			c.cut[c.ids[i]] = true
		}
		// A connected majority elects a leader within a few election
		// timeouts (the vote lease delays it by at most one).
		lead := pb.NodeID(0)
		for i := 0; i < 5*electionTicks && lead == 0; i++ {
			c.tick(1)
			lead = c.leader()
		}
		if lead == 0 {
			t.Fatalf("iteration %d: no leader among the connected majority (cut %v)", iter, c.cut)
		}
		c.tick(rng.IntN(2 * electionTicks))
		if c.leader() == 0 {
			t.Fatalf("iteration %d: the connected majority lost its leader", iter)
		}
	}
	clear(c.cut)
	c.one("after", 7, 20*electionTicks)
	if len(c.leaders) < 5 {
		t.Fatalf("only %d terms had a leader: the partitions did not force elections", len(c.leaders))
	}
}

// TestDisruptiveRejoin shows that a follower cut off for 10 election
// timeouts does not raise its term while away (PreVote) and so leaves the
// leader and term alone when it rejoins; without PreVote the same rejoin
// deposes the leader, which shows the test can tell.
func TestDisruptiveRejoin(t *testing.T) {
	run := func(preVote bool) (termBefore, termAfter, followerTerm pb.Term, leadBefore, leadAfter pb.NodeID) {
		c := newCluster(t, 3, func(cfg *raft.Config) { cfg.DisablePreVote = !preVote })
		lead := c.waitLeader()
		term := c.cores[lead].Term()
		f := c.ids[0]
		if f == lead {
			f = c.ids[1]
		}
		c.cut[f] = true
		c.tick(10 * electionTicks)
		ft := c.cores[f].Term()
		delete(c.cut, f)
		c.tick(5 * electionTicks)
		c.one("after-rejoin", 3, 20*electionTicks)
		now := c.leader()
		return term, c.cores[now].Term(), ft, lead, now
	}
	termBefore, termAfter, ft, leadBefore, leadAfter := run(true)
	if ft != termBefore {
		t.Errorf("PreVote: the cut-off follower went from term %d to %d", termBefore, ft)
	}
	if termAfter != termBefore || leadAfter != leadBefore {
		t.Errorf("PreVote: rejoin changed leader %d term %d into leader %d term %d", leadBefore, termBefore, leadAfter, termAfter)
	}
	termBefore, termAfter, ft, _, _ = run(false)
	if ft <= termBefore || termAfter <= termBefore {
		t.Errorf("without PreVote the rejoin should raise the term: before %d, follower %d, after %d", termBefore, ft, termAfter)
	}
}

// TestCheckQuorumIsolatedLeader shows that a leader cut off from everyone
// stops acting as leader within 2 election timeouts and releases no
// ReadIndex request: neither one taken before nor after it was cut off.
func TestCheckQuorumIsolatedLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	c.reads[lead] = nil

	c.cut[lead] = true
	if err := c.cores[lead].ReadIndex([]byte("before")); err != nil {
		t.Fatalf("ReadIndex on a leader that does not know it is cut off: %v", err)
	}
	stepped := -1
	for i := 1; i <= 2*electionTicks; i++ {
		c.tick(1)
		if c.cores[lead].Role() != raft.Leader {
			stepped = i
			break
		}
	}
	if stepped < 0 {
		t.Fatalf("isolated leader %d still leads after 2 election timeouts", lead)
	}
	err := c.cores[lead].ReadIndex([]byte("after"))
	var nle *raft.NotLeaderError
	if !errors.As(err, &nle) {
		t.Fatalf("ReadIndex on the deposed leader: %v, want NotLeaderError", err)
	}
	c.tick(5 * electionTicks)
	if len(c.reads[lead]) != 0 {
		t.Fatalf("isolated leader released reads %v", c.reads[lead])
	}
	t.Logf("isolated leader stepped down after %d ticks", stepped)
}

// TestSlowVoters shows that with every PreVote and RequestVote to one member,
// and every answer from another, delayed by one to two election timeouts, a
// leader still emerges (also when it needs one of the slow votes) and
// thousands of proposals commit everywhere.
func TestSlowVoters(t *testing.T) {
	c := newCluster(t, 5, nil)
	rng := rand.New(rand.NewPCG(3, 5))
	// Requests to 1 and answers from 2 are slow: one leg of each round trip.
	c.net = func(m pb.Message) []int {
		slow := false
		switch m.Type {
		case pb.MsgPreVote, pb.MsgRequestVote:
			slow = m.To == 1
		case pb.MsgPreVoteResp, pb.MsgRequestVoteResp:
			slow = m.From == 2
		}
		if slow {
			return []int{electionTicks + rng.IntN(electionTicks+1)}
		}
		return []int{0}
	}
	lead := c.waitLeader()
	const total, batch = 3000, 100
	for i := 0; i < total; i += batch {
		if l := c.leader(); l != 0 {
			lead = l
		}
		cmds := make([]string, batch)
		for j := range cmds {
			cmds[j] = cmdN("slow", i+j)
		}
		c.propose(lead, cmds...)
		c.tick(1)
	}
	c.tick(5)
	for _, id := range c.ids {
		if n := len(c.commands(id)); n != total {
			t.Fatalf("member %d applied %d of %d commands", id, n, total)
		}
	}
	// Force elections that need both slow members: the leader and one more
	// fast member away, three times.
	for i := 0; i < 3; i++ {
		old := c.leader()
		other := pb.NodeID(3)
		for other == old {
			other++
		}
		c.cut[old], c.cut[other] = true, true
		c.tick(2 * electionTicks)
		lead := c.waitLeader()
		c.propose(lead, cmdN("reelect", i))
		c.tick(5)
		clear(c.cut)
		c.one(cmdN("healed", i), 5, 30*electionTicks)
		if n := c.appliedCount(cmdN("reelect", i)); n < 3 {
			t.Fatalf("election %d: %d members applied the command proposed to the new leader", i, n)
		}
	}
}

// TestVotesAndTermsSurviveCrash shows that a vote and a term are durable
// before they are acted on: a voter that crashes after persisting its vote
// but before replying, or after replying but before its next step, still
// refuses a second candidate of the same term on restart. The harness
// checks, on every message, one vote per term and the term durable before
// it leaves, and on every restart that the term did not go back.
func TestVotesAndTermsSurviveCrash(t *testing.T) {
	for _, phase := range []crashPhase{crashAfterPersist, crashAfterSend} {
		c := newCluster(t, 3, func(cfg *raft.Config) { cfg.DisablePreVote = true })
		c.hold = true
		c.campaign(1) // 1 campaigns in term 2
		if c.cores[1].Role() != raft.Candidate {
			t.Fatalf("member 1 is %s", c.cores[1].Role())
		}
		term := c.cores[1].Term()
		crashed := false
		c.crashHook = func(id pb.NodeID, p crashPhase) bool {
			if id == 2 && p == phase && !crashed {
				crashed = true
				return true
			}
			return false
		}
		c.deliver(msgIs(pb.MsgRequestVote, 1, 2))
		c.discard(msgIs(pb.MsgRequestVote, 1, 3))
		if !crashed {
			t.Fatal("member 2 did not crash")
		}
		if hs := c.stores[2].HardState(); hs.Term != term || hs.Vote != 1 {
			t.Fatalf("phase %d: member 2 durable state %+v, want term %d vote 1", phase, hs, term)
		}
		if got := c.cores[2].Term(); got != term {
			t.Fatalf("phase %d: member 2 restarted at term %d, want %d", phase, got, term)
		}
		// 3 campaigns in the same term and asks the restarted 2.
		c.campaign(3)
		if c.cores[3].Term() != term || c.cores[3].Role() != raft.Candidate {
			t.Fatalf("member 3 is %s at term %d, want candidate at %d", c.cores[3].Role(), c.cores[3].Term(), term)
		}
		c.discard(msgIs(pb.MsgRequestVoteResp, 2, 1)) // the reply sent before the crash, if any
		c.deliver(msgIs(pb.MsgRequestVote, 3, 2))
		granted := 0
		for _, m := range c.held {
			if m.Type == pb.MsgRequestVoteResp && m.From == 2 && m.To == 3 && !m.Reject {
				granted++
			}
		}
		if granted != 0 {
			t.Fatalf("phase %d: restarted member 2 voted for 3 in term %d after voting for 1", phase, term)
		}
		c.crashHook = nil
		c.hold = false
		c.held = nil
		c.waitLeader()
		c.one("after", 3, 20*electionTicks)
	}
}

// TestRandomCrashesKeepVotesAndTerms shows, with members crashing at random
// points of their Ready loop (after persisting, after sending) while
// elections and proposals run, one vote per term, terms that never go back,
// one leader per term and no committed entry lost (checked by the harness).
func TestRandomCrashesKeepVotesAndTerms(t *testing.T) {
	c := newCluster(t, 5, nil)
	rng := rand.New(rand.NewPCG(11, 13))
	c.crashHook = func(id pb.NodeID, p crashPhase) bool { return rng.IntN(200) == 0 }
	durable := map[pb.NodeID]pb.Term{}
	for i := 0; i < 40; i++ {
		c.one(cmdN("c", i), 3, 100*electionTicks)
		for _, id := range c.ids {
			hs := c.stores[id].HardState()
			if hs.Term < durable[id] {
				t.Fatalf("member %d durable term went from %d to %d", id, durable[id], hs.Term)
			}
			durable[id] = hs.Term
		}
	}
	c.crashHook = nil
	c.one("last", 5, 20*electionTicks)
	if len(c.leaders) < 2 {
		t.Logf("only %d leaders", len(c.leaders))
	}
}
