package raft_test

import (
	"errors"
	"testing"

	"github.com/raftkv/raftkv/raft"
)

// TestBackpressure shows that while the followers are cut off, proposals
// past MaxUncommittedBytes fail with ErrProposalDropped and the leader's log
// stops growing; once the followers return and the backlog commits,
// proposals succeed again.
func TestBackpressure(t *testing.T) {
	const limit = 64 << 10
	c := newCluster(t, 3, func(cfg *raft.Config) { cfg.MaxUncommittedBytes = limit })
	lead := c.waitLeader()
	c.one("x", 3, 10*electionTicks)
	for _, id := range c.ids {
		if id != lead {
			c.cut[id] = true
		}
	}
	payload := make([]byte, 1000)
	accepted := 0
	for ; accepted < 1000; accepted++ {
		_, _, err := c.cores[lead].Propose(payload)
		if errors.Is(err, raft.ErrProposalDropped) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if accepted == 1000 || accepted*len(payload) > limit || accepted < limit/len(payload)-2 {
		t.Fatalf("accepted %d proposals of %d bytes under a limit of %d", accepted, len(payload), limit)
	}
	c.tick(1)
	last := c.cores[lead].Status().LastIndex
	for i := 0; i < 10000; i++ {
		if _, _, err := c.cores[lead].Propose(payload); !errors.Is(err, raft.ErrProposalDropped) {
			t.Fatalf("proposal %d past the limit: %v", i, err)
		}
	}
	if got := c.cores[lead].Status().LastIndex; got != last {
		t.Fatalf("log grew from %d to %d past the limit", last, got)
	}
	clear(c.cut)
	c.tick(2)
	if c.leader() != lead || c.cores[lead].Committed() != last {
		t.Fatalf("leader %d committed %d, want %d", c.leader(), c.cores[lead].Committed(), last)
	}
	for i := 0; i < accepted; i++ {
		if _, _, err := c.cores[lead].Propose(payload); err != nil {
			t.Fatalf("proposal %d after the backlog committed: %v", i, err)
		}
	}
}
