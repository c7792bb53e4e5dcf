package raft_test

import (
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// figure8Config is the paper's base algorithm (no PreVote, no CheckQuorum,
// so elections can be forced by ticking one core), with one entry per
// AppendEntries so that single entries can be replicated on their own.
func figure8Config(cfg *raft.Config) {
	cfg.DisablePreVote = true
	cfg.DisableCheckQuorum = true
	cfg.MaxMsgBytes = 1
}

// lastEntry returns the index and term of member id's last log entry.
func lastEntry(t *testing.T, c *cluster, id pb.NodeID) (pb.Index, pb.Term) {
	t.Helper()
	st := c.cores[id].Status()
	term, err := c.stores[id].Term(st.LastIndex)
	if err != nil {
		t.Fatalf("member %d: term of %d: %v", id, st.LastIndex, err)
	}
	return st.LastIndex, term
}

func wantLast(t *testing.T, c *cluster, id pb.NodeID, index pb.Index, term pb.Term) {
	t.Helper()
	if i, tm := lastEntry(t, c, id); i != index || tm != term {
		t.Fatalf("member %d's log ends at %d/%d, want %d/%d", id, i, tm, index, term)
	}
}

func wantLeader(t *testing.T, c *cluster, id pb.NodeID, term pb.Term) {
	t.Helper()
	if r := c.cores[id]; r.Role() != raft.Leader || r.Term() != term {
		t.Fatalf("member %d is %s at term %d, want leader at %d", id, r.Role(), r.Term(), term)
	}
}

// figure8ToC builds states (a) to (c) of the paper's Figure 8 message by
// message and returns the cluster in state (c), with S1's AppendEntries of
// the term-4 entry still held. observe, if set, sees the cluster before
// anything happens (the transcript hooks in there).
func figure8ToC(t *testing.T, observe func(*cluster)) *cluster {
	c := newCluster(t, 5, figure8Config)
	if observe != nil {
		observe(c)
	}
	c.hold = true

	// (a) S1 is elected in term 2 and replicates its entry at index 2 (its
	// no-op) to S2 only.
	c.say("(a) S1 is elected in term 2 and replicates its entry at index 2 (its no-op) to S2 only.")
	c.campaign(1)
	c.deliver(msgIs(pb.MsgRequestVote, 1, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 1))
	wantLeader(t, c, 1, 2)
	c.deliver(msgIs(pb.MsgAppendEntries, 1, 2))
	c.discard(msgIs(pb.MsgAppendEntries, 1, 0))
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 2, 1))
	c.discard(anyMsg)
	wantLast(t, c, 1, 2, 2)
	wantLast(t, c, 2, 2, 2)
	wantLast(t, c, 3, 1, 1)

	// (b) S1 crashes; S5 is elected in term 3 with votes from S3, S4 and
	// itself, and appends a different entry at index 2.
	c.say("(b) S1 crashes; S5 is elected in term 3 with votes from S3, S4 and itself,\n" +
		"and appends a different entry at index 2 (its no-op of term 3).")
	c.cut[1] = true
	c.campaign(5)
	c.deliver(func(m pb.Message) bool {
		return m.Type == pb.MsgRequestVote && m.From == 5 && (m.To == 3 || m.To == 4)
	})
	c.discard(msgIs(pb.MsgRequestVote, 5, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 5))
	wantLeader(t, c, 5, 3)
	c.discard(anyMsg) // S5 crashes before replicating anything
	wantLast(t, c, 5, 2, 3)

	// (c) S5 crashes; S1 restarts and is elected in term 4 (its campaign in
	// term 3 fails: S3 and S4 voted for S5 in term 3), and replicates its
	// term-2 entry at index 2 to S3. It is now on S1, S2 and S3, a majority.
	c.say("(c) S5 crashes; S1 restarts and is elected in term 4 (its campaign in term 3\n" +
		"fails: S3 and S4 voted for S5 in term 3), and replicates its term-2 entry\n" +
		"at index 2 to S3. That entry is now on S1, S2 and S3, a majority.")
	c.cut[5] = true
	delete(c.cut, 1)
	c.crash(1)
	c.campaign(1)
	c.deliver(msgIs(pb.MsgRequestVote, 1, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 1))
	if r := c.cores[1]; r.Role() != raft.Candidate || r.Term() != 3 {
		t.Fatalf("S1 is %s at term %d, want a losing candidate at term 3", r.Role(), r.Term())
	}
	c.campaign(1)
	c.deliver(func(m pb.Message) bool {
		return m.Type == pb.MsgRequestVote && m.From == 1 && (m.To == 2 || m.To == 3)
	})
	c.discard(msgIs(pb.MsgRequestVote, 1, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 1))
	wantLeader(t, c, 1, 4)
	wantLast(t, c, 1, 3, 4) // its no-op of term 4, not yet replicated

	c.deliver(msgIs(pb.MsgAppendEntries, 1, 3))     // prev 2/2: S3 rejects
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 3, 1)) // S1 backs up to index 1
	c.deliver(msgIs(pb.MsgAppendEntries, 1, 3))     // [2/2]: S3 accepts
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 3, 1)) // S1 learns S3 holds 2
	if got, err := c.stores[3].Term(2); err != nil || got != 2 {
		t.Fatalf("S3 holds %d at index 2 (%v), want term 2", got, err)
	}
	holders := 0
	for _, id := range c.ids {
		if got, err := c.stores[id].Term(2); err == nil && got == 2 {
			holders++
		}
	}
	if holders != 3 {
		t.Fatalf("the term-2 entry is on %d members, want 3 (a majority)", holders)
	}
	if pr := c.cores[1].Status().Progress[3]; pr.Match != 2 {
		t.Fatalf("S1 thinks S3 holds up to %d, want 2", pr.Match)
	}
	// The heart of Figure 8: on a majority, but of an earlier term, so not
	// committed and not applied anywhere.
	c.say("State (c): the term-2 entry at index 2 is on a majority, but it is of an\n" +
		"earlier term, so S1 does not count it as committed (commit stays 1).")
	for _, id := range c.ids {
		if got := c.cores[id].Committed(); got != 1 {
			t.Fatalf("member %d committed %d in state (c), want 1", id, got)
		}
	}
	if _, ok := c.committed[2]; ok {
		t.Fatal("index 2 was applied in state (c)")
	}
	return c
}

