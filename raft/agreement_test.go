package raft_test

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TestAgreementBasic shows that commands proposed one at a time are applied
// by every member, in the order proposed, at the index Propose returned.
func TestAgreementBasic(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	var want []string
	for i := 0; i < 20; i++ {
		cmd := cmdN("basic", i)
		idx := c.propose(lead, cmd)
		if i > 0 && idx != (*c.applied[lead])[len(*c.applied[lead])-1].Index+1 {
			t.Fatalf("command %d proposed at %d, last applied %d", i, idx, (*c.applied[lead])[len(*c.applied[lead])-1].Index)
		}
		c.tick(2)
		want = append(want, cmd)
		for _, id := range c.ids {
			if got := c.commands(id); !slices.Equal(got, want) {
				t.Fatalf("member %d applied %v, want %v", id, got, want)
			}
		}
		if e := c.committed[idx]; string(e.Data) != cmd {
			t.Fatalf("index %d holds %v, want %q", idx, e, cmd)
		}
	}
}

// TestAgreementDespiteCutFollower shows that a majority commits while one
// follower is cut off, and that the follower catches up when it returns.
func TestAgreementDespiteCutFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("a", 3, 10*electionTicks)
	f := c.followerOf(lead)
	c.cut[f] = true
	for i := 0; i < 10; i++ {
		c.one(cmdN("cut", i), 2, 10*electionTicks)
	}
	if got := c.commands(f); !slices.Equal(got, []string{"a"}) {
		t.Fatalf("cut-off follower applied %v", got)
	}
	delete(c.cut, f)
	c.one("back", 3, 10*electionTicks)
	if got, want := c.commands(f), c.commands(lead); !slices.Equal(got, want) || len(got) != 12 {
		t.Fatalf("returned follower applied %v, leader %v", got, want)
	}
}

// TestNoAgreementWithoutMajority shows that with three of five members cut
// off nothing commits, not even on the leader, and that the cluster works
// again once they return.
func TestNoAgreementWithoutMajority(t *testing.T) {
	c := newCluster(t, 5, nil)
	lead := c.waitLeader()
	c.one("a", 5, 10*electionTicks)
	commits := map[pb.NodeID]pb.Index{}
	for _, id := range c.ids {
		commits[id] = c.cores[id].Committed()
	}
	n := 0
	for _, id := range c.ids {
		if id != lead && n < 3 {
			c.cut[id] = true
			n++
		}
	}
	idx := c.propose(lead, "lonely")
	if want := commits[lead] + 1; idx != want {
		t.Fatalf("proposed at %d, want %d", idx, want)
	}
	c.tick(10 * electionTicks)
	for _, id := range c.ids {
		if got := c.cores[id].Committed(); got != commits[id] {
			t.Fatalf("member %d committed %d (was %d) without a majority", id, got, commits[id])
		}
	}
	if c.appliedCount("lonely") != 0 {
		t.Fatal("a command was applied without a majority")
	}
	clear(c.cut)
	c.one("after", 5, 20*electionTicks)
}

// TestConcurrentProposals shows that proposals from many callers,
// interleaved in a seeded random order and sent to any member (a follower
// answers NotLeaderError naming the leader, and the caller retries there),
// are each applied exactly once, everywhere in the same order, at the index
// and term Propose returned.
func TestConcurrentProposals(t *testing.T) {
	c := newCluster(t, 5, nil)
	c.waitLeader()
	rng := rand.New(rand.NewPCG(1, 2))
	const callers, each = 20, 50
	next := make([]int, callers)
	type placed struct {
		index pb.Index
		term  pb.Term
	}
	where := map[string]placed{}
	redirects := 0
	for len(where) < callers*each {
		k := rng.IntN(callers)
		if next[k] == each {
			continue
		}
		cmd := cmdN(string(rune('A'+k))+"-", next[k])
		to := c.ids[rng.IntN(len(c.ids))]
		idx, term, err := c.cores[to].Propose([]byte(cmd))
		var nle *raft.NotLeaderError
		if errors.As(err, &nle) {
			redirects++
			idx, term, err = c.cores[nle.Leader].Propose([]byte(cmd))
		}
		if err != nil {
			t.Fatalf("propose %s: %v", cmd, err)
		}
		where[cmd] = placed{idx, term}
		next[k]++
		if rng.IntN(10) == 0 {
			c.tick(1)
		}
	}
	c.tick(5)
	want := c.commands(c.ids[0])
	if len(want) != callers*each {
		t.Fatalf("applied %d commands, want %d", len(want), callers*each)
	}
	for _, id := range c.ids[1:] {
		if got := c.commands(id); !slices.Equal(got, want) {
			t.Fatalf("member %d applied a different sequence", id)
		}
	}
	for cmd, p := range where {
		if e := c.committed[p.index]; e.Term != p.term || string(e.Data) != cmd {
			t.Fatalf("%s: Propose said %d/%d, applied there: %v %q", cmd, p.index, p.term, e, e.Data)
		}
	}
	if redirects == 0 {
		t.Fatal("no proposal went to a follower")
	}
}

