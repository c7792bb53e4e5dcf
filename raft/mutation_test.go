//go:build mutation

package raft_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/raftkv/raftkv/raft"
	pb "github.com/raftkv/raftkv/raftpb"
)

// caught is what catchTB panics with when a check fails.
type caught struct{ msg string }

// catchTB turns a failed check of the harness into a panic the mutation
// test recovers, so that a test can require a check to fail.
type catchTB struct{ testing.TB }

func (catchTB) Fatal(args ...any)                 { panic(caught{fmt.Sprint(args...)}) }
func (catchTB) Fatalf(format string, args ...any) { panic(caught{fmt.Sprintf(format, args...)}) }
func (catchTB) Errorf(format string, args ...any) { panic(caught{fmt.Sprintf(format, args...)}) }
func (catchTB) Helper()                           {}

// failure runs f with a catching TB and returns the message of the check
// that failed ("" if none did).
func failure(t *testing.T, f func(tb testing.TB)) (msg string) {
	defer func() {
		if p := recover(); p != nil {
			c, ok := p.(caught)
			if !ok {
				panic(p)
			}
			msg = c.msg
		}
	}()
	f(catchTB{t})
	return ""
}

// chaos runs a 5-member cluster through random crashes, partitions and
// proposals: the harness checks every Ready on the way.
func chaos(seed uint64) func(tb testing.TB) {
	return func(tb testing.TB) {
		rng := rand.New(rand.NewPCG(seed, 1))
		c := newCluster(tb, 5, nil)
		for i := 0; i < 600; i++ {
			switch {
			case rng.IntN(30) == 0:
				c.crash(c.ids[rng.IntN(len(c.ids))])
			case rng.IntN(20) == 0:
				var a, b []pb.NodeID
				for _, id := range c.ids {
					if rng.IntN(2) == 0 {
						a = append(a, id)
					} else {
						b = append(b, id)
					}
				}
				c.partition(a, b)
			case rng.IntN(20) == 0:
				clear(c.cutLink)
			}
			if l := c.leader(); l != 0 && rng.IntN(2) == 0 {
				_, _, _ = c.cores[l].Propose([]byte(fmt.Sprintf("cmd%d", i)))
			}
			c.tick(1)
		}
	}
}

// TestMutation shows that the core harness's checks have teeth: with the
// core built with a named bug, a check of the harness fails — the ones it
// runs after every Ready (one vote per term, a term durable before its
// messages, State Machine Safety, applying in order) within 50 chaos
// seeds, and the lease-read regression scenarios on their own.
func TestMutation(t *testing.T) {
	for _, c := range []struct {
		m        raft.Mutation
		scenario func(seed uint64) func(testing.TB)
	}{
		{raft.MutationDoubleVote, chaos},
		{raft.MutationSendBeforePersist, chaos},
		{raft.MutationApplyTwice, chaos},
		{raft.MutationRestartForgetsLease, func(uint64) func(testing.TB) { return leaseReadAfterVoterRestart }},
		{raft.MutationLeaseFromArrival, func(uint64) func(testing.TB) { return leaseTimedFromLateAnswer }},
		{raft.MutationClosedDropsPromise, func(uint64) func(testing.TB) { return closedSignalKeepsLeaseReadsSafe }},
	} {
		t.Run(c.m.String(), func(t *testing.T) {
			raft.SetMutation(c.m)
			defer raft.SetMutation(raft.MutationNone)
			for seed := uint64(1); seed <= 50; seed++ {
				if msg := failure(t, c.scenario(seed)); msg != "" {
					t.Logf("seed %d: %s", seed, msg)
					return
				}
			}
			t.Fatalf("no check failed with %s in 50 seeds", c.m)
		})
	}
	if msg := failure(t, chaos(1)); msg != "" {
		t.Fatalf("the correct core fails a chaos run: %s", msg)
	}
}