// TestFigure8NotCommitted shows the paper's Figure 8 (a)–(d): a leader does
// not commit an entry of an earlier term by counting replicas; were it to,
// S5 would overwrite that committed entry in (d). Here S5 does overwrite it,
// and since it was never committed nor applied, nothing is lost.
func TestFigure8NotCommitted(t *testing.T) {
	figure8D(t, figure8ToC(t, nil))
}

// figure8D plays (d) from state (c).
func figure8D(t *testing.T, c *cluster) {
	// (d) S1 crashes; S5 restarts and is elected (term 4 is taken, so term
	// 5) with votes from S2, S3 and S4, and overwrites index 2 with its own
	// entry of term 3.
	c.say("(d) S1 crashes; S5 restarts and is elected (term 4 is taken, so term 5) with\n" +
		"votes from S2, S3 and S4, and overwrites index 2 with its own entry of term 3.\n" +
		"Nothing is lost: the term-2 entry was never committed.")
	c.cut[1] = true
	c.discard(anyMsg)
	delete(c.cut, 5)
	c.crash(5)
	c.campaign(5) // term 4: S2 and S3 already voted for S1 in it
	c.deliver(msgIs(pb.MsgRequestVote, 5, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 5))
	if r := c.cores[5]; r.Role() != raft.Candidate || r.Term() != 4 {
		t.Fatalf("S5 is %s at term %d, want a losing candidate at term 4", r.Role(), r.Term())
	}
	c.campaign(5)
	c.deliver(msgIs(pb.MsgRequestVote, 5, 0))
	c.deliver(msgIs(pb.MsgRequestVoteResp, 0, 5))
	wantLeader(t, c, 5, 5)
	c.say("S5 leads term 5 and replicates its log; S2 and S3 truncate their term-2 entry.")
	c.hold = false
	c.drive()
	c.tick(3)
	for _, id := range []pb.NodeID{2, 3, 4, 5} {
		if got, err := c.stores[id].Term(2); err != nil || got != 3 {
			t.Fatalf("member %d holds term %d at index 2 (%v), want S5's term 3", id, got, err)
		}
	}
	if e := c.committed[2]; e.Term != 3 {
		t.Fatalf("applied at index 2: %v, want the term-3 entry", e)
	}
	c.skim("S1 comes back; a command commits on all five. Elections only:", func() {
		delete(c.cut, 1)
		c.one("after", 5, 20*electionTicks)
	})
}

