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
	f := c.followerOf(lead)
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
	f := c.followerOf(lead)
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

// TestRegressionImpossibleSnapshot pins a broken invariant the fuzzer
// found: an InstallSnapshot at the largest index (with term 0) made the
// follower restore its log to start after it, at index 0. Snapshots no
// leader can send (that index, term 0, a term past the sender's) change
// nothing.
func TestRegressionImpossibleSnapshot(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	f := c.followerOf(lead)
	term := c.cores[f].Term()
	conf := c.cores[f].ConfState()
	for _, s := range []pb.SnapshotMeta{
		{Index: math.MaxUint64, Term: term, Conf: conf},
		{Index: math.MaxUint64, Term: 0, Conf: conf},
		{Index: 100, Term: 0, Conf: conf},
		{Index: 100, Term: term + 1, Conf: conf},
	} {
		before := c.cores[f].Status()
		m := pb.Message{Type: pb.MsgInstallSnapshot, From: lead, To: f, Term: term, Snapshot: &s}
		if err := c.cores[f].Step(m); err != nil {
			t.Fatal(err)
		}
		after := c.cores[f].Status()
		if after.FirstIndex != before.FirstIndex || after.LastIndex != before.LastIndex || after.Commit != before.Commit {
			t.Fatalf("snapshot %d/%d moved the log from [%d, %d] commit %d to [%d, %d] commit %d", s.Index, s.Term,
				before.FirstIndex, before.LastIndex, before.Commit, after.FirstIndex, after.LastIndex, after.Commit)
		}
		c.drive()
	}
	c.one("y", 3, 10*electionTicks)
}

