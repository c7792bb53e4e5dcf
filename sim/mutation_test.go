//go:build mutation

package sim

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raft"
)

// mutationSeeds bounds the seeds each mutation may take to be caught. The
// first seed that catches each (seeds 1 and up, the default store and
// state machine) once the simulator drove the node's runtime
// (driver.Runtime, with I/O completing late and in any order the node's
// goroutines allow, and its commit-notice timer firing at random), the
// lease ran from the heartbeat's send, some seeds had slow messages, and
// most had closed-connection reports with the direct lease check
// (closed.go):
//
//	commit-older-term       7    commitment rule (§5.4.2, Figure 8)
//	double-vote             1    the core's invariants (one vote per term)
//	send-before-persist     1    persistence (Figure 2)
//	skip-log-matching      36    Log Matching (§5.3)
//	apply-twice             1    the runtime's in-order hand-out check
//	lease-without-lease     5    the lease check (§6.4.1)
//	restart-forgets-lease 252    the lease check (§6.4.1), lease nemesis
//	lease-from-arrival     37    the lease check (§6.4.1), slow messages
//	closed-drops-promise 1213    the lease check (§6.4.1), closed connections
//
// closed-drops-promise is caught on about one seed in 260 (15 and 16 of
// seeds 1–4000, before and after the timer), so a bound of 1000 would miss
// it on one run's draws in fifty; 2000 leaves one in two thousand.
const mutationSeeds = 2000

// TestMutation shows that the checkers have teeth: with the core built with
// each named bug (raft.Mutation), the simulator reports a violation within
// mutationSeeds seeds. Run it with
//
//	go test -tags mutation -count=1 -run TestMutation ./sim
func TestMutation(t *testing.T) {
	for _, m := range raft.Mutations {
		t.Run(m.String(), func(t *testing.T) {
			raft.SetMutation(m)
			defer raft.SetMutation(raft.MutationNone)
			start := time.Now()
			res, ok := firstViolation(mutationSeeds)
			if !ok {
				t.Fatalf("no violation of %s in %d seeds: a checker misses it", m, mutationSeeds)
			}
			t.Logf("seed %d caught %s (%v): %v", res.Seed, m, time.Since(start).Round(time.Millisecond), res.Err)
		})
	}
}

// firstViolation runs seeds 1..n on every core and returns the smallest
// failing seed's result. Workers stop taking seeds above a failure found.
func firstViolation(n uint64) (Result, bool) {
	var (
		next  atomic.Uint64
		mu    sync.Mutex
		best  Result
		found bool
		wg    sync.WaitGroup
	)
	for w := 0; w < runtime.GOMAXPROCS(0); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				seed := next.Add(1)
				mu.Lock()
				stop := seed > n || (found && seed > best.Seed)
				mu.Unlock()
				if stop {
					return
				}
				res := runCatching(seed)
				if res.Err == nil {
					continue
				}
				mu.Lock()
				if !found || seed < best.Seed {
					best, found = res, true
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return best, found
}

// runCatching runs one seed; a panic (a core assertion tripping on the
// mutated state) counts as a violation found.
func runCatching(seed uint64) (res Result) {
	defer func() {
		if p := recover(); p != nil {
			res = Result{Seed: seed, Err: fmt.Errorf("panic: %v", p)}
		}
	}()
	return New(Options{Seed: seed}).Run()
}