// TestFigure8CommitThroughCurrentTerm shows Figure 8 (e): once S1 replicates
// an entry of its own term 4 on a majority, it commits, and the term-2 entry
// before it commits with it (never earlier); then S5 can no longer be
// elected, so the case (d) where it overwrites a committed entry is avoided.
func TestFigure8CommitThroughCurrentTerm(t *testing.T) {
	figure8E(t, figure8ToC(t, nil))
}

// figure8E plays (e) from state (c).
func figure8E(t *testing.T, c *cluster) {
	// S1 replicates its term-4 entry at index 3 to S2 and S3.
	c.say("(e) S1 replicates its term-4 entry at index 3 to S2 and S3. Once a majority\n" +
		"holds it, it commits, and the term-2 entry before it commits with it.")
	c.deliver(func(m pb.Message) bool {
		return m.Type == pb.MsgAppendEntries && m.From == 1 && (m.To == 2 || m.To == 3) && len(m.Entries) == 1 &&
			m.Entries[0].Index == 3
	})
	if got := c.cores[1].Committed(); got != 1 {
		t.Fatalf("S1 committed %d before hearing back", got)
	}
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 2, 1))
	if got := c.cores[1].Committed(); got != 1 {
		t.Fatalf("S1 committed %d with index 3 on only two members", got)
	}
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 3, 1))
	if got := c.cores[1].Committed(); got != 3 {
		t.Fatalf("S1 committed %d with index 3 on a majority, want 3", got)
	}
	if e, ok := c.committed[2]; !ok || e.Term != 2 {
		t.Fatalf("index 2 applied as %v (%v), want the term-2 entry", e, ok)
	}
	// The new commit index reaches S2 and S3.
	c.deliver(msgIs(pb.MsgAppendEntries, 1, 0))
	c.deliver(msgIs(pb.MsgAppendEntriesResp, 0, 1))

	// S1 crashes; S5 restarts and campaigns: in term 4, where S2 and S3
	// already voted, and in term 5, where S2 and S3 refuse it because their
	// logs end in term 4 (§5.4.1). It never leads.
	c.cut[1] = true
	c.discard(anyMsg)
	delete(c.cut, 5)
	c.crash(5)
	c.hold = false
	c.say("S1 crashes; S5 restarts and campaigns in term 4, where S2 and S3 have\n" +
		"already voted (for S1).")
	c.campaign(5)
	c.say("S5 campaigns again, in term 5. S2 and S3 refuse: their logs end in term 4,\n" +
		"later than S5's last term 3 (§5.4.1). S5 gets two votes of five.")
	c.campaign(5)
	c.skim("S5 never leads: the test runs 200 more ticks to check it. Elections only:", func() {
		for i := 0; i < 20*electionTicks; i++ {
			if c.cores[5].Role() == raft.Leader {
				t.Fatalf("S5 was elected in term %d and could overwrite committed index 2", c.cores[5].Term())
			}
			c.tick(1)
		}
	})
	lead := c.waitLeaderOf(2, 3, 4, 5)
	if lead != 2 && lead != 3 {
		t.Fatalf("member %d leads, want S2 or S3", lead)
	}
	c.skim("S1 comes back; a command commits on all five. Elections only:", func() {
		delete(c.cut, 1)
		c.one("after", 5, 20*electionTicks)
	})
	for _, id := range c.ids {
		if got, err := c.stores[id].Term(2); err != nil || got != 2 {
			t.Fatalf("member %d holds term %d at index 2 (%v), want 2", id, got, err)
		}
	}
}