// TestPartitionedLeaderRejoins shows that a leader cut off from the
// majority keeps its proposals uncommitted, and that when it rejoins they
// are discarded: the majority's newer entries replace them everywhere.
func TestPartitionedLeaderRejoins(t *testing.T) {
	c := newCluster(t, 5, nil)
	old := c.waitLeader()
	c.one("a", 5, 10*electionTicks)
	c.cut[old] = true
	for i := 0; i < 5; i++ {
		c.propose(old, cmdN("lost", i))
	}
	c.tick(2 * electionTicks)
	lead := c.waitLeader()
	for i := 0; i < 5; i++ {
		c.one(cmdN("kept", i), 4, 10*electionTicks)
	}
	delete(c.cut, old)
	c.one("after", 5, 20*electionTicks)
	want := []string{"a", "kept0", "kept1", "kept2", "kept3", "kept4", "after"}
	for _, id := range c.ids {
		if got := c.commands(id); !slices.Equal(got, want) {
			t.Fatalf("member %d applied %v, want %v", id, got, want)
		}
	}
	if c.cores[old].Status().LastIndex != c.cores[lead].Status().LastIndex {
		t.Fatalf("old leader's log ends at %d, the leader's at %d", c.cores[old].Status().LastIndex, c.cores[lead].Status().LastIndex)
	}
}

// TestBackupDivergentLogs shows that a leader brings followers with 50
// divergent uncommitted entries back in line in a number of round trips
// proportional to the number of differing terms, not entries: each follower
// rejects at most twice per heal (the paper's §5.3 optimisation, with
// hints), where backing up one entry at a time would take 50 rejections.
func TestBackupDivergentLogs(t *testing.T) {
	c := newCluster(t, 5, nil)
	lead := c.waitLeader()
	c.one("start", 5, 10*electionTicks)
	others := slices.DeleteFunc(slices.Clone(c.ids), func(id pb.NodeID) bool { return id == lead })
	f1, a, b, d := others[0], others[1], others[2], others[3]

	// The leader and f1 take 50 entries that cannot commit.
	c.partition([]pb.NodeID{lead, f1}, []pb.NodeID{a, b, d})
	for i := 0; i < 50; i++ {
		c.propose(lead, cmdN("lost1-", i))
	}
	c.tick(1)
	// a, b, d elect a leader and commit 50 entries.
	l2 := c.waitLeaderOf(a, b, d)
	for i := 0; i < 50; i++ {
		c.propose(l2, cmdN("kept1-", i))
	}
	c.tick(2)
	if c.appliedCount("kept1-49") != 3 {
		t.Fatal("the majority did not commit")
	}
	// l2 and one follower take 50 more that cannot commit.
	rest := slices.DeleteFunc([]pb.NodeID{a, b, d}, func(id pb.NodeID) bool { return id == l2 })
	x, y := rest[0], rest[1]
	c.partition([]pb.NodeID{l2, x}, []pb.NodeID{lead, f1, y})
	for i := 0; i < 50; i++ {
		c.propose(l2, cmdN("lost2-", i))
	}
	c.tick(1)
	// lead, f1 and y form a majority: y, whose log is the most up to date,
	// must win, and back up lead and f1 over their 50 divergent entries.
	c.resetCounters()
	l3 := c.waitLeaderOf(lead, f1, y)
	for i := 0; i < 50; i++ {
		c.propose(l3, cmdN("kept2-", i))
	}
	c.tick(2)
	if c.appliedCount("kept2-49") != 3 {
		t.Fatal("the second majority did not commit")
	}
	if c.rejects > 2*2 {
		t.Fatalf("backing up 2 followers over 50 divergent entries took %d rejections", c.rejects)
	}
	first := c.rejects
	if first == 0 {
		t.Fatal("no rejection: the logs did not diverge where the leader probed")
	}
	// Everyone but l3: a new leader probes l2 and x at its last index and
	// backs up over their 50 divergent entries.
	c.resetCounters()
	c.partition(c.ids)
	c.cut[l3] = true
	appends := map[pb.NodeID]int{} // AppendEntries that can arrive
	c.onSend = func(m pb.Message) {
		if m.Type == pb.MsgAppendEntries && c.deliverable(m) {
			appends[m.To]++
		}
	}
	l4 := c.waitLeader()
	c.one("end", 4, 20*electionTicks)
	if c.rejects == 0 || c.rejects > 2*2 {
		t.Fatalf("backing up 2 followers over 50 divergent entries took %d rejections", c.rejects)
	}
	for _, id := range []pb.NodeID{l2, x} {
		if n := appends[id]; n > 6 {
			t.Fatalf("backing up %d took %d AppendEntries", id, n)
		}
	}
	delete(c.cut, l3)
	c.one("end2", 5, 20*electionTicks)
	if l4 == l2 || l4 == x {
		t.Fatalf("member %d with a stale log was elected", l4)
	}
	for _, cmd := range []string{"lost1-0", "lost2-0"} {
		if c.appliedCount(cmd) != 0 {
			t.Fatalf("%s was applied", cmd)
		}
	}
	if n := len(c.commands(x)); n != 103 {
		t.Fatalf("member %d applied %d commands, want 103", x, n)
	}
	t.Logf("rejections: %d then %d", first, c.rejects)
}

