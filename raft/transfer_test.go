package raft_test

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// TestLeaderTransfer shows that a transfer to a lagging follower first
// brings it up to date, then sends TimeoutNow, and that the target becomes
// leader in the next term; proposals are refused with ErrTransferring while
// the transfer runs.
func TestLeaderTransfer(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	term := c.cores[lead].Term()
	target := c.ids[0]
	if target == lead {
		target = c.ids[1]
	}
	c.cut[target] = true
	for i := 0; i < 20; i++ {
		c.one(cmdN("t", i), 2, 10*electionTicks)
	}
	delete(c.cut, target)

	var order []pb.MessageType
	c.onSend = func(m pb.Message) {
		if m.From != lead || m.To != target {
			return
		}
		if m.Type == pb.MsgAppendEntries || m.Type == pb.MsgTimeoutNow {
			order = append(order, m.Type)
		}
		if m.Type == pb.MsgTimeoutNow {
			if got, want := c.cores[target].Status().LastIndex, c.cores[lead].Status().LastIndex; got != want {
				t.Errorf("TimeoutNow sent with the target at %d, the leader at %d", got, want)
			}
		}
	}
	if err := c.cores[lead].TransferLeader(target); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.cores[lead].Propose([]byte("refused")); !errors.Is(err, raft.ErrTransferring) {
		t.Fatalf("Propose during a transfer: %v, want ErrTransferring", err)
	}
	if got := c.cores[lead].Status().LeadTransferee; got != target {
		t.Fatalf("transferee %d, want %d", got, target)
	}
	for i := 0; i < 3 && c.leader() != target; i++ {
		c.tick(1) // the leader probes the target on its next heartbeat
	}
	if len(order) < 2 || order[0] != pb.MsgAppendEntries || order[len(order)-1] != pb.MsgTimeoutNow {
		t.Fatalf("leader sent the target %v, want AppendEntries first and TimeoutNow last", order)
	}
	if got := c.leader(); got != target || c.cores[target].Term() != term+1 {
		t.Fatalf("leader %d at term %d, want %d at %d", got, c.cores[got].Term(), target, term+1)
	}
	c.onSend = nil
	c.one("after", 3, 10*electionTicks)
	if c.leader() != target {
		t.Fatal("leadership moved again")
	}
}

// TestLeaderTransferAbandoned shows that a transfer to a cut-off target is
// abandoned after an election timeout: proposals are refused until then and
// accepted after, and the leader keeps its term.
func TestLeaderTransferAbandoned(t *testing.T) {
	c := newCluster(t, 3, nil)
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	term := c.cores[lead].Term()
	target := c.ids[0]
	if target == lead {
		target = c.ids[1]
	}
	c.cut[target] = true
	if err := c.cores[lead].TransferLeader(target); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < electionTicks-1; i++ {
		c.tick(1)
		if _, _, err := c.cores[lead].Propose([]byte("refused")); !errors.Is(err, raft.ErrTransferring) {
			t.Fatalf("tick %d: Propose during a transfer: %v", i, err)
		}
	}
	c.tick(1)
	if got := c.cores[lead].Status().LeadTransferee; got != pb.None {
		t.Fatalf("transfer to %d still running after an election timeout", got)
	}
	c.propose(lead, "accepted")
	c.tick(2)
	if c.leader() != lead || c.cores[lead].Term() != term || c.appliedCount("accepted") != 2 {
		t.Fatalf("leader %d term %d, applied by %d", c.leader(), c.cores[lead].Term(), c.appliedCount("accepted"))
	}
	if c.appliedCount("refused") != 0 {
		t.Fatal("a refused proposal was applied")
	}
}
