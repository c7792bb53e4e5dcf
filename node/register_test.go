package node

import (
	"errors"
	"testing"

	pb "github.com/raftkv/raftkv/raftpb"
)

// TestRegisterDisplacesWaitingProposal: a proposal kept past a step-down
// (ProposeThroughStepDown) whose index this member appends at again lost
// its entry to truncation here, but another member may still hold and
// later commit it: it must be answered with an unknown outcome (never as
// not applied, which a caller retries without a key), not left waiting
// out its timeout, and the new proposal takes the index.
func TestRegisterDisplacesWaitingProposal(t *testing.T) {
	n := &Node{}
	n.shared.futures = map[pb.Index]*proposal{}
	kept := &proposal{index: 7, term: 2, done: make(chan outcome, 1), throughStepDown: true}
	plain := &proposal{index: 8, term: 2, done: make(chan outcome, 1)}
	n.register(kept, plain)

	again := &proposal{index: 7, term: 4, done: make(chan outcome, 1)}
	again2 := &proposal{index: 8, term: 4, done: make(chan outcome, 1)}
	n.register(again, again2)

	select {
	case o := <-kept.done:
		if !errors.Is(o.err, ErrUnknownOutcome) {
			t.Fatalf("displaced ProposeThroughStepDown proposal got %v, want ErrUnknownOutcome", o.err)
		}
	default:
		t.Fatal("displaced proposal left waiting")
	}
	select {
	case o := <-plain.done:
		if !errors.Is(o.err, ErrUnknownOutcome) {
			t.Fatalf("displaced proposal got %v, want ErrUnknownOutcome", o.err)
		}
	default:
		t.Fatal("displaced proposal left waiting")
	}
	if n.shared.futures[7] != again || n.shared.futures[8] != again2 {
		t.Fatal("the new proposals do not hold their indexes")
	}
}