// TestBackupFarBehindFollower shows that a follower cut off while 1000
// entries commit over several terms is caught up with at most two
// rejections and a handful of AppendEntries, not one per entry or term.
func TestBackupFarBehindFollower(t *testing.T) {
	c := newCluster(t, 5, nil)
	lead := c.waitLeader()
	c.one("start", 5, 10*electionTicks)
	f := c.followerOf(lead)
	c.cut[f] = true
	for term := 0; term < 5; term++ {
		l := c.waitLeader()
		for i := 0; i < 200; i++ {
			c.propose(l, cmdN("far", term*200+i))
		}
		c.tick(2)
		// Depose the leader to move to a new term.
		if term < 4 {
			c.cut[l] = true
			c.tick(2 * electionTicks)
			c.waitLeader()
			delete(c.cut, l)
			c.tick(2)
		}
	}
	if got := c.appliedCount("far999"); got != 4 {
		t.Fatalf("%d members applied the last command", got)
	}
	c.resetCounters()
	delete(c.cut, f)
	c.tick(3)
	if n := len(c.commands(f)); n != 1001 {
		t.Fatalf("follower applied %d commands, want 1001", n)
	}
	if c.rejects > 2 {
		t.Fatalf("catching up took %d rejections", c.rejects)
	}
	if n := c.sentTo[f][pb.MsgAppendEntries]; n > 6 {
		t.Fatalf("catching up took %d AppendEntries", n)
	}
	t.Logf("rejections %d, AppendEntries %d", c.rejects, c.sentTo[f][pb.MsgAppendEntries])
}

// TestUnreliableNetwork shows agreement over a seeded network that loses
// 10% of messages, duplicates 10%, and delays the rest by up to two election
// timeouts (so they arrive reordered), while clients retry.
func TestUnreliableNetwork(t *testing.T) {
	c := newCluster(t, 5, nil)
	rng := rand.New(rand.NewPCG(2024, 5))
	c.net = func(m pb.Message) []int {
		if rng.IntN(10) == 0 {
			return nil
		}
		delay := func() int {
			if rng.IntN(10) == 0 {
				return rng.IntN(2*electionTicks + 1) // long delay
			}
			return rng.IntN(3)
		}
		if rng.IntN(10) == 0 {
			return []int{delay(), delay()}
		}
		return []int{delay()}
	}
	for i := 0; i < 50; i++ {
		c.one(cmdN("u", i), 3, 200*electionTicks)
	}
	c.net = nil
	c.tick(2 * electionTicks)
	c.one("final", 5, 20*electionTicks)
	for i := 0; i < 50; i++ {
		if c.appliedCount(cmdN("u", i)) != 5 {
			t.Fatalf("command %d not applied everywhere", i)
		}
	}
}
