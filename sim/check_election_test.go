package sim

import (
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// TestForgetUndurableElection: when a crash forgets a sole voter's claims
// to terms it never made durable, the newest term the lease check holds
// leaders to goes back to the newest claim that remains. Before, it stayed
// at the forgotten term, and the same voter, leading the term it had made
// durable again, was reported as holding a lease behind a later leader
// (seed 140700: elected in term 4 with a full disk, crashed at term 2,
// elected in term 3).
func TestForgetUndurableElection(t *testing.T) {
	h := electionHistory{leaders: map[pb.Term]pb.NodeID{2: 2, 3: 1, 4: 1}, newest: 4}
	h.forget(1, 3)
	if _, ok := h.leaders[4]; ok || h.newest != 3 {
		t.Fatalf("after forgetting 1's claims after term 3: leaders %v, newest %d; want term 4 gone, newest 3", h.leaders, h.newest)
	}
	if h.leaders[3] != 1 || h.leaders[2] != 2 {
		t.Fatalf("durable claims lost: %v", h.leaders)
	}
	h.forget(2, 0)
	if h.newest != 3 {
		t.Fatalf("forgetting another member's claim before the newest moved newest to %d", h.newest)
	}
}
