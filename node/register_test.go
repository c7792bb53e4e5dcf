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

	wantUnknownOutcome(t, "displaced ProposeThroughStepDown proposal", kept)
	wantUnknownOutcome(t, "displaced proposal", plain)
	if n.shared.futures[7] != again || n.shared.futures[8] != again2 {
		t.Fatal("the new proposals do not hold their indexes")
	}
}

// wantUnknownOutcome fails t unless p has been answered ErrUnknownOutcome.
func wantUnknownOutcome(t *testing.T, what string, p *proposal) {
	t.Helper()
	select {
	case o := <-p.done:
		if !errors.Is(o.err, ErrUnknownOutcome) {
			t.Fatalf("%s got %v, want ErrUnknownOutcome", what, o.err)
		}
	default:
		t.Fatalf("%s left waiting", what)
	}
}