// TestRegressionAppendRespPastLastIndex pins a panic: an AppendEntriesResp
// acknowledging an index past the leader's log moved the follower's Next
// past it, and the next send failed to read the term there.
func TestRegressionAppendRespPastLastIndex(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	f := c.followerOf(lead)
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

// TestRegressionLeaseReadAfterVoterRestart pins a stale lease read. Five
// members: L leads, reaching a and b; x and y reach b and each other but
// neither L nor a. b restarts: it forgot L, and used to grant x's
// campaign at once, so x won with b and y and committed a write while L,
// whose clock never moved, still counted b's answer from before the
// restart toward its lease and answered a lease read below that write. A
// server that may have answered a leader before it started now refuses
// (pre)votes for its first election timeout (dissertation §6.4.1).
func TestRegressionLeaseReadAfterVoterRestart(t *testing.T) { leaseReadAfterVoterRestart(t) }

func leaseReadAfterVoterRestart(t testing.TB) {
	c := newCluster(t, 5, nil)
	l := c.waitLeader()
	c.one("before", 5, 10*electionTicks)
	var others []pb.NodeID
	for _, id := range c.ids {
		if id != l {
			others = append(others, id)
		}
	}
	a, b, x, y := others[0], others[1], others[2], others[3]
	c.say("cut %d and %d from %d and %d; %d keeps a quorum through %d and %d", l, a, x, y, l, a, b)
	for _, p := range [][2]pb.NodeID{{l, x}, {l, y}, {a, x}, {a, y}} {
		c.cutLink[p] = true
		c.cutLink[[2]pb.NodeID{p[1], p[0]}] = true
	}
	c.tick(3 * electionTicks) // x and y forget L; b keeps answering it
	if c.leader() != l {
		t.Fatalf("leader %d, want %d to keep leading through a and b", c.leader(), l)
	}
	c.say("%d restarts, and %d campaigns at once", b, x)
	c.crash(b)
	c.campaign(x)
	if c.cores[x].Role() == raft.Leader {
		if idx, _, err := c.cores[x].Propose([]byte("write")); err == nil {
			c.drive()
			c.say("%d leads term %d and committed up to %d (its write at %d)",
				x, c.cores[x].Term(), c.cores[x].Committed(), idx)
		}
	}
	var floor pb.Index
	for _, id := range c.ids {
		floor = max(floor, c.cores[id].Committed())
	}
	if err := c.cores[l].LeaseRead([]byte("r")); err != nil {
		t.Fatal(err)
	}
	c.drive()
	for _, rs := range c.reads[l] {
		if string(rs.Context) == "r" && rs.Index < floor {
			t.Fatalf("stale lease read: %d answered at %d, but %d was committed before it was asked", l, rs.Index, floor)
		}
	}
	if c.cores[x].Role() == raft.Leader {
		t.Fatalf("%d won an election with the vote of %d, restarted while its answer backed %d's lease", x, b, l)
	}
}

// TestRegressionLeaseReadAfterAbandonedTransfer pins a stale lease read: a
// leader abandoned a transfer after an election timeout and took lease
// reads again, but its TimeoutNow was only late. The target then won at
// once (voters grant a transfer campaign inside their vote lease) and
// committed a write below which the old leader answered. Once TimeoutNow is
// sent, lease reads are off for the rest of the term.
func TestRegressionLeaseReadAfterAbandonedTransfer(t *testing.T) {
	c, l := readyLeader(t, nil)
	var target, other pb.NodeID
	for _, id := range c.ids {
		switch {
		case id == l:
		case target == 0:
			target = id
		default:
			other = id
		}
	}
	if err := c.cores[l].TransferLeader(target); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	notTimeoutNow := func(m pb.Message) bool { return m.Type != pb.MsgTimeoutNow }
	c.say("the TimeoutNow to %d is late; %d abandons the transfer and keeps its lease", target, l)
	for i := 0; i < 2*electionTicks; i++ {
		c.tick(1)
		for c.deliver(notTimeoutNow) > 0 {
		}
	}
	if st := c.cores[l].Status(); st.Role != raft.Leader || st.LeadTransferee != pb.None {
		t.Fatalf("%d: role %s, transferee %d; want a leader that abandoned the transfer", l, st.Role, st.LeadTransferee)
	}
	c.say("the TimeoutNow arrives: %d wins with %d's vote and commits a write", target, other)
	toNew := func(m pb.Message) bool { return m.To != l }
	for c.deliver(toNew) > 0 {
	}
	if c.cores[target].Role() != raft.Leader {
		t.Fatalf("%d did not win the transfer campaign (%s)", target, c.cores[target].Role())
	}
	c.propose(target, "write")
	for c.deliver(toNew) > 0 {
	}
	floor := c.cores[target].Committed()
	if err := c.cores[l].LeaseRead([]byte("r")); err != nil {
		t.Fatal(err)
	}
	c.readyAll()
	for _, rs := range c.reads[l] {
		if string(rs.Context) == "r" && rs.Index < floor {
			t.Fatalf("stale lease read: %d answered at %d, but %d was committed before it was asked", l, rs.Index, floor)
		}
	}
}

// TestRegressionLeaseTimedFromLateAnswer pins a stale lease read under pure
// message delay, with every clock exact. Three members: L leads and x is
// cut off from it. b's answers to L queue up on a slow link, each delayed
// one tick more than the one before, until L's messages stop reaching b.
// L used to time its lease from when an answer arrived: b's last answers
// arrived long after b had last heard L, when b's vote lease had run out
// and a new leader had been elected with b's vote and had committed a
// write, and L answered a lease read below that write. The lease now runs
// from when the heartbeat round that a quorum answered was sent
// (dissertation §6.4.1), and b's refusal runs from when it received it.
func TestRegressionLeaseTimedFromLateAnswer(t *testing.T) { leaseTimedFromLateAnswer(t) }

func leaseTimedFromLateAnswer(t testing.TB) {
	c := newCluster(t, 3, nil)
	l := c.waitLeader()
	c.one("before", 3, 10*electionTicks)
	var b, x pb.NodeID
	for _, id := range c.ids {
		switch {
		case id == l:
		case b == 0:
			b = id
		default:
			x = id
		}
	}
	c.say("cut %d from %d; %d's answers to %d queue up on a slow link", l, x, b, l)
	c.cutLink[[2]pb.NodeID{l, x}], c.cutLink[[2]pb.NodeID{x, l}] = true, true
	// The queue grows by one tick per tick, so an answer still reaches L
	// every other tick and CheckQuorum keeps it leading; the last answers
	// arrive queued ticks after they were sent, past the election
	// timeout b's own campaign or x's may take.
	const queued = 2*electionTicks + 2
	delay := 0
	c.net = func(m pb.Message) []int {
		if m.From == b && m.To == l {
			return []int{delay}
		}
		return []int{0}
	}
	for delay = 1; delay < queued; delay++ {
		c.tick(1)
	}
	last := c.now + delay - 1 // when b's answer to L's last heartbeat arrives
	c.say("%d's messages stop reaching %d; %d's answers are still on their way", l, b, b)
	c.cutLink[[2]pb.NodeID{l, b}] = true
	var lead pb.NodeID
	for c.now < last && lead == 0 {
		c.tick(1)
		if n := c.leaderOf(b, x); n != 0 && c.cores[n].Term() > c.cores[l].Term() {
			lead = n
		}
	}
	if lead == 0 {
		t.Fatalf("no leader elected among %d and %d by tick %d", b, x, last)
	}
	idx := c.propose(lead, "write")
	c.drive()
	if got := c.cores[lead].Committed(); got < idx {
		t.Fatalf("%d did not commit its write at %d (commit %d)", lead, idx, got)
	}
	c.say("%d leads term %d and committed its write at %d; %d still leads term %d",
		lead, c.cores[lead].Term(), idx, l, c.cores[l].Term())
	for c.now < last {
		c.tick(1)
	}
	if c.cores[l].Role() != raft.Leader {
		t.Fatalf("%d stopped leading before %d's last answer arrived", l, b)
	}
	if err := c.cores[l].LeaseRead([]byte("r")); err != nil {
		t.Fatal(err)
	}
	c.drive()
	for _, rs := range c.reads[l] {
		if string(rs.Context) == "r" && rs.Index < idx {
			t.Fatalf("stale lease read: %d answered at %d, but %d committed a write at %d before it was asked",
				l, rs.Index, lead, idx)
		}
	}
}
